import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/tools.js";

const main = join(REPO_ROOT, "dist/main/index.js");

describe("the bundled Action (dist/)", () => {
  beforeAll(() => {
    if (!existsSync(main)) execFileSync("npm", ["run", "build"], { cwd: REPO_ROOT, stdio: "inherit" });
  }, 120_000);

  function runBundle(env: Record<string, string>) {
    const dir = mkdtempSync(join(tmpdir(), "hxe-bundle-"));
    const output = join(dir, "output");
    writeFileSync(output, "");
    const r = spawnSync(process.execPath, [main], {
      env: { PATH: process.env.PATH ?? "", GITHUB_OUTPUT: output, ...env },
      encoding: "utf8",
    });
    return { ...r, outputs: readFileSync(output, "utf8") };
  }

  it("is an ES module bundle that loads and runs under Node", () => {
    expect(readFileSync(main, "utf8")).toMatch(/^import /m);
    const r = runBundle({ INPUT_SNAPSHOT: "auto", INPUT_CACHE: "none" });
    expect(r.status).toBe(0);
    expect(r.outputs).toContain("accelerator");
  });

  it("fails the step with one error that names every bad input and its fix", () => {
    const r = runBundle({ INPUT_RAM: "lots", INPUT_SNAPSHOT: "sometimes" });
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('input ram="lots"');
    expect(r.stdout).toContain("must be a whole number");
    expect(r.stdout).toContain('input snapshot="sometimes"');
  });
});
