import { describe, expect, it } from "vitest";
import { EngineError } from "../../src/engine/errors.js";
import { planIso } from "../../src/engine/iso/index.js";

/** Primary-tree identifier for each input name, in input order. */
function shortNames(...paths: string[]): string[] {
  const plan = planIso({ volumeId: "V", files: paths.map((path) => ({ path, data: "" })) });
  const byPath = new Map<string, string>();
  for (const dir of plan.primary.dirs) {
    for (const r of dir.records.slice(2)) byPath.set(r.target.path, r.identifier.toString("ascii"));
  }
  return paths.map((p) => byPath.get(p)!);
}

function rejects(spec: Parameters<typeof planIso>[0], code: string): EngineError {
  try {
    planIso(spec);
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe(code);
    return err as EngineError;
  }
  throw new Error("expected planIso to throw");
}

describe("primary (8.3) names", () => {
  it("uppercases names that already fit 8.3 and adds the ;1 version", () => {
    expect(shortNames("runtime.env", "base.env", "README", "x.y")).toEqual([
      "RUNTIME.ENV;1",
      "BASE.ENV;1",
      "README.;1",
      "X.Y;1",
    ]);
  });

  it("maps characters outside A-Z 0-9 _ to _ and marks the name as changed", () => {
    expect(shortNames("my-file.txt", "héllo.md", "a b.c+d", ".env")).toEqual([
      "MY_FIL~1.TXT;1",
      "H_LLO~1.MD;1",
      "A_B~1.C_D;1",
      "_ENV~1.;1",
    ]);
  });

  it("truncates long names and extensions uniquely", () => {
    // Mangled in order of the original names ("~" sorts after letters).
    expect(shortNames("verylongname.txt", "verylongother.txt", "verylo~1.txt", "data.json")).toEqual([
      "VERYLO~1.TXT;1",
      "VERYLO~2.TXT;1",
      "VERYLO~3.TXT;1",
      "DATA~1.JSO;1",
    ]);
  });

  it("de-duplicates names that differ only in case or by a mapped character", () => {
    const names = shortNames("A.TXT", "a.txt", "a_.txt", "a-.txt", "a+.txt");
    expect(names[0]).toBe("A.TXT;1");
    expect(names[2]).toBe("A_.TXT;1");
    expect(new Set(names).size).toBe(names.length);
    expect(names.slice(1).filter((n) => n.includes("~"))).toHaveLength(3);
  });

  it("treats a directory and an extensionless file of the same name as a clash", () => {
    // Linux shows both as "docs", so only one may keep the name: the first by original name.
    const plan = planIso({
      volumeId: "V",
      files: [
        { path: "docs/a.txt", data: "" },
        { path: "DOCS", data: "" },
      ],
    });
    const ids = plan.primary.dirs[0]!.records.slice(2).map((r) => [
      r.target.path,
      r.identifier.toString("ascii"),
    ]);
    expect(ids).toEqual([
      ["DOCS", "DOCS.;1"],
      ["docs", "DOCS~1"],
    ]);
  });

  it("gives directories 8 characters and no extension", () => {
    const plan = planIso({
      volumeId: "V",
      files: [
        { path: "config.d/a", data: "" },
        { path: "subdirectory/b", data: "" },
      ],
    });
    expect(plan.primary.dirs.map((d) => d.identifier.toString("ascii")).slice(1)).toEqual([
      "CONFIG~1",
      "SUBDIR~1",
    ]);
  });

  it("keeps 8.3 names unique in a directory of 120 similar long names", () => {
    const paths = Array.from({ length: 120 }, (_, i) => `long-file-name-${i}.text`);
    const names = shortNames(...paths);
    expect(new Set(names).size).toBe(120);
    for (const n of names) expect(n).toMatch(/^[A-Z0-9_~]{1,8}\.[A-Z0-9_]{0,3};1$/);
  });
});

describe("Joliet names", () => {
  it("accepts a 64-character name", () => {
    const name = "n".repeat(60) + ".txt";
    const plan = planIso({ volumeId: "V", files: [{ path: name, data: "" }] });
    expect(plan.joliet.dirs[0]!.records[2]!.identifier).toHaveLength(128);
  });

  it("rejects a 65-character name, naming the file and the limit", () => {
    const name = "n".repeat(61) + ".txt";
    const err = rejects({ volumeId: "V", files: [{ path: `dir/${name}`, data: "" }] }, "ISO_NAME_TOO_LONG");
    expect(err.message).toContain(name);
    expect(err.message).toContain("dir/");
    expect(err.message).toMatch(/65 characters.*at most 64/);
    expect(err.hint).toMatch(/64/);
  });

  it("rejects characters Joliet cannot store", () => {
    for (const name of ["a:b", "what?", "star*", "semi;1", "back\\slash", "tab\there", "emoji😀"]) {
      const err = rejects({ volumeId: "V", files: [{ path: name, data: "" }] }, "ISO_NAME_INVALID");
      expect(err.message).toContain(name);
    }
  });

  it("rejects paths longer than Joliet's 240 bytes", () => {
    const segment = "d".repeat(40);
    const err = rejects(
      { volumeId: "V", files: [{ path: `${segment}/${segment}/${segment}/x`, data: "" }] },
      "ISO_PATH_INVALID",
    );
    expect(err.message).toMatch(/Joliet allows 120/);
  });
});

describe("volume id", () => {
  it("accepts 32 d-characters and rejects 33", () => {
    expect(planIso({ volumeId: "A".repeat(32), files: [] }).volumeId).toHaveLength(32);
    const err = rejects({ volumeId: "A".repeat(33), files: [] }, "ISO_VOLUME_ID_INVALID");
    expect(err.message).toMatch(/1 to 32 characters/);
  });

  it("rejects lowercase, punctuation and an empty id", () => {
    for (const volumeId of ["stackcfg", "STACK-CFG", "STACK CFG", ""]) {
      rejects({ volumeId, files: [] }, "ISO_VOLUME_ID_INVALID");
    }
  });
});
