import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { sha256File } from "../../src/engine/snapshot/hash.js";
import { dataMap, parseRanges } from "../../src/engine/snapshot/holes.js";
import { NEEDS_SEEK, NEEDS_NO_SEEK, seekDataWorks as probeSeekData } from "../support/seek-data.js";

const made: string[] = [];
/** A fresh directory under os.tmpdir(), removed after the file's tests. */
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
afterAll(() => Promise.all(made.map((d) => rm(d, { recursive: true, force: true }))));

const MiB = 1024 * 1024;

/** 64 MiB apparent, 2 MiB of data at 10 MiB and 1 page at 40 MiB + 4 KiB. */
async function sparseFile(): Promise<string> {
  const path = join(tempDir("hxe-holes-"), "ram");
  const fh = await open(path, "w");
  await fh.truncate(64 * MiB);
  await fh.write(randomBytes(2 * MiB), 0, 2 * MiB, 10 * MiB);
  await fh.write(randomBytes(4096), 0, 4096, 40 * MiB + 4096);
  await fh.close();
  return path;
}

const seekDataWorks = await probeSeekData();

const covered = (ranges: { start: number; end: number }[], at: number) =>
  ranges.some((r) => r.start <= at && at < r.end);

describe("hole map", () => {
  it("covers every data byte", async () => {
    const path = await sparseFile();
    const map = await dataMap(path, 64 * MiB);
    for (const at of [10 * MiB, 12 * MiB - 1, 40 * MiB + 4096, 40 * MiB + 8191]) {
      expect(covered(map.ranges, at)).toBe(true);
    }
  });

  it.skipIf(!seekDataWorks)(`maps little more than the data of a sparse file ${NEEDS_SEEK}`, async () => {
    const map = await dataMap(await sparseFile(), 64 * MiB);
    expect(map.method).toBe("seek");
    const total = map.ranges.reduce((n, r) => n + r.end - r.start, 0);
    expect(total).toBeLessThan(4 * MiB);
  });

  it.skipIf(seekDataWorks)(`maps a sparse file whole ${NEEDS_NO_SEEK}`, async () => {
    expect((await dataMap(await sparseFile(), 64 * MiB)).ranges).toEqual([{ start: 0, end: 64 * MiB }]);
  });

  it("maps small files whole without asking (a spawn costs more than the read)", async () => {
    const path = join(tempDir("hxe-holes-"), "small");
    await writeFile(path, "abc");
    expect(await dataMap(path, 3)).toEqual({ ranges: [{ start: 0, end: 3 }], method: "read-all" });
  });

  it("accepts only sorted, disjoint ranges and clips them to the size", () => {
    expect(parseRanges("0 4096\n8192 12288\n", 10_000)).toEqual([
      { start: 0, end: 4096 },
      { start: 8192, end: 10_000 },
    ]);
    expect(parseRanges("", 10)).toEqual([]);
    expect(parseRanges("8192 12288\n0 4096\n", 20_000)).toBeUndefined();
    expect(parseRanges("0 4096 junk\n", 20_000)).toBeUndefined();
    expect(parseRanges("30000 40000\n", 20_000)).toBeUndefined();
  });
});

describe("file hash", () => {
  it("equals the sha256 of the full content of a sparse file", async () => {
    const path = await sparseFile();
    const r = await sha256File(path);
    expect(r.sha256).toBe(
      createHash("sha256")
        .update(await readFile(path))
        .digest("hex"),
    );
    expect(r.bytes).toBe(64 * MiB);
  });

  it.skipIf(!seekDataWorks)(`does not read the holes of a sparse file ${NEEDS_SEEK}`, async () => {
    expect((await sha256File(await sparseFile())).readBytes).toBeLessThan(4 * MiB);
  });

  it("hashes small, empty and odd-sized files", async () => {
    const dir = tempDir("hxe-holes-");
    for (const content of [Buffer.alloc(0), Buffer.from("x"), randomBytes(MiB + 3)]) {
      await writeFile(join(dir, "f"), content);
      expect((await sha256File(join(dir, "f"))).sha256).toBe(
        createHash("sha256").update(content).digest("hex"),
      );
    }
  });
});
