/**
 * The snapshot store: published snapshots under a root directory (see
 * layout.ts). Readers only ever see directories that were renamed into place
 * after their COMPLETE marker was durable, so a crash at any point leaves the
 * store readable; `sweep` clears what a crash left behind.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { EngineError } from "../errors.js";
import { fsyncDir, isErrno, randomHex, writeFileDurable } from "./durable.js";
import {
  LOCKS_DIR,
  QUARANTINE_DIR,
  USE_DIR,
  assertStoreKey,
  compactTimestamp,
  keyOfWorkDir,
  lockPath,
  oldDirName,
  tmpDirName,
  usePath,
} from "./layout.js";
import { touch, tryLock, type FileLock } from "./flock.js";
import { acquireLock, inspectLock, removeStaleLock } from "./lock.js";
import type { LockHolder } from "./lock.js";
import { COMPLETE_FILE, MANIFEST_FILE, REASON_FILE, parseManifest } from "./manifest.js";
import type { SnapshotManifest } from "./manifest.js";
import type { Examination, PublishedSnapshot, StoreEvent, Usability } from "./store-types.js";
import { describeError } from "../errors.js";
import { digestFile } from "./digest.js";
import { verifySnapshotFiles } from "./verify.js";
import type { SnapshotCorruptError, VerifyOptions } from "./verify.js";
import { SnapshotWriter } from "./writer.js";

export type { Examination, PublishedSnapshot, StoreEvent, Usability } from "./store-types.js";

export interface StoreOptions {
  onEvent?: (e: StoreEvent) => void;
}

export interface StoreListing {
  snapshots: {
    key: string;
    state: "published" | "incomplete" | "invalid";
    manifest?: SnapshotManifest;
    problem?: string;
  }[];
  inProgress: { name: string; key: string; holder: LockHolder | undefined; live: boolean }[];
  quarantined: { name: string; reason: string }[];
}

export interface SweepReport {
  removed: { path: string; why: string }[];
}

const QUARANTINE_STAMP = /-(\d{8}T\d{9}Z)(?:-[0-9a-f]+)?$/;

export class SnapshotStore {
  constructor(
    readonly root: string,
    private readonly options: StoreOptions = {},
  ) {}

  /** Start writing `key`: takes its lock (or throws SNAPSHOT_LOCKED) and makes a hidden temporary dir. */
  async begin(key: string, { force = false }: { force?: boolean } = {}): Promise<SnapshotWriter> {
    assertStoreKey(key);
    await mkdir(this.root, { recursive: true });
    const tmpName = tmpDirName(key, randomHex());
    const lock = await acquireLock(lockPath(this.root, key), `snapshot ${key}`, {
      tmp: tmpName,
      onBroken: (b) => this.emit({ type: "lock-broken", key, holder: b.holder }),
    });
    try {
      if (!force && (await this.lookup(key))) {
        throw new EngineError("SNAPSHOT_EXISTS", `snapshot ${key} is already published`, {
          hint: "use it, or replace it explicitly (force)",
        });
      }
      await mkdir(join(this.root, tmpName));
    } catch (err) {
      await lock.release();
      throw err;
    }
    return new SnapshotWriter({
      root: this.root,
      key,
      tmpName,
      lock,
      force,
      isPublished: async (k) => (await this.lookup(k)) !== undefined,
      emit: (e) => this.emit(e),
    });
  }

  /** The published snapshot for `key`, or undefined (absent, incomplete or invalid). */
  async lookup(key: string): Promise<PublishedSnapshot | undefined> {
    const e = await this.examine(key);
    return e.state === "published" ? e.snapshot : undefined;
  }

  /** Like lookup, but says why there is no usable snapshot. */
  async examine(key: string): Promise<Examination> {
    assertStoreKey(key);
    const dir = join(this.root, key);
    try {
      if (!(await stat(dir)).isDirectory()) return invalid(key, "is not a directory");
    } catch (err) {
      if (isErrno(err, "ENOENT")) return { state: "absent" };
      throw err;
    }
    if (!(await exists(join(dir, COMPLETE_FILE)))) return { state: "incomplete" };
    let text: string;
    try {
      text = await readFile(join(dir, MANIFEST_FILE), "utf8");
    } catch (err) {
      if (isErrno(err, "ENOENT")) return invalid(key, "has no manifest.json");
      throw err;
    }
    const manifest = parseManifest(text);
    if (manifest instanceof EngineError) return { state: "invalid", error: manifest };
    if (manifest.key !== key) return invalid(key, `holds a manifest for ${manifest.key}`);
    const sealed = await sealOf(join(dir, COMPLETE_FILE));
    if (sealed !== undefined && sealed !== createHash("sha256").update(text).digest("hex")) {
      return invalid(key, "has a manifest.json that was changed after it was published");
    }
    return { state: "published", snapshot: { key, dir, manifest } };
  }

  /**
   * Whether `key` may be resumed: its manifest parses and matches the key,
   * COMPLETE is there, every file has its recorded size, and the small files
   * (device state, disk layer) match their checksums. RAM and anything large
   * is hashed only when modified after the snapshot was sealed (every file
   * is fsynced before COMPLETE is written, so a later mtime means somebody
   * wrote to it since); reading GiBs on every start would cost more than
   * the resume. `deep` hashes everything (after a restore from a cache).
   * Start, capture, the Action and the warm-up all ask this.
   */
  async usable(key: string, { deep = false }: { deep?: boolean } = {}): Promise<Usability> {
    const found = await this.examine(key);
    if (found.state === "absent" || found.state === "incomplete") return { state: "absent" };
    if (found.state === "invalid") {
      return { state: "unusable", reason: `snapshot ${key} is invalid: ${describeError(found.error)}` };
    }
    const problem = await this.verify(found.snapshot, { deep });
    if (problem)
      return { state: "unusable", reason: `snapshot ${key} is damaged: ${describeError(problem)}` };
    if (!deep) {
      const reason = await checkSmallFiles(found.snapshot);
      if (reason) return { state: "unusable", reason };
    }
    return { state: "usable", snapshot: found.snapshot };
  }

  /** Sizes (fast) or checksums too (deep): undefined when intact, else SNAPSHOT_CORRUPT naming each file. */
  async verify(
    snapshot: PublishedSnapshot,
    options: VerifyOptions = {},
  ): Promise<SnapshotCorruptError | undefined> {
    return verifySnapshotFiles(snapshot.dir, snapshot.manifest, options);
  }

  /**
   * Mark `key` in use: a shared lock on `.use/<key>` for the caller to hand to
   * the QEMU that runs from it (which then holds it until it exits), so no
   * eviction removes the snapshot under a running VM, in any Pod sharing the
   * store. Touches the marker (the last use, for eviction). undefined when
   * the snapshot is gone (evicted since it was looked up).
   */
  async use(key: string): Promise<FileLock | undefined> {
    assertStoreKey(key);
    await mkdir(join(this.root, USE_DIR), { recursive: true });
    // An eviction holds the marker exclusively only while it removes the snapshot.
    const lock = await tryLock(usePath(this.root, key), "shared", { waitMs: 5_000 });
    if (lock === undefined || lock === "busy") return undefined;
    if ((await this.lookup(key)) === undefined) {
      lock.release();
      return undefined;
    }
    touch(lock.path);
    return lock;
  }

  /** Move `key` to `.quarantine/<key>-<time>/` with a REASON file. Returns where, or undefined if absent. */
  async quarantine(key: string, reason: string): Promise<string | undefined> {
    assertStoreKey(key);
    const qdir = join(this.root, QUARANTINE_DIR);
    await mkdir(qdir, { recursive: true });
    const dest = join(qdir, `${key}-${compactTimestamp()}-${randomHex(2)}`);
    try {
      await rename(join(this.root, key), dest);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      throw err;
    }
    await fsyncDir(this.root);
    await writeFileDurable(
      join(dest, REASON_FILE),
      `${reason}\nquarantined at ${new Date().toISOString()}\n`,
    );
    this.emit({ type: "quarantined", key, reason, path: dest });
    return dest;
  }

  /** Delete a published snapshot (it disappears atomically first). Returns whether there was one. */
  async remove(key: string): Promise<boolean> {
    assertStoreKey(key);
    const aside = join(this.root, oldDirName(key, randomHex()));
    try {
      await rename(join(this.root, key), aside);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return false;
      throw err;
    }
    await fsyncDir(this.root);
    await rm(aside, { recursive: true, force: true });
    return true;
  }

  /**
   * Crash recovery: remove temporary and replaced dirs whose writer is gone,
   * locks of dead processes, and quarantine entries beyond the newest few.
   */
  async sweep({ keepQuarantined = 3 }: { keepQuarantined?: number } = {}): Promise<SweepReport> {
    const removed: SweepReport["removed"] = [];
    const drop = async (path: string, why: string): Promise<void> => {
      await rm(path, { recursive: true, force: true });
      removed.push({ path, why });
      this.emit({ type: "swept", path, why });
    };
    for (const name of await readdirOrEmpty(this.root)) {
      const tmpKey = keyOfWorkDir(name, "tmp");
      const oldKey = keyOfWorkDir(name, "old");
      const key = tmpKey ?? oldKey;
      if (key === undefined) continue;
      const lock = await inspectLock(lockPath(this.root, key));
      // A live writer whose note is not written yet (holder undefined) may own any of its key's dirs.
      const writerAlive =
        lock?.state === "live" &&
        (oldKey !== undefined || lock.holder?.tmp === undefined || lock.holder.tmp === name);
      if (!writerAlive) {
        await drop(join(this.root, name), tmpKey ? "abandoned temporary dir" : "leftover replaced dir");
      }
    }
    const locksDir = join(this.root, LOCKS_DIR);
    for (const name of await readdirOrEmpty(locksDir)) {
      const path = join(locksDir, name);
      if (name.endsWith(".lock")) {
        if (await removeStaleLock(path)) removed.push({ path, why: "lock of a dead process" });
      } else if (/\.lock\.stale-[0-9a-f]{8}$/.test(name)) {
        // Left by engines that broke pid-based locks by renaming them aside.
        await unlink(path).catch(() => undefined);
        removed.push({ path, why: "leftover of a broken lock" });
      }
    }
    for (const key of await readdirOrEmpty(join(this.root, USE_DIR))) {
      if ((await this.examine(key).catch(() => undefined))?.state !== "absent") continue;
      // Deleted only under the exclusive lock: a user that locks the old file meanwhile sees it gone and starts over.
      const lock = await tryLock(usePath(this.root, key), "exclusive", { create: false });
      if (lock === undefined || lock === "busy") continue;
      lock.remove();
      removed.push({ path: lock.path, why: "use marker of a removed snapshot" });
    }
    const qdir = join(this.root, QUARANTINE_DIR);
    const entries = (await readdirOrEmpty(qdir))
      .map((name) => ({ name, stamp: QUARANTINE_STAMP.exec(name)?.[1] ?? "" }))
      .sort((a, b) => b.stamp.localeCompare(a.stamp));
    for (const e of entries.slice(keepQuarantined)) await drop(join(qdir, e.name), "old quarantine entry");
    return { removed };
  }

  /** Everything in the store, for status output. */
  async list(): Promise<StoreListing> {
    const listing: StoreListing = { snapshots: [], inProgress: [], quarantined: [] };
    for (const name of (await readdirOrEmpty(this.root)).sort()) {
      const tmpKey = keyOfWorkDir(name, "tmp");
      if (tmpKey !== undefined) {
        const lock = await inspectLock(lockPath(this.root, tmpKey));
        const holder = lock?.holder?.tmp === name ? lock.holder : undefined;
        listing.inProgress.push({
          name,
          key: tmpKey,
          holder,
          live: lock?.state === "live" && (holder !== undefined || lock.holder === undefined),
        });
        continue;
      }
      if (name.startsWith(".")) continue;
      const e = await this.examine(name).catch(() => undefined);
      if (!e || e.state === "absent") continue;
      if (e.state === "published") {
        listing.snapshots.push({ key: name, state: e.state, manifest: e.snapshot.manifest });
      } else if (e.state === "incomplete") listing.snapshots.push({ key: name, state: e.state });
      else listing.snapshots.push({ key: name, state: e.state, problem: e.error.message });
    }
    const qdir = join(this.root, QUARANTINE_DIR);
    for (const name of (await readdirOrEmpty(qdir)).sort()) {
      const reason = await readFile(join(qdir, name, REASON_FILE), "utf8").catch(() => "(no REASON file)");
      listing.quarantined.push({ name, reason: reason.split("\n")[0] ?? "" });
    }
    return listing;
  }

  private emit(e: StoreEvent): void {
    this.options.onEvent?.(e);
  }
}

const SMALL_FILE_BYTES = 256 * 1024 * 1024;

async function checkSmallFiles(snapshot: PublishedSnapshot): Promise<string | undefined> {
  const sealedAt = (await stat(join(snapshot.dir, COMPLETE_FILE))).mtimeMs;
  for (const f of snapshot.manifest.files) {
    const path = join(snapshot.dir, f.name);
    const small = f.role !== "ram" && f.bytes <= SMALL_FILE_BYTES;
    if (!small && (await stat(path)).mtimeMs <= sealedAt) continue;
    const actual = await digestFile(path);
    if (actual.digest !== f.digest) {
      const when = small ? "" : " (it was modified after the snapshot was published)";
      return `snapshot ${snapshot.key} is damaged: ${f.name} does not match its checksum${when}`;
    }
  }
  return undefined;
}

export function openSnapshotStore(root: string, options: StoreOptions = {}): SnapshotStore {
  return new SnapshotStore(root, options);
}

function invalid(key: string, what: string): Examination {
  return {
    state: "invalid",
    error: new EngineError("SNAPSHOT_INVALID", `snapshot directory ${key} ${what}`, {
      hint: "quarantine or remove it and capture again",
    }),
  };
}

/** The manifest checksum a COMPLETE marker records (markers of older engines have none). */
async function sealOf(completeFile: string): Promise<string | undefined> {
  try {
    const v = JSON.parse(await readFile(completeFile, "utf8")) as { manifestSha256?: unknown };
    return typeof v.manifestSha256 === "string" ? v.manifestSha256 : undefined;
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return [];
    throw err;
  }
}
