/**
 * The base image's content digest, a snapshot key part. Hashing a multi-GiB
 * image takes seconds, so the result is cached in a small JSON file keyed by
 * the file's identity: realpath + size + mtimeMs + inode. Any of those
 * changing (a rebuilt, replaced or touched image) recomputes.
 */
import { mkdir, readFile, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { EngineError } from "../errors.js";
import { isErrno, writeFileAtomic } from "./durable.js";
import { sha256File } from "./hash.js";

const CACHE_FILE = "image-digests.json";
/** Entries kept (most recently computed); the cache stays a few KiB. */
const MAX_ENTRIES = 32;

const EntrySchema = z.object({
  size: z.number(),
  mtimeMs: z.number(),
  ino: z.number(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  computedAt: z.number(),
});
const CacheSchema = z.object({ version: z.literal(1), entries: z.record(z.string(), EntrySchema) });
type Cache = z.infer<typeof CacheSchema>;

export interface ImageDigestOptions {
  /** Directory for the digest cache (created if missing). */
  cacheDir: string;
  /** Called each time the content is actually hashed (not on a cache hit). */
  onHash?: (realPath: string) => void;
}

/** sha256 hex of the file's content, from the cache when the file is unchanged. */
export async function imageDigest(path: string, options: ImageDigestOptions): Promise<string> {
  const real = await realImage(path);
  const before = await stat(real);
  const cacheFile = join(options.cacheDir, CACHE_FILE);
  const cache = await readCache(cacheFile);
  const hit = cache.entries[real];
  if (hit && sameIdentity(hit, before)) return hit.sha256;

  // One read per file and identity: a caller that started the digest early
  // (resolveContext, beside the QEMU probe) and the key that needs it share it.
  const id = `${options.cacheDir}\0${real}\0${before.size}\0${before.mtimeMs}\0${before.ino}`;
  const pending = inFlight.get(id);
  if (pending) return pending;
  const computed = hashAndRecord(real, before, options).finally(() => inFlight.delete(id));
  inFlight.set(id, computed);
  return computed;
}

/** Digests being computed now, by cache directory, realpath and identity. */
const inFlight = new Map<string, Promise<string>>();

async function hashAndRecord(
  real: string,
  before: { size: number; mtimeMs: number; ino: number },
  options: ImageDigestOptions,
): Promise<string> {
  options.onHash?.(real);
  const { sha256 } = await sha256File(real);
  const after = await stat(real);
  if (!sameIdentity({ size: before.size, mtimeMs: before.mtimeMs, ino: before.ino }, after)) {
    throw new EngineError("IMAGE_CHANGED", `base image ${real} changed while it was being hashed`, {
      hint: "wait for whatever is writing the image to finish, then retry",
    });
  }
  await record(options.cacheDir, real, after, sha256);
  return sha256;
}

/**
 * Starts imageDigest without waiting for it, for a caller that will ask for
 * it soon (the snapshot key) and has other waiting to do first. Its failure
 * is left for that later call to report.
 */
export function prefetchImageDigest(path: string, options: ImageDigestOptions): void {
  imageDigest(path, options).catch(() => undefined);
}

/**
 * Records a digest the caller already knows for the file as it is now (the
 * Action hashes a downloaded image while writing it), so that imageDigest
 * answers from the cache instead of reading GiBs again. The entry is keyed
 * like imageDigest's own (realpath + size + mtimeMs + inode, as stat says
 * now): a later change to the file recomputes as usual. The caller vouches
 * for the digest; give only one computed from this file's content.
 */
export async function seedImageDigest(
  path: string,
  sha256: string,
  options: Pick<ImageDigestOptions, "cacheDir">,
): Promise<void> {
  const digest = sha256.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(digest)) {
    throw new EngineError("CHECKSUM_INVALID", `"${sha256}" is not a sha256 (64 hex digits)`, {
      hint: "seed the image digest cache with the hex sha256 of the image's content",
    });
  }
  const real = await realImage(path);
  await record(options.cacheDir, real, await stat(real), digest);
}

async function realImage(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (err) {
    throw new EngineError("IMAGE_NOT_FOUND", `base image ${path} cannot be read`, {
      hint: "check the image path in the configuration",
      cause: err,
    });
  }
}

/** Adds the entry for `real` as `s` describes it. The cache is re-read just before writing, so entries added meanwhile by another process survive. */
async function record(
  cacheDir: string,
  real: string,
  s: { size: number; mtimeMs: number; ino: number },
  sha256: string,
): Promise<void> {
  const cacheFile = join(cacheDir, CACHE_FILE);
  const fresh = await readCache(cacheFile);
  fresh.entries[real] = { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, sha256, computedAt: Date.now() };
  await mkdir(cacheDir, { recursive: true });
  await writeCache(cacheFile, fresh);
}

function sameIdentity(
  e: { size: number; mtimeMs: number; ino: number },
  s: { size: number; mtimeMs: number; ino: number },
): boolean {
  return e.size === s.size && e.mtimeMs === s.mtimeMs && e.ino === s.ino;
}

/** A missing or unreadable cache is an empty one: it only ever saves time. */
async function readCache(file: string): Promise<Cache> {
  try {
    const parsed = CacheSchema.safeParse(JSON.parse(await readFile(file, "utf8")));
    if (parsed.success) return parsed.data;
  } catch (err) {
    if (!isErrno(err, "ENOENT") && !(err instanceof SyntaxError)) throw err;
  }
  return { version: 1, entries: {} };
}

async function writeCache(file: string, cache: Cache): Promise<void> {
  const kept = Object.entries(cache.entries)
    .sort(([, a], [, b]) => b.computedAt - a.computedAt)
    .slice(0, MAX_ENTRIES);
  await writeFileAtomic(
    file,
    `${JSON.stringify({ version: 1, entries: Object.fromEntries(kept) }, null, 2)}\n`,
  );
}
