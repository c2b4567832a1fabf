/**
 * Streamed sha256 of a file's whole content (base images, whose digest must
 * equal a published .sha256): files here can be many GiB, so never read one
 * whole. Snapshot files use digest.ts, whose cost follows the data, not the
 * apparent size.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { BLOCK, blockBuffer, readFully, segments } from "./block-io.js";
import { dataMap } from "./holes.js";

export interface FileHash {
  sha256: string;
  /** Bytes hashed: the apparent size, holes included (hashed as the zeros they read as). */
  bytes: number;
  /** Bytes actually read from the file (holes are not read, see holes.ts). */
  readBytes: number;
}

const ZERO = Buffer.alloc(BLOCK);

/**
 * sha256 of a file's whole content. Holes are fed to the hash from a zero
 * buffer instead of being read; data is read in 1 MiB blocks, the next block
 * being read (thread pool) while this one is hashed (main thread).
 */
export async function sha256File(path: string): Promise<FileHash> {
  const hash = createHash("sha256");
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const segs = [...segments((await dataMap(path, size)).ranges, size)];
    const bufs = [blockBuffer(), blockBuffer()];
    let which = 0;
    let readBytes = 0;
    const dataSegs = segs.filter((seg) => !seg.hole);
    let next = 0;
    /** Start reading the next data segment (in order) into the buffer not being hashed. */
    const readNext = (): Promise<Buffer> | undefined => {
      const seg = dataSegs[next++];
      if (!seg) return undefined;
      const buf = bufs[which]!;
      which ^= 1;
      return readFully(fh, buf, seg.length, seg.offset).then((got) => {
        if (got !== seg.length) throw new Error(`${path} shrank while being hashed`);
        readBytes += got;
        return buf;
      });
    };
    let pending = readNext();
    for (const seg of segs) {
      if (seg.hole) {
        hash.update(ZERO.subarray(0, seg.length));
        continue;
      }
      const buf = await pending!;
      pending = readNext();
      hash.update(buf.subarray(0, seg.length));
    }
    return { sha256: hash.digest("hex"), bytes: size, readBytes };
  } finally {
    await fh.close();
  }
}
