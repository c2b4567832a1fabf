import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { planIso, runtimeConfigIsoSpec, writeIso } from "../../src/engine/iso/index.js";
import type { IsoFile, IsoSpec } from "../../src/engine/iso/index.js";
import { checkStructure, extractIso, fromUcs2, listIso, ucs2, xorrisoVolumeId } from "./iso-reader.js";

// Every image here is read back by xorriso (libisofs) through both trees and
// by the raw structure check in iso-reader.ts; neither shares code with the writer.

const dir = mkdtempSync(join(tmpdir(), "iso-roundtrip-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;

const DATE = new Date(Date.UTC(2024, 4, 6, 7, 8, 9, 120));

async function write(spec: IsoSpec): Promise<string> {
  const path = join(dir, `image-${++counter}.iso`);
  const { bytes } = await writeIso(path, { date: DATE, ...spec });
  expect(statSync(path).size).toBe(bytes);
  return path;
}

const bytesOf = (file: IsoFile): Buffer =>
  "data" in file ? Buffer.from(file.data) : readFileSync(file.sourcePath);

/** What the Joliet tree should hold: every file and every implied directory (null), by its real path. */
function expectedJoliet(files: readonly IsoFile[]): Map<string, Buffer | null> {
  const out = new Map<string, Buffer | null>();
  for (const file of files) {
    const parts = file.path.split("/");
    for (let i = 1; i < parts.length; i++) out.set(parts.slice(0, i).join("/"), null);
    out.set(file.path, bytesOf(file));
  }
  return out;
}

/** The same for the primary tree, with the identifiers the planner chose (names are tested in iso-names). */
function expectedPrimary(spec: IsoSpec): Map<string, Buffer | null> {
  const plan = planIso(
    spec,
    new Map(
      spec.files.flatMap((f) => ("sourcePath" in f ? [[f.sourcePath, statSync(f.sourcePath).size]] : [])),
    ),
  );
  const out = new Map<string, Buffer | null>();
  const byPath = new Map(spec.files.map((f) => [f.path, f]));
  const prefix = new Map<string, string>([["", ""]]);
  for (const d of plan.primary.dirs) {
    for (const r of d.records.slice(2)) {
      const path = `${prefix.get(d.path)}${r.identifier.toString("ascii")}`;
      if (r.target.kind === "dir") {
        prefix.set(r.target.path, `${path}/`);
        out.set(path, null);
      } else {
        out.set(path, bytesOf(byPath.get(r.target.path)!));
      }
    }
  }
  return out;
}

/** Contents as size + SHA-256, so a mismatch reports readably and large files compare fast. */
const digests = (tree: Map<string, Buffer | null>) =>
  new Map(
    [...tree].map(([path, data]) => [
      path,
      data && `${data.length} bytes, sha256 ${createHash("sha256").update(data).digest("hex")}`,
    ]),
  );

async function roundTrip(spec: IsoSpec): Promise<string> {
  const iso = await write(spec);
  checkStructure(readFileSync(iso));
  expect(digests(extractIso(iso, "joliet"))).toEqual(digests(expectedJoliet(spec.files)));
  expect(digests(extractIso(iso, "ecma119"))).toEqual(digests(expectedPrimary(spec)));
  return iso;
}

describe("writeIso output read back by xorriso", () => {
  it("holds the STACKCFG disk: runtime.env and base.env, label STACKCFG in both descriptors", async () => {
    const spec = runtimeConfigIsoSpec(
      { STACK_EMULATOR_PORT_PREFIX: "82", STACK_MODE: "test" },
      "BASE=1\n# comment\n",
    );
    const iso = await roundTrip(spec);
    expect(listIso(iso, "joliet")).toEqual(
      new Map([
        ["base.env", { type: "-", size: 17 }],
        ["runtime.env", { type: "-", size: 46 }],
      ]),
    );
    expect([...listIso(iso, "ecma119").keys()]).toEqual(["BASE.ENV;1", "RUNTIME.ENV;1"]);
    expect(xorrisoVolumeId(iso)).toBe("STACKCFG");
    const { pvd, svd } = checkStructure(readFileSync(iso));
    expect(pvd.volumeId.toString("ascii")).toBe("STACKCFG".padEnd(32, " "));
    expect(fromUcs2(svd.volumeId)).toBe("STACKCFG".padEnd(16, " "));
    expect(extractIso(iso, "joliet").get("runtime.env")!.toString()).toBe(
      "STACK_EMULATOR_PORT_PREFIX=82\nSTACK_MODE=test\n",
    );
  });

  it("keeps nested directories, with path tables for both trees", async () => {
    const files = ["a/b/c.txt", "a/d.txt", "x/y/z/w.bin", "top.txt", "a/b/e/f/g.txt"].map((path) => ({
      path,
      data: `contents of ${path}\n`,
    }));
    const iso = await roundTrip({ volumeId: "NESTED", files });
    expect(listIso(iso, "ecma119").get("X/Y/Z/W.BIN;1")).toEqual({ type: "-", size: 24 });
    expect(listIso(iso, "joliet").get("a/b/e")).toEqual({ type: "d", size: 0 });
  });

  it("spreads a directory of 120 long names over several sectors", async () => {
    const files = Array.from({ length: 120 }, (_, i) => ({
      path: `logs/service-${String(i).padStart(3, "0")}-with-a-fairly-long-descriptive-name.log`,
      data: `line ${i}\n`.repeat(i),
    }));
    const iso = await roundTrip({ volumeId: "MANY", files });
    const { joliet, primary } = checkStructure(readFileSync(iso));
    expect(joliet.entries.get("logs")!.size).toBeGreaterThanOrEqual(4 * 2048);
    expect(primary.entries.get("LOGS")!.size).toBeGreaterThanOrEqual(2 * 2048);
    expect([...listIso(iso, "joliet").keys()].filter((p) => p.startsWith("logs/"))).toHaveLength(120);
  });

  it("stores names at the limits: 64 Joliet characters, lowercase and odd characters, 8.3 collisions", async () => {
    const files = [
      "n".repeat(60) + ".txt",
      "Hello World (1).txt",
      "ümlaut-ß & co.txt",
      "MiXeD.Case",
      "a.txt",
      "A.TXT",
      "verylongname.txt",
      "verylongname2.txt",
      ".hidden",
    ].map((path, i) => ({ path, data: `file ${i}` }));
    const iso = await roundTrip({ volumeId: "NAMES", files });
    expect([...listIso(iso, "ecma119").keys()].sort()).toEqual(
      [
        "A.TXT;1",
        "A~1.TXT;1",
        "HELLO_~1.TXT;1",
        "MIXED~1.CAS;1",
        "NNNNNN~1.TXT;1",
        "VERYLO~1.TXT;1",
        "VERYLO~2.TXT;1",
        "_HIDDE~1.;1",
        "_MLAUT~1.TXT;1",
      ].sort(),
    );
  });

  it("copies an empty file, exactly one sector, one byte more, and a large file from disk", async () => {
    const source = join(dir, "source.bin");
    writeFileSync(source, randomBytes(1024 * 1024 + 3));
    const files: IsoFile[] = [
      { path: "empty.txt", data: "" },
      { path: "one-sector.bin", data: randomBytes(2048) },
      { path: "sector-plus-one.bin", data: randomBytes(2049) },
      { path: "disk/source.bin", sourcePath: source },
      { path: "disk/source-again.bin", sourcePath: source },
    ];
    const iso = await roundTrip({ volumeId: "SIZES", files });
    const listed = listIso(iso, "joliet");
    expect(listed.get("empty.txt")).toEqual({ type: "-", size: 0 });
    expect(listed.get("disk/source.bin")).toEqual({ type: "-", size: 1024 * 1024 + 3 });
  });

  it("writes a valid image with no files", async () => {
    const iso = await roundTrip({ volumeId: "NOTHING", files: [] });
    expect(listIso(iso, "joliet").size).toBe(0);
    expect(statSync(iso).size).toBe(25 * 2048);
    expect(xorrisoVolumeId(iso)).toBe("NOTHING");
  });

  it("accepts a 32-character volume id; Joliet carries its first 16 characters", async () => {
    const volumeId = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_01234";
    const iso = await roundTrip({ volumeId, files: [{ path: "f", data: "x" }] });
    expect(xorrisoVolumeId(iso)).toBe(volumeId);
    expect(checkStructure(readFileSync(iso)).svd.volumeId).toEqual(ucs2(volumeId.slice(0, 16)));
  });

  it("rejects a 33-character volume id without creating a file", async () => {
    const path = join(dir, "too-long-label.iso");
    await expect(writeIso(path, { volumeId: "A".repeat(33), files: [] })).rejects.toMatchObject({
      code: "ISO_VOLUME_ID_INVALID",
    });
    expect(() => statSync(path)).toThrow();
    expect(() => statSync(`${path}.tmp`)).toThrow();
  });
});

describe("writeIso output is deterministic", () => {
  const spec = (date: Date): IsoSpec => ({
    volumeId: "SAME",
    date,
    files: [
      { path: "b.txt", data: "two" },
      { path: "dir/a.txt", data: Buffer.from("one") },
    ],
  });

  it("writes identical bytes for the same spec and date", async () => {
    const first = readFileSync(await write(spec(DATE)));
    const second = readFileSync(await write(spec(DATE)));
    expect(first.equals(second)).toBe(true);
  });

  it("records the date in the descriptors and records", async () => {
    const other = readFileSync(await write(spec(new Date(Date.UTC(2030, 0, 1)))));
    const image = readFileSync(await write(spec(DATE)));
    expect(other.equals(image)).toBe(false);
    expect(image.toString("ascii", 16 * 2048 + 813, 16 * 2048 + 829)).toBe("2024050607080912");
    // Root record date: years since 1900, month, day, hour, minute, second, GMT offset.
    expect([...image.subarray(16 * 2048 + 156 + 18, 16 * 2048 + 156 + 25)]).toEqual([124, 5, 6, 7, 8, 9, 0]);
  });
});
