import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ContentDigest, DIGEST_PATTERN, digestBuffer, digestFile } from "../../src/engine/snapshot/digest.js";
import { sha256File } from "../../src/engine/snapshot/hash.js";
import { NEEDS_SEEK, seekDataWorks as probeSeekData } from "../support/seek-data.js";

const made: string[] = [];
/** A fresh directory under os.tmpdir(), removed after the file's tests. */
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
afterAll(() => Promise.all(made.map((d) => rm(d, { recursive: true, force: true }))));

const MiB = 1024 * 1024;
const seekDataWorks = await probeSeekData();

/** The definition in digest.ts, written out plainly over a whole buffer. */
function referenceDigest(content: Buffer): string {
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  const outer = createHash("sha256").update("nzb1m-sha256\0").update(u64(content.length));
  for (let i = 0; i * MiB < content.length; i++) {
    const block = content.subarray(i * MiB, (i + 1) * MiB);
    if (block.equals(Buffer.alloc(block.length))) continue;
    outer.update(u64(i)).update(createHash("sha256").update(block).digest());
  }
  return `nzb1m-sha256:${outer.digest("hex")}`;
}

/** 40 MiB apparent: data at 10 MiB (2 MiB, unaligned), one page at 33 MiB, a written zero MiB at 20 MiB. */
const SIZE = 40 * MiB;
const EXTENTS: [number, Buffer][] = [
  [10 * MiB + 123, randomBytes(2 * MiB)],
  [33 * MiB + 4096, randomBytes(4096)],
  [20 * MiB, Buffer.alloc(MiB)],
];

/** The same content as a sparse file (extents written into holes) and as a buffer. */
async function sparseAndFull(extents = EXTENTS, size = SIZE): Promise<{ sparse: string; content: Buffer }> {
  const sparse = join(tempDir("hxe-digest-"), "sparse");
  const fh = await open(sparse, "w");
  await fh.truncate(size);
  for (const [at, data] of extents) await fh.write(data, 0, data.length, at);
  await fh.close();
  const content = Buffer.alloc(size);
  for (const [at, data] of extents) data.copy(content, at);
  return { sparse, content };
}

describe("snapshot file digest", () => {
  it("is the same for a sparse file and the same content written out in full", async () => {
    const { sparse, content } = await sparseAndFull();
    const full = join(tempDir("hxe-digest-"), "full");
    await writeFile(full, content); // zeros as data: nothing is a hole
    const a = await digestFile(sparse);
    const b = await digestFile(full);
    expect(a.digest).toBe(b.digest);
    expect(a.bytes).toBe(SIZE);
    expect(a.digest).toBe(referenceDigest(content));
    expect(digestBuffer(content)).toBe(a.digest);
  });

  it("changes when a byte in a data block changes", async () => {
    const { sparse, content } = await sparseAndFull();
    const before = (await digestFile(sparse)).digest;
    const fh = await open(sparse, "r+");
    const at = 10 * MiB + 123 + 5000;
    await fh.write(Buffer.from([content[at]! ^ 0x01]), 0, 1, at);
    await fh.close();
    expect((await digestFile(sparse)).digest).not.toBe(before);
  });

  it("changes when a non-zero byte is written into a hole", async () => {
    const { sparse } = await sparseAndFull();
    const before = (await digestFile(sparse)).digest;
    const fh = await open(sparse, "r+");
    await fh.write(Buffer.from([1]), 0, 1, 30 * MiB + 77);
    await fh.close();
    expect((await digestFile(sparse)).digest).not.toBe(before);
  });

  it("changes with the size, even when only zeros are added", () => {
    expect(digestBuffer(Buffer.alloc(MiB))).not.toBe(digestBuffer(Buffer.alloc(2 * MiB)));
    expect(digestBuffer(Buffer.alloc(0))).not.toBe(digestBuffer(Buffer.alloc(1)));
    const data = randomBytes(1000);
    expect(digestBuffer(Buffer.concat([data, Buffer.alloc(5)]))).not.toBe(digestBuffer(data));
  });

  it("tells apart the same data at another offset", () => {
    const data = randomBytes(4096);
    const a = Buffer.alloc(4 * MiB);
    const b = Buffer.alloc(4 * MiB);
    data.copy(a, MiB);
    data.copy(b, 2 * MiB);
    expect(digestBuffer(a)).not.toBe(digestBuffer(b));
  });

  it("gives the same digest however the data is cut when streamed", () => {
    const content = Buffer.alloc(5 * MiB + 17);
    randomBytes(3 * MiB).copy(content, MiB / 2); // straddles block boundaries
    content[5 * MiB + 16] = 9; // the last, short block
    const expected = referenceDigest(content);
    for (const piece of [1000, 64 * 1024, MiB, 3 * MiB]) {
      const d = new ContentDigest(content.length);
      for (let at = 0; at < content.length; at += piece) d.update(at, content.subarray(at, at + piece));
      expect(d.digest()).toBe(expected);
    }
    // Only the non-zero runs fed, the rest left unsaid: the same.
    const d = new ContentDigest(content.length);
    d.update(MiB / 2, content.subarray(MiB / 2, MiB / 2 + 3 * MiB));
    d.update(5 * MiB + 16, content.subarray(5 * MiB + 16));
    expect(d.digest()).toBe(expected);
  });

  it("refuses data fed out of order or past the end", () => {
    const d = new ContentDigest(2 * MiB);
    d.update(MiB, Buffer.alloc(10, 1));
    expect(() => d.update(MiB + 5, Buffer.alloc(1))).toThrow(RangeError);
    expect(() => d.update(2 * MiB - 1, Buffer.alloc(2))).toThrow(RangeError);
  });

  it("is named, and is not the file's sha256", async () => {
    const path = join(tempDir("hxe-digest-"), "small");
    await writeFile(path, "device state");
    const { digest } = await digestFile(path);
    expect(digest).toMatch(DIGEST_PATTERN);
    expect(digest).not.toContain((await sha256File(path)).sha256);
  });

  it("keeps its definition (a change here invalidates every stored snapshot)", () => {
    const content = Buffer.alloc(3 * MiB + 5);
    content.write("hello", MiB + 10);
    content.write("end", 3 * MiB + 2);
    expect(digestBuffer(content)).toBe(referenceDigest(content));
    expect(digestBuffer(content)).toBe(
      "nzb1m-sha256:6dea16f4db961abdb0b655546976a57253a78e79cdae6681376d814327d926a0",
    );
  });

  it.skipIf(!seekDataWorks)(`reads the data of a sparse file, not its holes ${NEEDS_SEEK}`, async () => {
    const { sparse } = await sparseAndFull();
    expect((await digestFile(sparse)).readBytes).toBeLessThan(6 * MiB);
  });
});
