/**
 * A snapshot on disk and in transit: each file's apparent and allocated
 * size, the engine's sparse-aware zstd archive (pack and unpack), and for
 * comparison plain `zstd -1` of the RAM file, which reads every byte.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { packSnapshot, unpackSnapshot } from "../src/engine/index.js";
import { now, round } from "./stats.js";

export interface FileSize {
  name: string;
  apparentBytes: number;
  /** st_blocks × 512: what the file really occupies. */
  allocatedBytes: number;
}

export interface SnapshotSize {
  files: FileSize[];
  apparentBytes: number;
  allocatedBytes: number;
}

export interface TransportFigures {
  /** packSnapshot: the engine's archive (default level, one thread per core). */
  packMs: number;
  compressedBytes: number;
  /** Bytes packSnapshot read: the data extents, not the holes. */
  readBytes: number;
  holeMap: string;
  /** packSnapshot at zstd level 1: the same level as the plain comparison, so only the holes differ. */
  packLevel1Ms: number | undefined;
  /** unpackSnapshot: total, extract (decompress + write), publish (deep verify, fsync, rename). */
  unpackMs: number;
  extractMs: number;
  publishMs: number;
  /** Plain `zstd -1 -T0` of the RAM file alone. */
  plainZstd1: { file: string; ms: number; compressedBytes: number } | undefined;
}

export function snapshotSize(dir: string): SnapshotSize {
  const files = readdirSync(dir)
    .filter((n) => statSync(join(dir, n)).isFile())
    .map((name) => {
      const st = statSync(join(dir, name));
      return { name, apparentBytes: st.size, allocatedBytes: st.blocks * 512 };
    });
  return {
    files,
    apparentBytes: files.reduce((n, f) => n + f.apparentBytes, 0),
    allocatedBytes: files.reduce((n, f) => n + f.allocatedBytes, 0),
  };
}

/** `zstd -1 -T0` of one file into scratch, timed; the output is removed. */
export function plainZstd(file: string, scratch: string, level = 1): { ms: number; compressedBytes: number } {
  const out = join(scratch, `${basename(file)}.zst`);
  const t0 = now();
  execFileSync("zstd", ["-q", "-f", `-${level}`, "-T0", "-o", out, file], { stdio: "ignore" });
  const ms = now() - t0;
  const compressedBytes = statSync(out).size;
  rmSync(out, { force: true });
  return { ms: round(ms), compressedBytes };
}

/** Pack the snapshot, unpack it into a scratch store, and compress its RAM file plainly. */
export async function measureTransport(
  snapshotDir: string,
  ramFile: string | undefined,
  scratch: string,
  opts: { unpack: boolean; level1?: boolean } = { unpack: true },
): Promise<TransportFigures> {
  mkdirSync(scratch, { recursive: true });
  const archive = join(scratch, "snapshot.hxs.zst");
  const storeRoot = join(scratch, "unpacked");
  try {
    const pack = await packSnapshot(snapshotDir, archive);
    let packLevel1Ms: number | undefined;
    if (opts.level1) {
      rmSync(archive, { force: true });
      packLevel1Ms = (await packSnapshot(snapshotDir, archive, { level: 1 })).ms;
    }
    let unpack = { ms: Number.NaN, extractMs: Number.NaN, publishMs: Number.NaN };
    if (opts.unpack) {
      mkdirSync(storeRoot, { recursive: true });
      const r = await unpackSnapshot(archive, join(storeRoot, basename(snapshotDir)), { force: true });
      unpack = r.stats;
    }
    rmSync(archive, { force: true });
    rmSync(storeRoot, { recursive: true, force: true });
    const plain = ramFile ? { file: basename(ramFile), ...plainZstd(ramFile, scratch) } : undefined;
    return {
      packMs: pack.ms,
      compressedBytes: pack.compressedBytes,
      readBytes: pack.readBytes,
      holeMap: pack.holeMap,
      packLevel1Ms,
      unpackMs: unpack.ms,
      extractMs: unpack.extractMs,
      publishMs: unpack.publishMs,
      plainZstd1: plain,
    };
  } finally {
    rmSync(archive, { force: true });
    rmSync(storeRoot, { recursive: true, force: true });
  }
}
