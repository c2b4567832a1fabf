/**
 * Snapshots through the GitHub Actions cache. The cache key is the engine's
 * snapshot key with a generation (see cache-key.ts); a restore asks for the
 * newest generation. The cached file is the engine's snapshot archive,
 * sparse-aware and plain (packSnapshot, compression "none"), since
 * @actions/cache's tar compresses it: compressed once. It is packed in the
 * Action's cache directory under a fixed relative name (see cache-client.ts:
 * the entry's version must not depend on where the runner keeps its temp
 * directory). A restore streams the entry straight into the store
 * (cache-stream.ts, unpackSnapshotStream): download, decompression and the
 * store's writes overlap, and nothing is copied to disk first. Where the
 * service's answer is not understood it falls back to restoreCache and
 * unpackSnapshot of the file. Either way every checksum is verified before
 * anything is published into the store.
 *
 * The cache is optional: a failing service is a warning and, for a restore,
 * a cold start that says it was an outage, not a miss. A save that loses the
 * race to a matrix sibling is benign. Entries are immutable, and only a
 * snapshot this job captured is ever saved.
 */
import { mkdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  describeError,
  EngineError,
  openSnapshotStore,
  packSnapshot,
  unpackSnapshot,
  unpackSnapshotStream,
  type UnpackResult,
} from "../engine/index.js";
import { DownloadError } from "./action-download.js";
import {
  ARCHIVE_NAME,
  actionsCache,
  cacheServiceUnavailableReason,
  callCache,
  restoreFailure,
  saveVerdict,
  type CacheClient,
} from "./cache-client.js";
import { cacheKeyOf, cacheKeyPrefix, generationOf } from "./cache-key.js";

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

export type RestoreOutcome =
  /** The store already had it (a rerun on the same machine). */
  | { kind: "in-store"; ms: number }
  /** Restored from the Actions cache and verified. */
  | { kind: "restored"; ms: number; bytes: number; key: string; generation: number }
  /** No entry for the key. */
  | { kind: "miss"; ms: number }
  /** The cache service is not there or failed: said as such (a warning), not a miss. */
  | { kind: "unavailable"; ms: number; reason: string }
  /** An entry was downloaded but is unusable (bad archive, bad checksums). */
  | { kind: "corrupt"; ms: number; reason: string; key: string; generation: number };

export interface CacheLocation {
  snapshotKey: string;
  /** cache-key-suffix, if any. */
  suffix?: string | undefined;
  storeRoot: string;
  /** The Action's cache directory: the archive is <dir>/ARCHIVE_NAME. */
  dir: string;
  log: Logger;
  client?: CacheClient | undefined;
}

/** Fill the store with the newest generation of `snapshotKey`'s entry, if the cache has one. */
export async function restoreSnapshot(opts: CacheLocation): Promise<RestoreOutcome> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const client = opts.client ?? actionsCache;
  if (await openSnapshotStore(opts.storeRoot).lookup(opts.snapshotKey)) return { kind: "in-store", ms: ms() };
  if (!client.isFeatureAvailable()) {
    const reason = cacheServiceUnavailableReason(process.env);
    opts.log.warn(`${reason}: no snapshot restore`);
    return { kind: "unavailable", ms: ms(), reason };
  }
  const prefix = cacheKeyPrefix(opts.snapshotKey, opts.suffix);
  const dest = join(opts.storeRoot, opts.snapshotKey);
  if (client.lookupStreamed) {
    const streamed = await restoreStreamed(client.lookupStreamed.bind(client), prefix, dest, opts.log);
    if (streamed !== "fall-back") return { ...streamed, ms: ms() } as RestoreOutcome;
  }
  return restoreFromFile(client, prefix, dest, opts, ms);
}

/** An outcome before its time is added. */
export type Untimed<T> = T extends unknown ? Omit<T, "ms"> : never;

/**
 * The entry streamed into the store; "fall-back" when the service's answer
 * is not one this client knows (CACHE_PROTOCOL), for restoreCache to try.
 */
async function restoreStreamed(
  lookup: NonNullable<CacheClient["lookupStreamed"]>,
  prefix: string,
  dest: string,
  log: Logger,
): Promise<Untimed<RestoreOutcome> | "fall-back"> {
  let found;
  const t0 = performance.now();
  const since = (t: number) => `${Math.round(performance.now() - t)} ms`;
  try {
    // The primary key is the bare prefix, which no entry has: the prefix
    // lookup then answers with the newest generation.
    found = await lookup([ARCHIVE_NAME], prefix, [prefix]);
  } catch (err) {
    if (err instanceof EngineError && err.code === "CACHE_PROTOCOL") {
      log.warn(`${describeError(err)}: restoring through @actions/cache instead`);
      return "fall-back";
    }
    const reason = `the Actions cache service failed (${describeError(err)}): this is an outage, not a miss`;
    log.warn(reason);
    return { kind: "unavailable", reason };
  }
  if (found.kind === "not-readable") {
    log.info(`cache restore skipped: the effective cache-mode '${found.mode}' does not permit reads`);
    return { kind: "miss" };
  }
  const generation = found.kind === "hit" ? generationOf(found.key, prefix) : undefined;
  if (found.kind === "miss" || generation === undefined) return { kind: "miss" };
  const lookedUp = `lookup ${since(t0)}`;
  const t1 = performance.now();
  try {
    let unpacked: UnpackResult | undefined;
    await found.stream(async (_member, data) => {
      unpacked = await unpackSnapshotStream(data, dest, { label: found.key });
    });
    const r = unpacked!; // streamEntry resolves only once its one member was consumed
    log.info(
      `restored ${found.key} streamed: ${mib(r.stats.compressedBytes)} archive, ${mib(r.stats.dataBytes)} data, verified (${lookedUp}, download and unpack ${since(t1)})`,
    );
    return { kind: "restored", bytes: r.stats.compressedBytes, key: found.key, generation };
  } catch (err) {
    if (err instanceof DownloadError) {
      const reason = `the download of ${found.key} failed (${describeError(err)}): this is an outage, not a miss`;
      log.warn(reason);
      return { kind: "unavailable", reason };
    }
    const reason = `the cached snapshot ${found.key} is unusable: ${describeError(err)}`;
    log.warn(reason);
    return { kind: "corrupt", reason, key: found.key, generation };
  }
}

/** restoreCache into the Action's cache directory, then unpackSnapshot of the file. */
async function restoreFromFile(
  client: CacheClient,
  prefix: string,
  dest: string,
  opts: CacheLocation,
  ms: () => number,
): Promise<RestoreOutcome> {
  const archive = join(opts.dir, ARCHIVE_NAME);
  mkdirSync(opts.dir, { recursive: true });
  rmSync(archive, { force: true });
  try {
    let matched: string | undefined;
    let failure: string | undefined;
    try {
      const r = await callCache(opts.dir, () => client.restoreCache([ARCHIVE_NAME], prefix, [prefix]));
      matched = r.value;
      failure = restoreFailure(r.messages);
    } catch (err) {
      failure = describeError(err);
    }
    if (failure !== undefined && matched === undefined) {
      const reason = `the Actions cache service failed (${failure}): this is an outage, not a miss`;
      opts.log.warn(reason);
      return { kind: "unavailable", ms: ms(), reason };
    }
    const generation = matched === undefined ? undefined : generationOf(matched, prefix);
    if (matched === undefined || generation === undefined) return { kind: "miss", ms: ms() };
    let bytes = 0;
    try {
      bytes = statSync(archive).size;
      await unpackSnapshot(archive, dest);
    } catch (err) {
      const reason = `the cached snapshot ${matched} is unusable: ${describeError(err)}`;
      opts.log.warn(reason);
      return { kind: "corrupt", ms: ms(), reason, key: matched, generation };
    }
    return { kind: "restored", ms: ms(), bytes, key: matched, generation };
  } finally {
    rmSync(archive, { force: true });
  }
}

export type SaveOutcome =
  | { kind: "saved"; ms: number; bytes: number; entryId: number; key: string }
  /** A matrix sibling saved this key first: nothing lost. */
  | { kind: "lost-race"; ms: number; key: string; reason: string }
  | { kind: "not-saved"; ms: number; reason: string; outage: boolean };

/** Pack the store's snapshot for `snapshotKey` and save it as generation `generation`. */
export async function saveSnapshot(opts: CacheLocation & { generation: number }): Promise<SaveOutcome> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const client = opts.client ?? actionsCache;
  const key = cacheKeyOf(opts.snapshotKey, opts.suffix, opts.generation);
  const notSaved = (reason: string, outage: boolean): SaveOutcome => {
    opts.log.warn(`the snapshot was not saved to the Actions cache: ${reason}`);
    return { kind: "not-saved", ms: ms(), reason, outage };
  };
  if (!client.isFeatureAvailable()) return notSaved(cacheServiceUnavailableReason(process.env), true);
  const snapshot = await openSnapshotStore(opts.storeRoot).lookup(opts.snapshotKey);
  if (!snapshot) return notSaved(`snapshot ${opts.snapshotKey} is no longer in the store`, false);
  const archive = join(opts.dir, ARCHIVE_NAME);
  mkdirSync(opts.dir, { recursive: true });
  try {
    let packed;
    try {
      // Plain: @actions/cache's tar compresses it (see the file comment).
      packed = await packSnapshot(snapshot.dir, archive, { compression: "none" });
    } catch (err) {
      return notSaved(`packing failed: ${describeError(err)}`, false);
    }
    opts.log.info(
      `packed ${opts.snapshotKey}: ${mib(packed.apparentBytes)} apparent, ${mib(packed.dataBytes)} data in ${(packed.ms / 1000).toFixed(1)} s`,
    );
    let entryId: number;
    let messages;
    try {
      ({ value: entryId, messages } = await callCache(opts.dir, () => client.saveCache([ARCHIVE_NAME], key)));
    } catch (err) {
      return notSaved(`the Actions cache service failed: ${describeError(err)}`, true);
    }
    const verdict = saveVerdict(entryId, messages);
    if (verdict.kind === "lost-race") {
      opts.log.info(`another job saved ${key} first (${verdict.message}): nothing to do`);
      return { kind: "lost-race", ms: ms(), key, reason: verdict.message };
    }
    if (verdict.kind === "outage")
      return notSaved(`the Actions cache service failed: ${verdict.message}`, true);
    return { kind: "saved", ms: ms(), bytes: packed.compressedBytes, entryId, key };
  } finally {
    rmSync(archive, { force: true });
  }
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
