/**
 * Finding the data in a mostly-empty file (a guest RAM file: 4 GiB apparent,
 * a few hundred MiB written), in two steps that are each correct alone:
 * holes.ts asks the file system which ranges may hold data (SEEK_DATA /
 * SEEK_HOLE; the whole file when it cannot), and only those ranges are read;
 * then every 4 KiB page read is compared with zeros and all-zero pages are
 * skipped too. The comparison catches what the file system cannot know (pages
 * the guest zeroed, a RAM file that was copied without holes) and is the
 * whole mechanism where no hole map is available: reading a hole is never
 * wrong, only slower (see holes.ts for the measurements).
 */
import type { FileHandle } from "node:fs/promises";
import { BLOCK, blockBuffer, readFully, segments } from "./block-io.js";
import type { ByteRange } from "./holes.js";

/** Zero-detection granularity: the guest page size on x86-64 and most arm64 kernels. */
const PAGE = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

export interface DataExtent {
  offset: number;
  /** A fresh buffer the caller may keep. */
  data: Buffer;
}

/**
 * The non-zero extents of `fh`'s first `size` bytes, in offset order, at most
 * BLOCK long each. Only `ranges` are read (a DataMap from holes.ts); within
 * them, all-zero 4 KiB pages are skipped too.
 */
export async function* dataExtents(
  fh: FileHandle,
  size: number,
  ranges: readonly ByteRange[],
): AsyncGenerator<DataExtent> {
  const buf = blockBuffer();
  for (const seg of segments(ranges, size)) {
    if (seg.hole) continue;
    const want = seg.length;
    const got = await readFully(fh, buf, want, seg.offset);
    if (got !== want) throw new Error(`file shrank while being read (${seg.offset + got} of ${size} bytes)`);
    if (want === BLOCK ? buf.equals(ZERO_BLOCK) : isZero(buf, 0, want)) continue;
    let runStart = -1;
    for (let off = 0; off < want; off += PAGE) {
      const end = Math.min(off + PAGE, want);
      const zero = isZero(buf, off, end);
      if (!zero && runStart < 0) runStart = off;
      if (zero && runStart >= 0) {
        yield { offset: seg.offset + runStart, data: Buffer.from(buf.subarray(runStart, off)) };
        runStart = -1;
      }
    }
    if (runStart >= 0)
      yield { offset: seg.offset + runStart, data: Buffer.from(buf.subarray(runStart, want)) };
  }
}

function isZero(buf: Buffer, start: number, end: number): boolean {
  return buf.compare(ZERO_BLOCK, 0, end - start, start, end) === 0;
}
