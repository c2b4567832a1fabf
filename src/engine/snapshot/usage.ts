/**
 * How much disk the store takes, snapshot by snapshot, with when each was
 * last used and whether a running VM uses it now (its `.use/<key>` marker is
 * share-locked: see SnapshotStore.use). Sizes are allocated bytes (a sparse
 * RAM file counts what it occupies, not its length).
 */
import { lstat, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { isErrno } from "./durable.js";
import { isLocked } from "./flock.js";
import { QUARANTINE_DIR, isStoreKey, usePath } from "./layout.js";
import { COMPLETE_FILE } from "./manifest.js";

export interface SnapshotUsage {
  key: string;
  bytes: number;
  /** Epoch ms of the last resume from it (else of its publication). */
  lastUsedMs: number;
  /** A running VM (in any process or Pod sharing the store) holds it. */
  inUse: boolean;
}

export interface QuarantinedUsage {
  name: string;
  bytes: number;
  lastUsedMs: number;
}

export interface StoreUsage {
  root: string;
  /** Everything under the root: snapshots, work in progress, quarantine, locks. */
  totalBytes: number;
  snapshots: SnapshotUsage[];
  quarantined: QuarantinedUsage[];
  /** Temporary and replaced dirs (captures being written, removals under way). */
  workBytes: number;
}

/** Allocated bytes under `path` (0 when it does not exist). */
export async function diskUsage(path: string): Promise<number> {
  let s;
  try {
    s = await lstat(path);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return 0;
    throw err;
  }
  let bytes = s.blocks * 512;
  if (!s.isDirectory()) return bytes;
  for (const name of await readdir(path).catch(() => [] as string[]))
    bytes += await diskUsage(join(path, name));
  return bytes;
}

async function mtimeOf(path: string): Promise<number | undefined> {
  return stat(path).then(
    (s) => s.mtimeMs,
    () => undefined,
  );
}

/** The store's usage: what `gc` works from, and what the agent exports as a metric. */
export async function storeUsage(root: string): Promise<StoreUsage> {
  const usage: StoreUsage = { root, totalBytes: 0, snapshots: [], quarantined: [], workBytes: 0 };
  usage.totalBytes = await diskUsage(root);
  let names: string[];
  try {
    names = await readdir(root);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return usage;
    throw err;
  }
  for (const name of names.sort()) {
    const path = join(root, name);
    if (name.startsWith(".tmp-") || name.startsWith(".old-")) usage.workBytes += await diskUsage(path);
    if (name.startsWith(".") || !isStoreKey(name)) continue;
    if (!(await stat(path).catch(() => undefined))?.isDirectory()) continue;
    const marker = usePath(root, name);
    const times = [await mtimeOf(marker), await mtimeOf(join(path, COMPLETE_FILE)), await mtimeOf(path)];
    usage.snapshots.push({
      key: name,
      bytes: await diskUsage(path),
      lastUsedMs: Math.max(...times.filter((t): t is number => t !== undefined), 0),
      inUse: (await isLocked(marker, "shared")) === true,
    });
  }
  const qdir = join(root, QUARANTINE_DIR);
  for (const name of (await readdir(qdir).catch(() => [] as string[])).sort()) {
    const path = join(qdir, name);
    usage.quarantined.push({ name, bytes: await diskUsage(path), lastUsedMs: (await mtimeOf(path)) ?? 0 });
  }
  return usage;
}
