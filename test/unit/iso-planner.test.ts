import { describe, expect, it } from "vitest";
import { EngineError } from "../../src/engine/errors.js";
import { planIso } from "../../src/engine/iso/index.js";
import type { IsoPlan, PlannedDir, TreePlan } from "../../src/engine/iso/index.js";
import { fromUcs2 } from "./iso-reader.js";

const names = (dir: PlannedDir, tree: "primary" | "joliet") =>
  dir.records
    .slice(2)
    .map((r) => (tree === "primary" ? r.identifier.toString("ascii") : fromUcs2(r.identifier)));

const dirAt = (tree: TreePlan, path: string) => tree.dirs.find((d) => d.path === path)!;

function expectError(fn: () => unknown, code: string, message: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe(code);
    expect((err as EngineError).message).toMatch(message);
    expect((err as EngineError).hint).toBeTruthy();
    return;
  }
  throw new Error("expected an error");
}

describe("planIso lays out sectors", () => {
  it("puts descriptors at 16-18, then both trees' path tables, directories and file data", () => {
    const plan = planIso({
      volumeId: "STACKCFG",
      files: [
        { path: "runtime.env", data: "A=1\n" },
        { path: "base.env", data: "x".repeat(3000) },
      ],
    });
    expect(plan.primary).toMatchObject({ lPathTableSector: 19, mPathTableSector: 20, pathTableBytes: 10 });
    expect(plan.joliet).toMatchObject({ lPathTableSector: 21, mPathTableSector: 22, pathTableBytes: 10 });
    expect(plan.primary.dirs.map((d) => [d.sector, d.size])).toEqual([[23, 2048]]);
    expect(plan.joliet.dirs.map((d) => [d.sector, d.size])).toEqual([[24, 2048]]);
    // Data follows the primary tree's order: base.env (2 sectors), then runtime.env.
    expect(plan.files.map((f) => [f.path, f.sector, f.size])).toEqual([
      ["base.env", 25, 3000],
      ["runtime.env", 27, 4],
    ]);
    expect(plan.totalSectors).toBe(28);
  });

  it("plans an image with no files: just the two root directories", () => {
    const plan = planIso({ volumeId: "EMPTY", files: [] });
    expect(plan.files).toEqual([]);
    expect(plan.primary.dirs[0]!.records.map((r) => r.identifier)).toEqual([
      Buffer.from([0]),
      Buffer.from([1]),
    ]);
    expect(plan.totalSectors).toBe(25);
  });

  it("gives empty files sector 0 and no data sectors, and a 2048-byte file exactly one", () => {
    const plan = planIso({
      volumeId: "V",
      files: [
        { path: "a", data: Buffer.alloc(2048) },
        { path: "b", data: "" },
        { path: "c", data: Buffer.alloc(2049) },
      ],
    });
    expect(plan.files.map((f) => [f.path, f.sector])).toEqual([
      ["a", 25],
      ["b", 0],
      ["c", 26],
    ]);
    expect(plan.totalSectors).toBe(28);
  });

  it("points both trees at the same file extents", () => {
    const plan = planIso({ volumeId: "V", files: [{ path: "Data File.txt", data: "hi" }] });
    const primaryTarget = plan.primary.dirs[0]!.records[2]!.target;
    const jolietTarget = plan.joliet.dirs[0]!.records[2]!.target;
    expect(primaryTarget).toBe(jolietTarget);
    expect(primaryTarget).toBe(plan.files[0]);
  });

  it("uses sizes given for sourcePath files and rejects a missing one", () => {
    const spec = { volumeId: "V", files: [{ path: "big.bin", sourcePath: "/somewhere/big.bin" }] };
    expect(planIso(spec, new Map([["/somewhere/big.bin", 5000]])).files[0]).toMatchObject({
      size: 5000,
      sector: 25,
    });
    expectError(() => planIso(spec), "ISO_SOURCE_SIZE_MISSING", /\/somewhere\/big\.bin/);
  });
});

describe("planIso orders directories and records", () => {
  const plan: IsoPlan = planIso({
    volumeId: "V",
    files: [
      "zeta/x.txt",
      "alpha/beta/deep.txt",
      "alpha/b.txt",
      "Alpha2.txt",
      "readme",
      "a.b.c",
      "BIG.TXT",
      "ab",
    ].map((path) => ({ path, data: path })),
  });

  it("sorts primary records by ECMA-119 name then extension, after . and ..", () => {
    const root = plan.primary.dirs[0]!;
    expect(root.records[0]!.identifier).toEqual(Buffer.from([0]));
    expect(root.records[1]!.identifier).toEqual(Buffer.from([1]));
    // "_" sorts after letters, so A_B~1 comes after ALPHA2; the ALPHA directory precedes ALPHA2 as a prefix.
    expect(names(root, "primary")).toEqual([
      "AB.;1",
      "ALPHA",
      "ALPHA2.TXT;1",
      "A_B~1.C;1",
      "BIG.TXT;1",
      "README.;1",
      "ZETA",
    ]);
  });

  it("sorts Joliet records by UCS-2 code units (uppercase before lowercase)", () => {
    expect(names(plan.joliet.dirs[0]!, "joliet")).toEqual([
      "Alpha2.txt",
      "BIG.TXT",
      "a.b.c",
      "ab",
      "alpha",
      "readme",
      "zeta",
    ]);
  });

  it("numbers directories in path table order: level, then parent, then name", () => {
    for (const tree of [plan.primary, plan.joliet]) {
      expect(tree.dirs.map((d) => [d.path, d.number, d.parent])).toEqual([
        ["", 1, 1],
        ["alpha", 2, 1],
        ["zeta", 3, 1],
        ["alpha/beta", 4, 2],
      ]);
    }
    // Directories get consecutive sectors, the primary tree's first.
    const sectors = [...plan.primary.dirs, ...plan.joliet.dirs].map((d) => d.sector);
    expect(sectors).toEqual(sectors.map((_, i) => sectors[0]! + i));
  });

  it("links . and .. to the directory and its parent", () => {
    const beta = dirAt(plan.primary, "alpha/beta");
    expect(beta.records[0]!.target).toBe(beta);
    expect(beta.records[1]!.target).toBe(dirAt(plan.primary, "alpha"));
    const root = plan.primary.dirs[0]!;
    expect(root.records[1]!.target).toBe(root);
  });
});

describe("planIso packs large directories", () => {
  const files = Array.from({ length: 120 }, (_, i) => ({
    path: `a-rather-long-file-name-to-fill-directory-sectors-${String(i).padStart(3, "0")}.txt`,
    data: `file ${i}\n`,
  }));
  const plan = planIso({ volumeId: "V", files });

  it("spreads records over several sectors without letting one cross a boundary", () => {
    for (const root of [plan.primary.dirs[0]!, plan.joliet.dirs[0]!]) {
      const ends = root.records.map(
        (r) => r.offset + 33 + r.identifier.length + (r.identifier.length % 2 ? 0 : 1),
      );
      root.records.forEach((r, i) =>
        expect(Math.floor(r.offset / 2048)).toBe(Math.floor((ends[i]! - 1) / 2048)),
      );
      expect(root.size % 2048).toBe(0);
      expect(root.size).toBe(Math.ceil(ends.at(-1)! / 2048) * 2048);
    }
    expect(plan.joliet.dirs[0]!.size).toBeGreaterThanOrEqual(4 * 2048);
    // Offsets increase strictly: no overlap.
    const offsets = plan.joliet.dirs[0]!.records.map((r) => r.offset);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
  });

  it("places the next extent after every sector of the big directory", () => {
    const [pRoot, jRoot] = [plan.primary.dirs[0]!, plan.joliet.dirs[0]!];
    expect(jRoot.sector).toBe(pRoot.sector + pRoot.size / 2048);
    expect(plan.files[0]!.sector).toBe(jRoot.sector + jRoot.size / 2048);
  });
});

describe("planIso rejects bad specs", () => {
  it("rejects duplicate paths and a file used as a directory", () => {
    expectError(
      () =>
        planIso({
          volumeId: "V",
          files: [
            { path: "a.txt", data: "" },
            { path: "a.txt", data: "" },
          ],
        }),
      "ISO_DUPLICATE_PATH",
      /"a\.txt"/,
    );
    expectError(
      () =>
        planIso({
          volumeId: "V",
          files: [
            { path: "a", data: "" },
            { path: "a/b", data: "" },
          ],
        }),
      "ISO_DUPLICATE_PATH",
      /file "a"/,
    );
    expectError(
      () =>
        planIso({
          volumeId: "V",
          files: [
            { path: "a/b", data: "" },
            { path: "a", data: "" },
          ],
        }),
      "ISO_DUPLICATE_PATH",
      /directory "a"/,
    );
  });

  it("rejects empty, absolute, dot and over-deep paths", () => {
    for (const path of ["", "/abs", "a//b", "./a", "a/../b", "a/"]) {
      expectError(
        () => planIso({ volumeId: "V", files: [{ path, data: "" }] }),
        "ISO_PATH_INVALID",
        /invalid ISO path/,
      );
    }
    expect(() => planIso({ volumeId: "V", files: [{ path: "1/2/3/4/5/6/7/f", data: "" }] })).not.toThrow();
    expectError(
      () => planIso({ volumeId: "V", files: [{ path: "1/2/3/4/5/6/7/8/f", data: "" }] }),
      "ISO_PATH_INVALID",
      /8 directories deep; ISO 9660 allows 7/,
    );
  });
});
