import type * as FsPromises from "node:fs/promises";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { EngineError } from "../../src/engine/errors.js";
import { writeIso } from "../../src/engine/iso/index.js";

// A source whose size changes between planning and copying is the one failure
// that strikes half way through the image; stat is made to lie about one file.
const LYING = "lying-source.bin";
vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof FsPromises>();
  return {
    ...real,
    stat: async (path: string) => {
      const info = await real.stat(path);
      if (path.endsWith(LYING)) Object.defineProperty(info, "size", { value: info.size + 5000 });
      return info;
    },
  };
});

const dir = mkdtempSync(join(tmpdir(), "iso-atomic-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const spec = { volumeId: "ATOMIC", date: new Date(0), files: [{ path: "a.txt", data: "a" }] };

describe("writeIso replaces the destination atomically", () => {
  it("leaves only the finished image behind, no .tmp", async () => {
    const out = join(dir, "ok.iso");
    const { bytes } = await writeIso(out, spec);
    expect(readdirSync(dir)).toEqual(["ok.iso"]);
    expect(readFileSync(out)).toHaveLength(bytes);
  });

  it("leaves no destination and no .tmp when a source changes mid-write", async () => {
    const source = join(dir, LYING);
    writeFileSync(source, Buffer.alloc(3000, 1));
    const out = join(dir, "changed.iso");
    const err = await writeIso(out, {
      ...spec,
      files: [...spec.files, { path: "big.bin", sourcePath: source }],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err).toMatchObject({ code: "ISO_SOURCE_CHANGED", message: expect.stringContaining(source) });
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.tmp`)).toBe(false);
    rmSync(source);
  });

  it("keeps an existing destination intact when the new image fails", async () => {
    const out = join(dir, "keep.iso");
    await writeIso(out, spec);
    const before = readFileSync(out);
    await expect(
      writeIso(out, { ...spec, files: [{ path: "x", sourcePath: join(dir, "missing") }] }),
    ).rejects.toMatchObject({
      code: "ISO_SOURCE_INVALID",
    });
    await expect(writeIso(out, { ...spec, files: [{ path: "bad:name", data: "" }] })).rejects.toMatchObject({
      code: "ISO_NAME_INVALID",
    });
    expect(readFileSync(out).equals(before)).toBe(true);
    expect(existsSync(`${out}.tmp`)).toBe(false);
  });

  it("reports an unwritable destination as ISO_WRITE_FAILED", async () => {
    const out = join(dir, "no-such-dir", "x.iso");
    const err = await writeIso(out, spec).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ISO_WRITE_FAILED", message: expect.stringContaining(out) });
    expect((err as EngineError).hint).toBeTruthy();
  });

  it("rejects a directory given as a source file", async () => {
    await expect(
      writeIso(join(dir, "d.iso"), { ...spec, files: [{ path: "d", sourcePath: dir }] }),
    ).rejects.toMatchObject({
      code: "ISO_SOURCE_INVALID",
    });
    expect(existsSync(join(dir, "d.iso"))).toBe(false);
  });
});
