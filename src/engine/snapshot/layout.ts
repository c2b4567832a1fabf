/**
 * Names inside a store root. Everything that is not a published snapshot
 * starts with a dot, so a reader listing keys never trips over work in
 * progress:
 *
 *   <root>/<key>/                    published: files, manifest.json, COMPLETE
 *   <root>/.tmp-<key>-<8 hex>/       being written (or abandoned by a crash)
 *   <root>/.old-<key>-<8 hex>/       a replaced or removed snapshot being deleted
 *   <root>/.locks/<key>.lock         the writer's lock for <key>
 *   <root>/.use/<key>                shared-locked by every QEMU running from <key>
 *                                    (so it is never evicted); its mtime is the last use
 *   <root>/.quarantine/<key>-<time>/ set aside as bad, with a REASON file
 */
import { join } from "node:path";
import { EngineError } from "../errors.js";

export const LOCKS_DIR = ".locks";
export const QUARANTINE_DIR = ".quarantine";
export const USE_DIR = ".use";
const TMP_PREFIX = ".tmp-";
const OLD_PREFIX = ".old-";
const SUFFIX = /-[0-9a-f]{8}$/;

/** Keys are single path components safe in file names and cache keys. */
export function isStoreKey(key: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$/.test(key);
}

export function assertStoreKey(key: string): void {
  if (!isStoreKey(key)) {
    throw new EngineError("SNAPSHOT_KEY_INVALID", `${JSON.stringify(key)} is not a valid snapshot key`, {
      hint: "keys come from snapshotKey(); they are letters, digits, '.', '_', '+' and '-'",
    });
  }
}

export const tmpDirName = (key: string, suffix: string): string => `${TMP_PREFIX}${key}-${suffix}`;
export const oldDirName = (key: string, suffix: string): string => `${OLD_PREFIX}${key}-${suffix}`;
export const lockPath = (root: string, key: string): string => join(root, LOCKS_DIR, `${key}.lock`);
export const usePath = (root: string, key: string): string => join(root, USE_DIR, key);

/** The key of a `.tmp-` or `.old-` entry, or undefined for any other name. */
export function keyOfWorkDir(name: string, kind: "tmp" | "old"): string | undefined {
  const prefix = kind === "tmp" ? TMP_PREFIX : OLD_PREFIX;
  if (!name.startsWith(prefix) || !SUFFIX.test(name)) return undefined;
  const key = name.slice(prefix.length, -9);
  return isStoreKey(key) ? key : undefined;
}

/** `20250101T120000123Z`: sorts by time, safe in a path. */
export function compactTimestamp(d = new Date()): string {
  return d.toISOString().replace(/[-:.]/g, "");
}
