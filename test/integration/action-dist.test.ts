/**
 * dist/ is committed, so it must be what a fresh build makes: the sources,
 * build config and lock file are copied to a temporary directory, with this
 * checkout's node_modules hard-linked in (a symlink would change the module
 * paths ncc derives its module ids from), built there with `npm run build`,
 * and the result compared with dist/ byte for byte. A failure means: run
 * `npm run build` and commit dist/.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/tools.js";

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => relative(dir, join(d.parentPath, d.name)))
    .sort();
}

describe("dist/", () => {
  const copy = mkdtempSync(join(tmpdir(), "hxe-dist-"));
  afterAll(() => rmSync(copy, { recursive: true, force: true }));

  it("is reproduced byte for byte by a fresh npm run build", () => {
    for (const p of [
      "package.json",
      "package-lock.json",
      "tsconfig.json",
      "tsconfig.build.json",
      "src",
      "scripts",
    ]) {
      cpSync(join(REPO_ROOT, p), join(copy, p), { recursive: true });
    }
    try {
      execFileSync("cp", ["-al", join(REPO_ROOT, "node_modules"), join(copy, "node_modules")]);
    } catch {
      execFileSync("cp", ["-a", join(REPO_ROOT, "node_modules"), join(copy, "node_modules")]); // another file system
    }
    execFileSync("npm", ["run", "build", "--silent"], { cwd: copy, stdio: "pipe" });

    const want = join(REPO_ROOT, "dist");
    const got = join(copy, "dist");
    expect(files(got)).toEqual(files(want));
    const stale = files(want).filter((f) => !readFileSync(join(got, f)).equals(readFileSync(join(want, f))));
    expect(stale, "dist/ is stale: run `npm run build` and commit dist/").toEqual([]);
  }, 300_000);
});
