/**
 * Finding the data in a mostly-empty file (a guest RAM file: 4 GiB apparent,
 * a few hundred MiB written).
 *
 * Why zero detection and not SEEK_DATA/SEEK_HOLE: Node has no lseek binding;
 * the CLI stand-ins are not faithful or not everywhere (`filefrag` is
 * e2fsprogs, Linux only, FIEMAP is unsupported on tmpfs and overlay lower
 * layers, and reports unwritten preallocated extents that read as zeros;
 * python3/perl are not guaranteed and SEEK_DATA's value differs between Linux
 * (3) and macOS (4)). Reading 1 MiB blocks and skipping all-zero 4 KiB pages is
 * correct on every file system and OS, also finds pages the guest zeroed (a
 * non-sparse or streamed RAM file), and holes cost no disk IO: the kernel
 * hands back zero pages (about 10 GiB/s here, see block-io.ts). The price is
 * CPU to read and compare the holes, well below what zstd and sha256 spend on
 * the same file.
 */
import type { FileHandle } from "node:fs/promises";
import { BLOCK, blockBuffer, readFully } from "./block-io.js";

/** Zero-detection granularity: the guest page size on x86-64 and most arm64 kernels. */
const PAGE = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

export interface DataExtent {
  offset: number;
  /** A fresh buffer the caller may keep. */
  data: Buffer;
}

/** The non-zero extents of `fh`'s first `size` bytes, in offset order, at most BLOCK long each. */
export async function* dataExtents(fh: FileHandle, size: number): AsyncGenerator<DataExtent> {
  const buf = blockBuffer();
  for (let pos = 0; pos < size; pos += BLOCK) {
    const want = Math.min(BLOCK, size - pos);
    const got = await readFully(fh, buf, want, pos);
    if (got !== want) throw new Error(`file shrank while being read (${pos + got} of ${size} bytes)`);
    if (want === BLOCK ? buf.equals(ZERO_BLOCK) : isZero(buf, 0, want)) continue;
    let runStart = -1;
    for (let off = 0; off < want; off += PAGE) {
      const end = Math.min(off + PAGE, want);
      const zero = isZero(buf, off, end);
      if (!zero && runStart < 0) runStart = off;
      if (zero && runStart >= 0) {
        yield { offset: pos + runStart, data: Buffer.from(buf.subarray(runStart, off)) };
        runStart = -1;
      }
    }
    if (runStart >= 0) yield { offset: pos + runStart, data: Buffer.from(buf.subarray(runStart, want)) };
  }
}

function isZero(buf: Buffer, start: number, end: number): boolean {
  return buf.compare(ZERO_BLOCK, 0, end - start, start, end) === 0;
}
