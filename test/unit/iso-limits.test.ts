/**
 * The ISO writer exactly at its limits and one step past them (the other
 * iso-* files cover names, layout and round trips in general): the largest
 * extent, the deepest directory, the longest Joliet path, 64 two-byte
 * characters, a thousand colliding 8.3 names. What is accepted reads back
 * through xorriso; what is not fails with a code naming the file.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { planIso, writeIso } from "../../src/engine/iso/index.js";
import type { IsoFile, IsoSpec } from "../../src/engine/iso/index.js";
import { checkStructure, extractIso, listIso } from "./iso-reader.js";
import { readFileSync } from "node:fs";
import { reliabilityFigures } from "../support/reliability.js";

const rel = reliabilityFigures("iso-limits");
const dir = mkdtempSync(join(tmpdir(), "iso-limits-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function readsBack(spec: IsoSpec): Promise<Map<string, Buffer | null>> {
  const path = join(dir, `limit-${++n}.iso`);
  await writeIso(path, spec);
  checkStructure(readFileSync(path));
  const tree = extractIso(path, "joliet");
  for (const f of spec.files) {
    expect(tree.get(f.path)?.toString("utf8")).toBe("data" in f ? String(f.data) : undefined);
  }
  rel.badInputs("ISO writer at its limits", spec.files.length, spec.files.length);
  return tree;
}

function rejected(spec: IsoSpec, code: string, sizes?: Map<string, number>): Error {
  try {
    planIso(spec, sizes);
  } catch (err) {
    expect(err).toMatchObject({ code });
    rel.badInputs("ISO writer past its limits", 1, 1);
    return err as Error;
  }
  rel.badInputs("ISO writer past its limits", 1, 0);
  throw new Error(`${code} expected`);
}

describe("the ISO writer at and past its limits", () => {
  it("plans a file of 4 GiB - 1 bytes and refuses one of 4 GiB, naming it", () => {
    const file = (size: number): [IsoSpec, Map<string, number>] => [
      { volumeId: "BIG", files: [{ path: "big.img", sourcePath: `/virtual/${size}` }] },
      new Map([[`/virtual/${size}`, size]]),
    ];
    const [ok, okSizes] = file(0xffff_ffff);
    const plan = planIso(ok, okSizes);
    expect(plan.files[0]!.size).toBe(0xffff_ffff);
    expect(plan.totalSectors).toBeGreaterThan(0xffff_ffff / 2048);
    const [big, bigSizes] = file(0x1_0000_0000);
    const err = rejected(big, "ISO_FILE_TOO_LARGE", bigSizes);
    expect(err.message).toContain('"big.img" is 4294967296 bytes');
  });

  it("reads back the deepest allowed path with a 64-character name at the bottom", async () => {
    const path = `1/2/3/4/5/6/7/${"z".repeat(60)}.txt`;
    const tree = await readsBack({ volumeId: "DEEP", files: [{ path, data: "deep" }] });
    expect(tree.get("1/2/3/4/5/6/7")).toBeNull();
    rejected({ volumeId: "DEEP", files: [{ path: `1/2/3/4/5/6/7/8/x`, data: "" }] }, "ISO_PATH_INVALID");
  });

  it("reads back a Joliet path of exactly 120 characters and refuses 121", async () => {
    const path = `${"a".repeat(55)}/${"b".repeat(64)}`;
    expect(path).toHaveLength(120);
    await readsBack({ volumeId: "LONGPATH", files: [{ path, data: "edge" }] });
    const err = rejected(
      { volumeId: "LONGPATH", files: [{ path: `${"a".repeat(56)}/${"b".repeat(64)}`, data: "" }] },
      "ISO_PATH_INVALID",
    );
    expect(err.message).toMatch(/Joliet allows 120/);
  });

  it("reads back 64 non-ASCII characters and refuses 65", async () => {
    const name = "é".repeat(32) + "日本".repeat(16);
    expect(name).toHaveLength(64);
    await readsBack({ volumeId: "UNICODE", files: [{ path: name, data: "unicode" }] });
    rejected({ volumeId: "UNICODE", files: [{ path: `${name}x`, data: "" }] }, "ISO_NAME_TOO_LONG");
  });

  it("gives a thousand names that share their first characters unique 8.3 names that read back", async () => {
    const files: IsoFile[] = Array.from({ length: 1000 }, (_, i) => ({
      path: `configuration-file-${String(i).padStart(4, "0")}.env`,
      data: `n=${i}`,
    }));
    const path = join(dir, "thousand.iso");
    await writeIso(path, { volumeId: "MANY", files });
    const primary = [...listIso(path, "ecma119").keys()];
    expect(new Set(primary).size).toBe(1000);
    for (const name of primary) expect(name).toMatch(/^[A-Z0-9_~]{1,8}\.[A-Z0-9_]{0,3};1$/);
    const joliet = extractIso(path, "joliet");
    expect(joliet.get("configuration-file-0999.env")?.toString()).toBe("n=999");
    rel.badInputs("ISO writer at its limits", 1000, 1000);
  });
});
