/**
 * Snapshots through the GitHub Actions cache. The cache key is the engine's
 * snapshot key, prefixed and versioned: a snapshot only ever resumes on a
 * runner whose every layout-relevant fact matches, so there are no restore
 * keys (a near match is useless). The cached file is the engine's snapshot
 * archive (packSnapshot: sparse-aware, zstd), packed in RUNNER_TEMP;
 * unpackSnapshot verifies every checksum before publishing into the store.
 *
 * The cache is optional: every failure of the service or of the transfer is
 * a warning and a miss, never a failed job. Entries are immutable, and only
 * a snapshot this job captured is ever saved, so a damaged restore can never
 * be written back over the good entry.
 */
import { mkdirSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import * as cache from "@actions/cache";
import { describeError, openSnapshotStore, packSnapshot, unpackSnapshot } from "../engine/index.js";

/** Bump when the archive's meaning changes in a way the engine's key does not capture. */
export const CACHE_KEY_PREFIX = "hexclave-emulator-v1-";

export const cacheKeyOf = (snapshotKey: string): string => `${CACHE_KEY_PREFIX}${snapshotKey}`;

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

export type RestoreOutcome =
  /** The store already had it (cache: local, or a rerun on the same machine). */
  | { kind: "in-store"; ms: number }
  /** Restored from the Actions cache and verified. */
  | { kind: "restored"; ms: number; bytes: number }
  /** No entry for the key (or the service did not answer: see warned). */
  | { kind: "miss"; ms: number; warned?: string | undefined }
  /** An entry was downloaded but is unusable (bad archive, bad checksums). */
  | { kind: "corrupt"; ms: number; reason: string };

export interface RestoreOptions {
  snapshotKey: string;
  storeRoot: string;
  archive: string;
  log: Logger;
}

/** Fill the store with the snapshot for `snapshotKey` from the Actions cache, if it has one. */
export async function restoreSnapshot(opts: RestoreOptions): Promise<RestoreOutcome> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const key = cacheKeyOf(opts.snapshotKey);
  if (await openSnapshotStore(opts.storeRoot).lookup(opts.snapshotKey)) return { kind: "in-store", ms: ms() };
  if (!cache.isFeatureAvailable()) {
    const warned = "the Actions cache service is not available to this step (no ACTIONS_RESULTS_URL)";
    opts.log.warn(`${warned}: no snapshot restore`);
    return { kind: "miss", ms: ms(), warned };
  }
  mkdirSync(dirname(opts.archive), { recursive: true });
  rmSync(opts.archive, { force: true });
  try {
    let matched: string | undefined;
    try {
      matched = await cache.restoreCache([opts.archive], key, [], {}, false);
    } catch (err) {
      const warned = `restoring ${key} from the Actions cache failed: ${describeError(err)}`;
      opts.log.warn(warned);
      return { kind: "miss", ms: ms(), warned };
    }
    if (matched !== key) return { kind: "miss", ms: ms() };
    let bytes = 0;
    try {
      bytes = statSync(opts.archive).size;
      await unpackSnapshot(opts.archive, join(opts.storeRoot, opts.snapshotKey));
    } catch (err) {
      const reason = `the cached snapshot ${key} is unusable: ${describeError(err)}`;
      opts.log.warn(reason);
      return { kind: "corrupt", ms: ms(), reason };
    }
    return { kind: "restored", ms: ms(), bytes };
  } finally {
    rmSync(opts.archive, { force: true });
  }
}

export type SaveOutcome =
  | { kind: "saved"; ms: number; bytes: number; entryId: number }
  | { kind: "not-saved"; ms: number; reason: string };

export interface SaveOptions {
  snapshotKey: string;
  storeRoot: string;
  archive: string;
  log: Logger;
}

/** Pack the store's snapshot for `snapshotKey` and save it under its cache key. */
export async function saveSnapshot(opts: SaveOptions): Promise<SaveOutcome> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const key = cacheKeyOf(opts.snapshotKey);
  const notSaved = (reason: string): SaveOutcome => {
    opts.log.warn(`the snapshot was not saved to the Actions cache: ${reason}`);
    return { kind: "not-saved", ms: ms(), reason };
  };
  if (!cache.isFeatureAvailable()) {
    return notSaved("the Actions cache service is not available to this step (no ACTIONS_RESULTS_URL)");
  }
  const snapshot = await openSnapshotStore(opts.storeRoot).lookup(opts.snapshotKey);
  if (!snapshot) return notSaved(`snapshot ${opts.snapshotKey} is no longer in the store`);
  mkdirSync(dirname(opts.archive), { recursive: true });
  try {
    const packed = await packSnapshot(snapshot.dir, opts.archive);
    opts.log.info(
      `packed ${opts.snapshotKey}: ${mib(packed.apparentBytes)} apparent, ${mib(packed.dataBytes)} data, ${mib(packed.compressedBytes)} archive in ${(packed.ms / 1000).toFixed(1)} s`,
    );
    let entryId: number;
    try {
      entryId = await cache.saveCache([opts.archive], key, {}, false);
    } catch (err) {
      return notSaved(describeError(err));
    }
    // saveCache reports its own failures (reserve, upload, finalize) and returns -1.
    if (entryId <= 0) return notSaved(`the cache service did not take ${key} (see above)`);
    return { kind: "saved", ms: ms(), bytes: packed.compressedBytes, entryId };
  } catch (err) {
    return notSaved(`packing failed: ${describeError(err)}`);
  } finally {
    rmSync(opts.archive, { force: true });
  }
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
