/** Unpacking an archive into a store, verified before it is published (transport.ts has the overview). */
import { open, readFile, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { EngineError } from "../errors.js";
import { ArchiveFormatError, readArchive } from "./archive-format.js";
import type { ArchiveEvent } from "./archive-format.js";
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
  /** extractMs: decompress and write; publishMs: deep verify (sha256 of every file), fsync, rename. */
  stats: TransportStats & { extractMs: number; publishMs: number };
}

/**
 * Unpack into `destDir` = `<store root>/<key>`: through a store writer (lock,
 * hidden temporary dir), verified deep against the unpacked manifest, then
 * published. Any failure leaves nothing at destDir; a bad archive throws
 * SNAPSHOT_ARCHIVE_INVALID.
 */
export async function unpackSnapshot(
  archive: string,
  destDir: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  const started = performance.now();
  const compressedBytes = await stat(archive).then(
    (s) => s.size,
    (err: unknown) => {
      throw invalidArchive(archive, isErrno(err, "ENOENT") ? "it does not exist" : String(err), err);
    },
  );
  const store = openSnapshotStore(dirname(destDir), options.onEvent ? { onEvent: options.onEvent } : {});
  const writer = await store.begin(basename(destDir), { force: options.force ?? false });
  try {
    const extracted = await extract(archive, writer.dir);
    const extractMs = performance.now() - started;
    const manifest = parseManifest(await readFile(writer.path(MANIFEST_FILE), "utf8").catch(() => ""));
    if (manifest instanceof EngineError) throw invalidArchive(archive, manifest.message, manifest);
    const publishStart = performance.now();
    let snapshot: PublishedSnapshot;
    try {
      snapshot = await writer.publishPrepared(manifest, { deep: true });
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

const CONTENT_ERRORS = new Set(["SNAPSHOT_CORRUPT", "SNAPSHOT_KEY_MISMATCH", "SNAPSHOT_PUBLISH_INVALID"]);

type ExtractStats = Pick<TransportStats, "files" | "apparentBytes" | "dataBytes">;

async function extract(archive: string, dir: string): Promise<ExtractStats> {
  const z = zstdDecompress(archive);
  let stats: ExtractStats | undefined;
  let parseError: unknown;
  try {
    stats = await writeFiles(readArchive(z.stdout), dir);
  } catch (err) {
    parseError = err;
    z.stop();
  }
  const result = await z.done;
  if (parseError !== undefined && !(parseError instanceof ArchiveFormatError)) {
    throw new EngineError("SNAPSHOT_UNPACK_FAILED", `unpacking ${archive} failed: ${String(parseError)}`, {
      hint: "check free space and permissions of the snapshot store",
      cause: parseError,
    });
  }
  // zstd's own complaint ("Data corruption detected", "unsupported format") is the real cause of a
  // stream that ended early or turned to garbage.
  if (result.complained) throw invalidArchive(archive, `zstd: ${result.message}`);
  if (parseError instanceof ArchiveFormatError) throw invalidArchive(archive, parseError.message, parseError);
  if (!result.ok || !stats) throw invalidArchive(archive, `zstd: ${result.message}`);
  return stats;
}

/** Files are created at their apparent size (ftruncate: all hole), then data extents are written at their offsets. */
async function writeFiles(events: AsyncIterable<ArchiveEvent>, dir: string): Promise<ExtractStats> {
  const stats: ExtractStats = { files: 0, apparentBytes: 0, dataBytes: 0 };
  let fh: FileHandle | undefined;
  let pending: Buffer[] = [];
  let pendingAt = 0;
  let pendingBytes = 0;
  const flush = async (): Promise<void> => {
    if (!fh || pendingBytes === 0) return;
    await fh.writev(pending, pendingAt);
    stats.dataBytes += pendingBytes;
    pending = [];
    pendingBytes = 0;
  };
  try {
    for await (const ev of events) {
      if (ev.type === "file") {
        fh = await open(join(dir, ev.name), "wx");
        await fh.truncate(ev.apparentSize);
        stats.files++;
        stats.apparentBytes += ev.apparentSize;
      } else if (ev.type === "data") {
        if (pendingBytes > 0 && pendingAt + pendingBytes !== ev.offset) await flush();
        if (pendingBytes === 0) pendingAt = ev.offset;
        pending.push(ev.data);
        pendingBytes += ev.data.length;
        if (pendingBytes >= 1 << 20) await flush();
      } else {
        await flush();
        await fh?.close();
        fh = undefined;
      }
    }
  } finally {
    await fh?.close();
  }
  return stats;
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
