/** Packing a published snapshot into one archive, zstd or plain (transport.ts has the overview). */
import { createWriteStream } from "node:fs";
import { open, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { EngineError } from "../errors.js";
import {
  encodeExtent,
  encodeFileEnd,
  encodeFileStart,
  encodeHeader,
  encodeTrailer,
} from "./archive-format.js";
import { randomHex } from "./durable.js";
import { COMPLETE_FILE, MANIFEST_FILE, parseManifest } from "./manifest.js";
import type { SnapshotManifest } from "./manifest.js";
import { MIN_SIZE_FOR_SEEK, dataMap } from "./holes.js";
import { dataExtents } from "./sparse.js";
import { zstdCompress } from "./zstd.js";

export interface TransportStats {
  files: number;
  /** Sum of apparent file sizes (holes included). */
  apparentBytes: number;
  /** Bytes of non-zero data actually carried. */
  dataBytes: number;
  /** Size of the archive (the framing's own size when it is not compressed). */
  compressedBytes: number;
  ms: number;
}

export interface PackStats extends TransportStats {
  /** Bytes read from the snapshot files: the data ranges, not the holes. */
  readBytes: number;
  /** How the data ranges were found: "seek" for all big files, else "read-all" (see holes.ts). */
  holeMap: "seek" | "read-all";
}

export interface PackOptions {
  /**
   * "zstd" (default) for a file that travels as it is; "none" when the
   * carrier compresses it anyway (the Actions cache does), so it is
   * compressed once and can be unpacked from the carrier's stream.
   */
  compression?: "zstd" | "none";
  /** zstd level, 1-3 are the fast ones (default 3). */
  level?: number;
  /** zstd worker threads, 0 = one per core (default). */
  threads?: number;
  /** Ask the file system where the holes are (default true); false reads every byte. */
  seekHoles?: boolean;
}

/** Pack a published snapshot directory into `outFile` (written under a temporary name, then renamed). */
export async function packSnapshot(
  snapshotDir: string,
  outFile: string,
  options: PackOptions = {},
): Promise<PackStats> {
  const started = performance.now();
  const manifest = await readPublishedManifest(snapshotDir);
  const names = [MANIFEST_FILE, ...manifest.files.map((f) => f.name)];
  const stats: PackStats = {
    files: names.length,
    apparentBytes: 0,
    dataBytes: 0,
    compressedBytes: 0,
    ms: 0,
    readBytes: 0,
    holeMap: "seek",
  };
  const tmp = `${outFile}.tmp-${randomHex()}`;

  async function* frames(): AsyncGenerator<Buffer> {
    yield encodeHeader(names.length);
    for (const name of names) {
      const fh = await open(join(snapshotDir, name), "r");
      try {
        const size = (await fh.stat()).size;
        const expected = manifest.files.find((f) => f.name === name)?.bytes;
        if (expected !== undefined && expected !== size) {
          throw new EngineError(
            "SNAPSHOT_CORRUPT",
            `${name} is ${size} bytes, the manifest says ${expected}`,
            {
              hint: "verify the snapshot before packing it",
            },
          );
        }
        stats.apparentBytes += size;
        const map =
          options.seekHoles === false
            ? { ranges: [{ start: 0, end: size }], method: "read-all" as const }
            : await dataMap(join(snapshotDir, name), size);
        if (map.method === "read-all" && size >= MIN_SIZE_FOR_SEEK) stats.holeMap = "read-all";
        stats.readBytes += map.ranges.reduce((n, r) => n + r.end - r.start, 0);
        yield encodeFileStart(name, size);
        let fileData = 0;
        for await (const e of dataExtents(fh, size, map.ranges)) {
          yield encodeExtent(e.offset, e.data.length);
          yield e.data;
          fileData += e.data.length;
        }
        stats.dataBytes += fileData;
        yield encodeFileEnd(fileData);
      } finally {
        await fh.close();
      }
    }
    yield encodeTrailer(names.length, stats.dataBytes);
  }

  try {
    if (options.compression === "none") await writePlain(frames(), tmp, snapshotDir);
    else await writeZstd(frames(), tmp, snapshotDir, options);
    stats.compressedBytes = (await stat(tmp)).size;
    await rename(tmp, outFile);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  stats.ms = Math.round(performance.now() - started);
  return stats;
}

async function writeZstd(
  frames: AsyncIterable<Buffer>,
  tmp: string,
  snapshotDir: string,
  options: PackOptions,
): Promise<void> {
  const z = zstdCompress(tmp, { level: options.level ?? 3, threads: options.threads ?? 0 });
  const fed = pipeline(Readable.from(frames), z.stdin).then(
    () => undefined,
    (err: unknown) => err,
  );
  const [feedError, result] = await Promise.all([fed, z.done]);
  if (feedError instanceof EngineError) throw feedError;
  if (!result.ok) {
    throw new EngineError("ZSTD_FAILED", `zstd could not compress ${snapshotDir}: ${result.message}`, {
      hint: "check free space where the archive is written",
    });
  }
  if (feedError) throw packFailed(snapshotDir, feedError);
}

async function writePlain(frames: AsyncIterable<Buffer>, tmp: string, snapshotDir: string): Promise<void> {
  try {
    await pipeline(Readable.from(frames), createWriteStream(tmp, { flags: "wx" }));
  } catch (err) {
    if (err instanceof EngineError) throw err;
    throw packFailed(snapshotDir, err);
  }
}

function packFailed(snapshotDir: string, cause: unknown): EngineError {
  return new EngineError("SNAPSHOT_PACK_FAILED", `packing ${snapshotDir} failed: ${String(cause)}`, {
    hint: "the snapshot changed or became unreadable while it was packed, or the archive's disk is full: verify it",
    cause,
  });
}

async function readPublishedManifest(dir: string): Promise<SnapshotManifest> {
  try {
    await stat(join(dir, COMPLETE_FILE));
  } catch (err) {
    throw new EngineError("SNAPSHOT_INCOMPLETE", `${dir} is not a published snapshot (no ${COMPLETE_FILE})`, {
      hint: "only pack snapshots the store published",
      cause: err,
    });
  }
  const manifest = parseManifest(await readFile(join(dir, MANIFEST_FILE), "utf8"));
  if (manifest instanceof EngineError) throw manifest;
  return manifest;
}
