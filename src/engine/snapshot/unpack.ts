/** Unpacking an archive into a store, verified before it is published (transport.ts has the overview). */
import { createReadStream } from "node:fs";
import { open, readFile, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { EngineError } from "../errors.js";
import { ArchiveFormatError, isPlainArchive, readArchive } from "./archive-format.js";
import type { ArchiveEvent } from "./archive-format.js";
import { ContentDigest } from "./digest.js";
import { isErrno } from "./durable.js";
import { MANIFEST_FILE, parseManifest } from "./manifest.js";
import type { TransportStats } from "./pack.js";
import { openSnapshotStore } from "./store.js";
import type { PublishedSnapshot, StoreEvent } from "./store.js";
import { zstdDecompress } from "./zstd.js";

export interface UnpackOptions {
  /** Replace a snapshot already published at destDir. */
  force?: boolean;
  onEvent?: (e: StoreEvent) => void;
}

export interface UnpackResult {
  snapshot: PublishedSnapshot;
  /** extractMs: decompress, write and digest; publishMs: compare digests, fsync, rename. */
  stats: TransportStats & { extractMs: number; publishMs: number };
}

/**
 * Unpack into `destDir` = `<store root>/<key>`: through a store writer (lock,
 * hidden temporary dir), verified deep against the unpacked manifest, then
 * published. Any failure leaves nothing at destDir; a bad archive throws
 * SNAPSHOT_ARCHIVE_INVALID. The archive is zstd or plain (packed with
 * compression "none"): its first bytes say which.
 */
export async function unpackSnapshot(
  archive: string,
  destDir: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  const started = performance.now();
  const { size, head } = await stat(archive).then(
    async (s) => ({ size: s.size, head: await readHead(archive) }),
    (err: unknown) => {
      throw invalidArchive(archive, isErrno(err, "ENOENT") ? "it does not exist" : String(err), err);
    },
  );
  const extract = isPlainArchive(head) ? extractPlain : extractZstd;
  return unpackWith(archive, destDir, options, started, size, (dir) => extract(archive, dir));
}

/**
 * Unpack a plain archive (packed with compression "none") as it arrives, as
 * unpackSnapshot does a file: nothing is published unless all of it came and
 * verified. An error thrown by `source` itself (a download that broke off) is
 * rethrown as it is, so the caller can tell its transport from a bad archive.
 */
export async function unpackSnapshotStream(
  source: AsyncIterable<Buffer>,
  destDir: string,
  options: UnpackOptions & { label: string },
): Promise<UnpackResult> {
  const started = performance.now();
  let bytes = 0;
  async function* counted(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of source) {
        bytes += chunk.length;
        yield chunk;
      }
    } catch (err) {
      throw new SourceFailure(err);
    }
  }
  try {
    const r = await unpackWith(options.label, destDir, options, started, 0, (dir) =>
      extractEvents(options.label, readArchive(counted()), dir),
    );
    return { ...r, stats: { ...r.stats, compressedBytes: bytes } };
  } catch (err) {
    throw err instanceof SourceFailure ? err.cause : err;
  }
}

/** Wraps an error of the bytes' source, to be told apart from one of the archive or the store. */
class SourceFailure extends Error {
  constructor(override readonly cause: unknown) {
    super(String(cause));
  }
}

async function unpackWith(
  archive: string,
  destDir: string,
  options: UnpackOptions,
  started: number,
  compressedBytes: number,
  extract: (dir: string) => Promise<Extracted>,
): Promise<UnpackResult> {
  const store = openSnapshotStore(dirname(destDir), options.onEvent ? { onEvent: options.onEvent } : {});
  const writer = await store.begin(basename(destDir), { force: options.force ?? false });
  try {
    const { digests, ...extracted } = await extract(writer.dir);
    const extractMs = performance.now() - started;
    const manifest = parseManifest(await readFile(writer.path(MANIFEST_FILE), "utf8").catch(() => ""));
    if (manifest instanceof EngineError) throw invalidArchive(archive, manifest.message, manifest);
    const publishStart = performance.now();
    let snapshot: PublishedSnapshot;
    try {
      // Deep, from the digests taken while writing: nothing is read back.
      snapshot = await writer.publishPrepared(manifest, { deep: true, digests });
    } catch (err) {
      // The archive's content is wrong (not our store): say so, with what exactly.
      if (err instanceof EngineError && CONTENT_ERRORS.has(err.code)) {
        throw invalidArchive(archive, err.message, err);
      }
      throw err;
    }
    return {
      snapshot,
      stats: {
        ...extracted,
        compressedBytes,
        ms: Math.round(performance.now() - started),
        extractMs: Math.round(extractMs),
        publishMs: Math.round(performance.now() - publishStart),
      },
    };
  } finally {
    await writer.abort(); // no-op once published
  }
}

async function readHead(file: string): Promise<Buffer> {
  const fh = await open(file, "r");
  try {
    const b = Buffer.alloc(8);
    const { bytesRead } = await fh.read(b, 0, 8, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

const CONTENT_ERRORS = new Set(["SNAPSHOT_CORRUPT", "SNAPSHOT_KEY_MISMATCH", "SNAPSHOT_PUBLISH_INVALID"]);

type ExtractStats = Pick<TransportStats, "files" | "apparentBytes" | "dataBytes">;
/** `digests`: every extracted file but manifest.json, computed from the bytes written. */
type Extracted = ExtractStats & { digests: Map<string, string> };

async function extractZstd(archive: string, dir: string): Promise<Extracted> {
  let z;
  try {
    z = zstdDecompress(archive);
  } catch (err) {
    if (err instanceof EngineError) throw err;
    throw invalidArchive(archive, `it cannot be read: ${String(err)}`, err);
  }
  let stats: Extracted | undefined;
  let parseError: unknown;
  try {
    stats = await writeFiles(readArchive(z.stdout), dir);
  } catch (err) {
    parseError = err;
    z.stop();
  }
  const result = await z.done;
  if (parseError !== undefined && !(parseError instanceof ArchiveFormatError))
    throw unpackFailed(archive, parseError);
  // zstd's own complaint ("Data corruption detected", "unsupported format") is the real cause of a
  // stream that ended early or turned to garbage.
  if (result.complained) throw invalidArchive(archive, `zstd: ${result.message}`);
  if (parseError instanceof ArchiveFormatError) throw invalidArchive(archive, parseError.message, parseError);
  if (!result.ok || !stats) throw invalidArchive(archive, `zstd: ${result.message}`);
  return stats;
}

/** Read in 1 MiB pieces: the parser and the writes see few, large chunks. */
const extractPlain = (archive: string, dir: string): Promise<Extracted> =>
  extractEvents(archive, readArchive(createReadStream(archive, { highWaterMark: 1 << 20 })), dir);

async function extractEvents(
  archive: string,
  events: AsyncIterable<ArchiveEvent>,
  dir: string,
): Promise<Extracted> {
  try {
    return await writeFiles(events, dir);
  } catch (err) {
    if (err instanceof SourceFailure) throw err;
    if (err instanceof ArchiveFormatError) throw invalidArchive(archive, err.message, err);
    throw unpackFailed(archive, err);
  }
}

function unpackFailed(archive: string, cause: unknown): EngineError {
  return new EngineError("SNAPSHOT_UNPACK_FAILED", `unpacking ${archive} failed: ${String(cause)}`, {
    hint: "check free space and permissions of the snapshot store",
    cause,
  });
}

/** Every file of the archive, in stream order (see ExtractedFile). */
async function writeFiles(events: AsyncIterable<ArchiveEvent>, dir: string): Promise<Extracted> {
  const stats: Extracted = { files: 0, apparentBytes: 0, dataBytes: 0, digests: new Map() };
  let file: ExtractedFile | undefined;
  try {
    for await (const ev of events) {
      if (ev.type === "file") {
        file = await ExtractedFile.create(dir, ev.name, ev.apparentSize);
        stats.files++;
        stats.apparentBytes += ev.apparentSize;
      } else if (ev.type === "data") {
        await file!.data(ev.offset, ev.data);
      } else {
        const { name, digest, dataBytes } = await file!.finish();
        if (digest !== undefined) stats.digests.set(name, digest);
        stats.dataBytes += dataBytes;
        file = undefined;
      }
    }
  } finally {
    await file?.discard();
  }
  return stats;
}

/** Bytes per write: few syscalls and thread-pool hops, yet the pipe keeps flowing meanwhile. */
const WRITE_BATCH = 1 << 20;
/** Start writing back (datasync) after this much: the disk works while zstd does, not after it. */
const SYNC_EVERY = 16 << 20;

/**
 * One file being extracted. It is created at its apparent size (ftruncate:
 * all hole) and its extents are written at their offsets, batched, one write
 * in flight while the next batch is parsed and hashed (awaiting each write
 * would stall the pipe and with it zstd). Its digest is computed from the
 * extents as they pass; what is never written stays a hole and digests as the
 * zeros it reads as, so the digest is the file's and publishing needs no
 * second read. Written data is datasynced in the background as it goes, so
 * the fsync before publishing finds little left to do.
 */
class ExtractedFile {
  private pending: Buffer[] = [];
  private pendingAt = 0;
  private pendingBytes = 0;
  private writing: Promise<void> = Promise.resolve();
  private syncing: Promise<void> | undefined;
  private syncFailure: unknown;
  private unsynced = 0;
  private dataBytes = 0;

  private constructor(
    readonly name: string,
    private readonly fh: FileHandle,
    private readonly digest: ContentDigest | undefined,
  ) {}

  static async create(dir: string, name: string, size: number): Promise<ExtractedFile> {
    const fh = await open(join(dir, name), "wx");
    try {
      await fh.truncate(size);
    } catch (err) {
      await fh.close();
      throw err;
    }
    // manifest.json is checked by parsing it; every other file by its digest.
    return new ExtractedFile(name, fh, name === MANIFEST_FILE ? undefined : new ContentDigest(size));
  }

  async data(offset: number, piece: Buffer): Promise<void> {
    if (this.pendingBytes > 0 && this.pendingAt + this.pendingBytes !== offset) await this.flush();
    if (this.pendingBytes === 0) this.pendingAt = offset;
    this.pending.push(piece);
    this.pendingBytes += piece.length;
    this.digest?.update(offset, piece);
    if (this.pendingBytes >= WRITE_BATCH) await this.flush();
  }

  /** Everything written (not yet fsynced: the writer does that), the handle closed. */
  async finish(): Promise<{ name: string; digest: string | undefined; dataBytes: number }> {
    await this.flush();
    await this.settle();
    await this.fh.close();
    if (this.syncFailure !== undefined) throw this.syncFailure;
    return { name: this.name, digest: this.digest?.digest(), dataBytes: this.dataBytes };
  }

  /** After a failure elsewhere: let what is in flight end, close. */
  async discard(): Promise<void> {
    await this.settle().catch(() => undefined);
    await this.fh.close().catch(() => undefined);
  }

  private async settle(): Promise<void> {
    try {
      await this.writing;
    } finally {
      await this.syncing;
    }
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const [bufs, at, n] = [this.pending, this.pendingAt, this.pendingBytes];
    this.pending = [];
    this.pendingBytes = 0;
    await this.writing;
    this.writing = writeAll(this.fh, bufs, at, n).then(() => this.wrote(n));
    this.writing.catch(() => undefined); // awaited by the next flush or settle; not unhandled meanwhile
  }

  private wrote(n: number): void {
    this.dataBytes += n;
    this.unsynced += n;
    if (this.unsynced < SYNC_EVERY || this.syncing) return;
    this.unsynced = 0;
    this.syncing = this.fh
      .datasync()
      .catch((err: unknown) => void (this.syncFailure ??= err))
      .finally(() => (this.syncing = undefined));
  }
}

/** pwritev all of `bufs` at `position`, resuming after a short write. */
async function writeAll(fh: FileHandle, bufs: Buffer[], position: number, length: number): Promise<void> {
  let done = 0;
  let rest = bufs;
  while (done < length) {
    const { bytesWritten } = await fh.writev(rest, position + done);
    if (bytesWritten <= 0) throw new Error(`write at ${position + done} made no progress`);
    done += bytesWritten;
    rest = dropBytes(rest, bytesWritten);
  }
}

function dropBytes(bufs: Buffer[], n: number): Buffer[] {
  let i = 0;
  while (i < bufs.length && n >= bufs[i]!.length) n -= bufs[i++]!.length;
  const rest = bufs.slice(i);
  if (n > 0 && rest.length) rest[0] = rest[0]!.subarray(n);
  return rest;
}

function invalidArchive(archive: string, detail: string, cause?: unknown): EngineError {
  return new EngineError(
    "SNAPSHOT_ARCHIVE_INVALID",
    `snapshot archive ${archive} cannot be unpacked: ${detail}`,
    {
      hint: "the cached archive is damaged or from another engine version: drop it; the snapshot will be captured again",
      ...(cause === undefined ? {} : { cause }),
    },
  );
}
