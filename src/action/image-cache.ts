/**
 * The base image through the Actions cache. A hosted runner's tool cache is
 * empty in every job, so without this every job downloads the multi-GB image
 * again. The entry is keyed by the image's verified sha256 (the arch is in
 * the name for whoever reads the cache list) and holds two fixed names: the
 * image and a small manifest (its sha256 and size).
 *
 * Trust: an entry is scoped like the snapshot's (to the ref that saved it:
 * a pull request's entries are read by that pull request's jobs alone, and
 * only the default branch's jobs write the entries every branch reads), and
 * its key names the digest the saving job verified after its download. Hashing GBs again on every hit would cost
 * what the cache saves, so a hit is checked cheaply: the archive itself is
 * checksummed (zstd writes a content checksum that unzstd verifies on
 * extract; gzip's CRC where zstd is missing), so a damaged download fails the
 * extract; then the manifest must name this digest, the image must have the
 * manifest's size and start with the qcow2 magic. (When snapshots are used
 * and the engine's image-digest cache is not seeded, the snapshot key hashes
 * the image anyway: comparing that digest with this key's is a full check at
 * no extra cost.)
 *
 * Paths: as for the snapshot (cache-client.ts), the entry's names are
 * relative to the Action's cache directory, the same string on every runner.
 * A restore streams the entry (cache-stream.ts): the image is written once,
 * straight beside `dest` under a temporary name, checked, then renamed, with
 * no archive of GBs on disk first. Where the service's answer is not
 * understood, restoreCache extracts into the cache directory and the image
 * is renamed into the tool cache (one file system on hosted runners). A save
 * hard-links the tool cache's file there. Nothing half-restored reaches `dest`.
 *
 * Running beside the snapshot restore: give both the same `dir`, so that the
 * two entries' distinct names never touch each other's files. callCache sets
 * the process's cwd and GITHUB_WORKSPACE for the length of a call, and tar
 * extracts into GITHUB_WORKSPACE: two calls at once need callCache to let
 * calls in one directory share them until the last has left.
 */
import {
  closeSync,
  copyFileSync,
  createWriteStream,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { EngineError, describeError } from "../engine/index.js";
import {
  actionsCache,
  cacheServiceUnavailableReason,
  callCache,
  restoreFailure,
  saveVerdict,
  type CacheClient,
} from "./cache-client.js";
import { DownloadError } from "./action-download.js";
import type { Logger, Untimed } from "./snapshot-cache.js";

/** The image's name inside the entry (relative to the cache directory). */
export const IMAGE_ENTRY_NAME = "hexclave-emulator-image.qcow2";
/** The manifest's name inside the entry: `{ sha256, bytes }`. */
export const IMAGE_MANIFEST_NAME = "hexclave-emulator-image.json";
const IMAGE_PATHS = [IMAGE_ENTRY_NAME, IMAGE_MANIFEST_NAME];

/** "QFI\xfb": the first four bytes of every qcow2. */
const QCOW2_MAGIC = 0x514649fb;
const SHA256 = /^[0-9a-f]{64}$/;

export const imageCacheKey = (arch: string, sha256: string): string =>
  `hexclave-emulator-image-${arch}-${sha256.toLowerCase()}`;

/** Why the cache service is not there, naming the variables of the protocol this runner would use. */
const notAvailable = (): string => cacheServiceUnavailableReason(process.env);

// ------------------------------------------------------------ fixed-path entries
// Shared with apt-cache.ts: an entry of fixed names under the Action's cache
// directory, restored by exact key. (Their natural home is cache-client.ts.)

export type EntryRestore =
  | { kind: "hit"; ms: number; key: string }
  | { kind: "miss"; ms: number }
  /** The service is not configured for this step (outage false), or it failed: an outage, not a miss. */
  | { kind: "unavailable"; ms: number; reason: string; outage: boolean }
  /** An entry was found but could not be extracted (a damaged archive). */
  | { kind: "damaged"; ms: number; reason: string };

/** @actions/cache's words when the archive it downloaded would not extract. */
const EXTRACT_FAILED = /\btar\b[^:]*\bfailed with\b|\bunzstd\b|\bzstd\b.*\bfailed\b/i;

/** Restore the entry `key` (exactly; no prefix) into `dir`. Never throws for the service's sake. */
export async function restoreEntry(
  client: CacheClient,
  dir: string,
  paths: string[],
  key: string,
): Promise<EntryRestore> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  if (!client.isFeatureAvailable())
    return { kind: "unavailable", ms: ms(), reason: notAvailable(), outage: false };
  mkdirSync(dir, { recursive: true });
  let matched: string | undefined;
  let failure: string | undefined;
  try {
    const r = await callCache(dir, () => client.restoreCache(paths, key, []));
    matched = r.value;
    failure = restoreFailure(r.messages);
  } catch (err) {
    failure = describeError(err);
  }
  if (matched !== undefined) return { kind: "hit", ms: ms(), key: matched };
  if (failure === undefined) return { kind: "miss", ms: ms() };
  if (EXTRACT_FAILED.test(failure)) return { kind: "damaged", ms: ms(), reason: failure };
  return {
    kind: "unavailable",
    ms: ms(),
    reason: `the Actions cache service failed (${failure})`,
    outage: true,
  };
}

export type EntrySave =
  | { kind: "saved"; ms: number; entryId: number; key: string }
  /** A matrix sibling saved this key first: nothing lost. */
  | { kind: "lost-race"; ms: number; key: string; reason: string }
  | { kind: "not-saved"; ms: number; reason: string; outage: boolean };

/** Save `paths` (relative to `dir`) as `key`. Never throws for the service's sake. */
export async function saveEntry(
  client: CacheClient,
  dir: string,
  paths: string[],
  key: string,
): Promise<EntrySave> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  if (!client.isFeatureAvailable())
    return { kind: "not-saved", ms: ms(), reason: notAvailable(), outage: true };
  let entryId: number;
  let messages;
  try {
    ({ value: entryId, messages } = await callCache(dir, () => client.saveCache(paths, key)));
  } catch (err) {
    const reason = `the Actions cache service failed: ${describeError(err)}`;
    return { kind: "not-saved", ms: ms(), reason, outage: true };
  }
  const verdict = saveVerdict(entryId, messages);
  if (verdict.kind === "ok") return { kind: "saved", ms: ms(), entryId, key };
  if (verdict.kind === "lost-race") return { kind: "lost-race", ms: ms(), key, reason: verdict.message };
  const reason = `the Actions cache service failed: ${verdict.message}`;
  return { kind: "not-saved", ms: ms(), reason, outage: true };
}

/** The fix for an entry that is there but unusable: entries are immutable, so it must go. */
export const deleteHint = (key: string): string =>
  `delete it (gh cache delete ${key}, or the repository's Actions → Caches page) so a later job saves a good one`;

// ------------------------------------------------------------ the image

export type ImageRestore =
  /** Restored, checked and moved into dest. */
  | { kind: "hit"; ms: number; bytes: number; key: string }
  | { kind: "miss"; ms: number; key: string }
  /** The service is not configured (logged), or failed (a warning): download as on a miss. */
  | { kind: "unavailable"; ms: number; reason: string }
  /** An entry was there but unusable (a warning was logged, nothing is at dest): download as on a miss. */
  | { kind: "unusable"; ms: number; reason: string; key: string };

export interface ImageRestoreOptions {
  /** The verified digest the image must have (the image-sha256 input, or the release's <asset>.sha256). */
  sha256: string;
  arch: string;
  /** Where the image goes: the tool-cache path the image module looks for. Replaced when it exists. */
  dest: string;
  /** A file written once dest is in place (the tool cache's `<version>/<arch>.complete`), if any. */
  marker?: string | undefined;
  /** The Action's cache directory (the same one the snapshot restore uses). */
  dir: string;
  client?: CacheClient | undefined;
  log: Logger;
}

/** Bring the image with this digest from the Actions cache to `dest`, when the cache has it. */
export async function restoreImage(opts: ImageRestoreOptions): Promise<ImageRestore> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const sha256 = checkedDigest(opts.sha256);
  const key = imageCacheKey(opts.arch, sha256);
  const client = opts.client ?? actionsCache;
  if (client.lookupStreamed && client.isFeatureAvailable()) {
    const r = await restoreStreamed(client.lookupStreamed.bind(client), key, sha256, opts);
    if (r !== "fall-back") return { ...r, ms: ms() } as ImageRestore;
  }
  const staged = join(opts.dir, IMAGE_ENTRY_NAME);
  const manifest = join(opts.dir, IMAGE_MANIFEST_NAME);
  const clear = () => IMAGE_PATHS.forEach((p) => rmSync(join(opts.dir, p), { force: true }));
  mkdirSync(opts.dir, { recursive: true });
  clear();
  try {
    const r = await restoreEntry(client, opts.dir, IMAGE_PATHS, key);
    if (r.kind === "miss") return { kind: "miss", ms: ms(), key };
    if (r.kind === "unavailable") {
      // Not configured at all is the snapshot restore's warning to give, once.
      if (r.outage) opts.log.warn(`${r.reason}: the image is downloaded instead (an outage, not a miss)`);
      else opts.log.info(`${r.reason}: the image is downloaded`);
      return { kind: "unavailable", ms: ms(), reason: r.reason };
    }
    const unusable = (why: string): ImageRestore => {
      const reason = `the cached image ${key} is unusable (${why})`;
      opts.log.warn(`${reason}: the image is downloaded instead; ${deleteHint(key)}`);
      return { kind: "unusable", ms: ms(), reason, key };
    };
    if (r.kind === "damaged") return unusable(`its archive does not extract: ${r.reason}`);
    let manifestText = "";
    try {
      manifestText = readFileSync(manifest, "utf8");
    } catch (err) {
      return unusable(`no readable manifest: ${describeError(err)}`);
    }
    const problem = checkRestored(staged, manifestText, sha256);
    if (typeof problem === "string") return unusable(problem);
    try {
      publish(staged, opts.dest, opts.log);
      if (opts.marker) writeFileSync(opts.marker, "");
    } catch (err) {
      rmSync(opts.dest, { force: true });
      if (opts.marker) rmSync(opts.marker, { force: true });
      // The entry is fine; this runner could not take it (no room, permissions).
      const reason = `the restored image could not be moved to ${opts.dest}: ${describeError(err)}`;
      opts.log.warn(
        `${reason}; the image is downloaded instead (check the tool cache's free space and owner)`,
      );
      return { kind: "unusable", ms: ms(), reason, key };
    }
    return { kind: "hit", ms: ms(), bytes: problem.bytes, key };
  } finally {
    clear();
  }
}

/**
 * The entry streamed (cache-stream.ts): the image written straight into
 * dest's directory under a temporary name, checked, then renamed to dest;
 * no copy of it anywhere else. "fall-back" when the service's answer is not
 * one this client knows, for restoreCache to try.
 */
async function restoreStreamed(
  lookup: NonNullable<CacheClient["lookupStreamed"]>,
  key: string,
  sha256: string,
  opts: ImageRestoreOptions,
): Promise<Untimed<ImageRestore> | "fall-back"> {
  let found;
  try {
    found = await lookup([...IMAGE_PATHS], key, []);
  } catch (err) {
    if (err instanceof EngineError && err.code === "CACHE_PROTOCOL") {
      opts.log.warn(`${describeError(err)}: restoring the image through @actions/cache instead`);
      return "fall-back";
    }
    const reason = `the Actions cache service failed (${describeError(err)})`;
    opts.log.warn(`${reason}: the image is downloaded instead (an outage, not a miss)`);
    return { kind: "unavailable", reason };
  }
  if (found.kind === "not-readable") {
    opts.log.info(`image restore skipped: the effective cache-mode '${found.mode}' does not permit reads`);
    return { kind: "miss", key };
  }
  if (found.kind === "miss") return { kind: "miss", key };
  const unusable = (why: string): Untimed<ImageRestore> => {
    const reason = `the cached image ${key} is unusable (${why})`;
    opts.log.warn(`${reason}: the image is downloaded instead; ${deleteHint(key)}`);
    return { kind: "unusable", reason, key };
  };
  const partial = `${opts.dest}.partial-${process.pid}-${randomBytes(4).toString("hex")}`;
  let manifestText = "";
  try {
    mkdirSync(dirname(opts.dest), { recursive: true });
    try {
      await found.stream(async (member, data) => {
        if (member === IMAGE_MANIFEST_NAME) manifestText = await readSmall(data, 64 * 1024);
        else await writeNew(data, partial);
      });
    } catch (err) {
      if (err instanceof DownloadError) {
        const reason = `the download of ${key} failed (${describeError(err)})`;
        opts.log.warn(`${reason}: the image is downloaded instead (an outage, not a miss)`);
        return { kind: "unavailable", reason };
      }
      if (err instanceof EngineError && err.code === "CACHE_ENTRY_INVALID")
        return unusable(`its archive does not extract: ${err.message}`);
      // The entry is fine; this runner could not take it (no room, permissions).
      const reason = `the restored image could not be written to ${dirname(opts.dest)}: ${describeError(err)}`;
      opts.log.warn(
        `${reason}; the image is downloaded instead (check the tool cache's free space and owner)`,
      );
      return { kind: "unusable", reason, key };
    }
    const problem = checkRestored(partial, manifestText, sha256);
    if (typeof problem === "string") return unusable(problem);
    renameSync(partial, opts.dest);
    if (opts.marker) writeFileSync(opts.marker, "");
    opts.log.info(`restored the image ${key} streamed: ${problem.bytes} bytes, checked`);
    return { kind: "hit", bytes: problem.bytes, key };
  } finally {
    rmSync(partial, { force: true });
  }
}

/** A member's bytes into a new file (refused if it exists), fsynced before it resolves. */
async function writeNew(data: AsyncIterable<Buffer>, path: string): Promise<void> {
  await pipeline(data, createWriteStream(path, { flags: "wx", mode: 0o644 }));
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A small member (the manifest) as text; more than `limit` bytes is a damaged entry. */
async function readSmall(data: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const piece of data) {
    n += piece.length;
    if (n > limit)
      throw new EngineError("CACHE_ENTRY_INVALID", `the image's manifest is over ${limit} bytes`, {
        hint: "the entry was not saved by this Action: delete it",
      });
    parts.push(piece);
  }
  return Buffer.concat(parts).toString("utf8");
}

export interface ImageSaveOptions {
  /** The digest this job verified for its download. */
  sha256: string;
  /** The entry's key (imageCacheKey), as the main step left it in the state. */
  key: string;
  /** The downloaded image (its tool-cache path). */
  path: string;
  dir: string;
  client?: CacheClient | undefined;
  log: Logger;
}

export type ImageSave = EntrySave & { bytes?: number };

/**
 * Save the image this job downloaded (never one it restored: the caller
 * sets the state only after a download). A lost race is benign; anything
 * else is a warning.
 */
export async function saveImage(opts: ImageSaveOptions): Promise<ImageSave> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const client = opts.client ?? actionsCache;
  const notSaved = (reason: string, outage: boolean): ImageSave => {
    opts.log.warn(`the image was not saved to the Actions cache: ${reason}`);
    return { kind: "not-saved", ms: ms(), reason, outage };
  };
  if (!client.isFeatureAvailable()) return notSaved(notAvailable(), true);
  const sha256 = checkedDigest(opts.sha256);
  let bytes: number;
  try {
    bytes = statSync(opts.path).size;
    if (!hasQcow2Magic(opts.path)) return notSaved(`${opts.path} is not a qcow2 image`, false);
  } catch (err) {
    return notSaved(`${opts.path} cannot be read: ${describeError(err)}`, false);
  }
  const staged = join(opts.dir, IMAGE_ENTRY_NAME);
  const clear = () => IMAGE_PATHS.forEach((p) => rmSync(join(opts.dir, p), { force: true }));
  mkdirSync(opts.dir, { recursive: true });
  clear();
  try {
    try {
      stage(opts.path, staged, opts.log);
      writeFileSync(join(opts.dir, IMAGE_MANIFEST_NAME), `${JSON.stringify({ sha256, bytes })}\n`);
    } catch (err) {
      return notSaved(`could not stage ${opts.path} in ${opts.dir}: ${describeError(err)}`, false);
    }
    const r = await saveEntry(client, opts.dir, IMAGE_PATHS, opts.key);
    if (r.kind === "lost-race") {
      opts.log.info(`another job saved ${opts.key} first (${r.reason}): nothing to do`);
      return r;
    }
    if (r.kind === "not-saved") return notSaved(r.reason, r.outage);
    return { ...r, bytes };
  } finally {
    clear();
  }
}

function checkedDigest(sha256: string): string {
  const d = sha256.toLowerCase();
  if (!SHA256.test(d)) {
    throw new EngineError("CHECKSUM_INVALID", `"${sha256}" is not a sha256 (64 hex digits)`, {
      hint: "key the image cache with the hex sha256 the image was verified against",
    });
  }
  return d;
}

/** The problem with a restored entry (the image, the manifest's text), or its size when it is fine. */
function checkRestored(image: string, manifestText: string, sha256: string): string | { bytes: number } {
  let m: unknown;
  try {
    m = JSON.parse(manifestText);
  } catch (err) {
    return `no readable manifest: ${describeError(err)}`;
  }
  const said = m as { sha256?: unknown; bytes?: unknown };
  if (said.sha256 !== sha256) return `its manifest names sha256 ${String(said.sha256)}`;
  if (typeof said.bytes !== "number") return "its manifest has no size";
  let size: number;
  try {
    size = statSync(image).size;
  } catch (err) {
    return `no image in the entry: ${describeError(err)}`;
  }
  if (size !== said.bytes) return `the image has ${size} bytes, its manifest says ${said.bytes}`;
  if (!hasQcow2Magic(image)) return "the image is not a qcow2 (no QFI\\xfb magic)";
  return { bytes: size };
}

function hasQcow2Magic(path: string): boolean {
  const head = Buffer.alloc(4);
  const fd = openSync(path, "r");
  try {
    return readSync(fd, head, 0, 4, 0) === 4 && head.readUInt32BE(0) === QCOW2_MAGIC;
  } finally {
    closeSync(fd);
  }
}

const crossDevice = (err: unknown) =>
  ["EXDEV", "EPERM", "EMLINK"].includes((err as { code?: string }).code ?? "");

/** Rename into place; across file systems (a container job's mounts), copy beside dest, then rename. */
function publish(from: string, dest: string, log: Logger): void {
  mkdirSync(dirname(dest), { recursive: true });
  try {
    renameSync(from, dest);
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== "EXDEV") throw err;
  }
  log.info(`the tool cache is on another file system than ${dirname(from)}: copying the image`);
  const tmp = `${dest}.partial-${process.pid}`;
  try {
    copyFileSync(from, tmp);
    renameSync(tmp, dest);
  } finally {
    if (existsSync(tmp)) rmSync(tmp, { force: true });
  }
}

/** A hard link (no copy of GBs); a copy where the file systems differ. */
function stage(from: string, to: string, log: Logger): void {
  try {
    linkSync(from, to);
  } catch (err) {
    if (!crossDevice(err)) throw err;
    log.info(`${from} cannot be linked into ${dirname(to)} (${describeError(err)}): copying it`);
    copyFileSync(from, to);
  }
}
