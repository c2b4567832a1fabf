/** Streamed content hashing: files here can be many GiB, so never read one whole. */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { BLOCK, blockBuffer, readFully } from "./block-io.js";

export interface FileHash {
  sha256: string;
  /** Bytes hashed: the apparent size, holes included (they read as zeros). */
  bytes: number;
}

/**
 * sha256 of a file's whole content. Holes are hashed as the zeros they read
 * as; reading them costs no disk IO, but the hash still has to see every byte.
 * Two buffers alternate so the next block is read (thread pool) while this one
 * is hashed (main thread).
 */
export async function sha256File(path: string): Promise<FileHash> {
  const hash = createHash("sha256");
  const fh = await open(path, "r");
  try {
    const bufs = [blockBuffer(), blockBuffer()] as const;
    let bytes = 0;
    let i = 0;
    let pending = readFully(fh, bufs[0], BLOCK, 0);
    for (;;) {
      const got = await pending;
      if (got === 0) break;
      const current = bufs[i]!;
      i ^= 1;
      pending = got === BLOCK ? readFully(fh, bufs[i]!, BLOCK, bytes + got) : Promise.resolve(0);
      hash.update(current.subarray(0, got));
      bytes += got;
    }
    return { sha256: hash.digest("hex"), bytes };
  } finally {
    await fh.close();
  }
}
