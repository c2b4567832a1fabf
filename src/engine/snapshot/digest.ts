/**
 * The content digest of a snapshot file, "nzb1m-sha256" (non-zero 1 MiB
 * blocks, sha256). A plain sha256 of a RAM file costs its apparent size: a
 * 4 GiB file with 300 MiB of data hashes 3.7 GiB of zeros. This one costs the
 * data, and like a plain sha256 it depends only on the bytes a read returns,
 * never on how the file system stores them (a hole and written zeros digest
 * the same).
 *
 * Definition. The file (S bytes) is cut into blocks of 2^20 bytes, block i
 * being bytes [i·2^20, min((i+1)·2^20, S)). A block is zero when all its
 * bytes are 0. The digest is "nzb1m-sha256:" followed by the lower-case hex of
 *
 *   sha256( "nzb1m-sha256" 0x00  u64le(S)  ‖  for each non-zero block i, ascending:  u64le(i)  sha256(block i) )
 *
 * Every record has a fixed length and the size fixes each block's length, so
 * different contents never give the same input. Hashing each block on its own
 * lets blocks be hashed on several cores later without changing the digest.
 * Named with its prefix so it is never mistaken for a sha256 of the content
 * (hash.ts still computes that, e.g. for base images).
 */
import { createHash } from "node:crypto";
import type { Hash } from "node:crypto";
import { open } from "node:fs/promises";
import { BLOCK, blockBuffer, readFully, segments } from "./block-io.js";
import { dataMap } from "./holes.js";

export const DIGEST_ALGORITHM = "nzb1m-sha256";
export const DIGEST_PATTERN = /^nzb1m-sha256:[0-9a-f]{64}$/;

const DIGEST_BLOCK = BLOCK;
const ZERO = Buffer.alloc(DIGEST_BLOCK);

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/**
 * The digest of a file of `size` bytes, fed its data as it streams by:
 * `update` pieces in increasing, non-overlapping offset order; whatever is
 * never fed reads as zeros. Zero blocks cost a comparison, not a hash.
 */
export class ContentDigest {
  private readonly outer = createHash("sha256");
  /** The block being hashed: its index, hash and how many of its bytes were fed (zeros included). */
  private current: { index: number; hash: Hash; fed: number } | undefined;
  private next = 0;

  constructor(readonly size: number) {
    this.outer.update(Buffer.from(`${DIGEST_ALGORITHM}\0`, "ascii"));
    this.outer.update(u64(size));
  }

  update(offset: number, data: Buffer): void {
    if (offset < this.next || offset + data.length > this.size) {
      throw new RangeError(
        `digest fed ${data.length} bytes at ${offset} (next allowed ${this.next}, size ${this.size})`,
      );
    }
    this.next = offset + data.length;
    let at = offset;
    let rest = data;
    while (rest.length > 0) {
      const index = Math.floor(at / DIGEST_BLOCK);
      const within = at - index * DIGEST_BLOCK;
      const part = rest.subarray(0, Math.min(rest.length, DIGEST_BLOCK - within));
      at += part.length;
      rest = rest.subarray(part.length);
      if (this.current?.index !== index) {
        // Zeros before a block's first non-zero byte are padded in when (if) it starts.
        if (part.equals(ZERO.subarray(0, part.length))) continue;
        this.closeBlock();
        this.current = { index, hash: createHash("sha256"), fed: 0 };
      }
      const cur = this.current;
      if (within > cur.fed) cur.hash.update(ZERO.subarray(0, within - cur.fed));
      cur.hash.update(part);
      cur.fed = within + part.length;
    }
  }

  /** "nzb1m-sha256:<hex>". Ends the digest: no update after it. */
  digest(): string {
    this.closeBlock();
    return `${DIGEST_ALGORITHM}:${this.outer.digest("hex")}`;
  }

  private closeBlock(): void {
    const cur = this.current;
    if (!cur) return;
    const length = Math.min(DIGEST_BLOCK, this.size - cur.index * DIGEST_BLOCK);
    if (length > cur.fed) cur.hash.update(ZERO.subarray(0, length - cur.fed));
    this.outer.update(u64(cur.index));
    this.outer.update(cur.hash.digest());
    this.current = undefined;
  }
}

/** The digest of a buffer holding a whole file. */
export function digestBuffer(content: Buffer): string {
  const d = new ContentDigest(content.length);
  d.update(0, content);
  return d.digest();
}

export interface FileDigest {
  digest: string;
  /** The apparent size. */
  bytes: number;
  /** Bytes read: the data ranges the file system reports (holes.ts), not the holes. */
  readBytes: number;
}

/**
 * The digest of the file at `path`, reading only its data ranges, the next
 * range being read (thread pool) while this one is hashed (main thread).
 */
export async function digestFile(path: string): Promise<FileDigest> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const d = new ContentDigest(size);
    const data = [...segments((await dataMap(path, size)).ranges, size)].filter((s) => !s.hole);
    const bufs = [blockBuffer(), blockBuffer()];
    let readBytes = 0;
    const read = (i: number): Promise<Buffer> | undefined => {
      const seg = data[i];
      if (!seg) return undefined;
      const buf = bufs[i % 2]!;
      return readFully(fh, buf, seg.length, seg.offset).then((got) => {
        if (got !== seg.length) throw new Error(`${path} shrank while being hashed`);
        readBytes += got;
        return buf.subarray(0, got);
      });
    };
    let pending = read(0);
    for (let i = 0; pending; i++) {
      const buf = await pending;
      pending = read(i + 1);
      d.update(data[i]!.offset, buf);
    }
    return { digest: d.digest(), bytes: size, readBytes };
  } finally {
    await fh.close();
  }
}

/**
 * Digests of several files, a few at a time: hashing is one core's work, but
 * one file's reads and hole-map spawn overlap another's hashing.
 */
export async function digestFiles(paths: readonly string[], concurrency = 2): Promise<FileDigest[]> {
  const out: FileDigest[] = new Array<FileDigest>(paths.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < paths.length; i = next++) out[i] = await digestFile(paths[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, worker));
  return out;
}
