/**
 * The post step can never fail the job: an upload that throws from the
 * cache client's internals (a callback's exception, a rejection nobody
 * awaits) is a warning, and the step's process exits 0.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { annotations } from "../support/action-runner.js";
import { REPO_ROOT } from "../support/tools.js";

const dir = mkdtempSync(join(tmpdir(), "hxe-post-fault-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the post step", () => {
  it("exits 0 with a warning when the cache upload throws from its internals", () => {
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", join(REPO_ROOT, "test/support/action-post-fault.ts"), dir],
      {
        cwd: REPO_ROOT,
        encoding: "utf8",
        env: { ...process.env, GITHUB_STEP_SUMMARY: "", GITHUB_OUTPUT: "" },
      },
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const warnings = annotations(r.stdout, "warning").join("\n");
    expect(warnings).toContain(
      "an error escaped the cache client and was ignored: upload socket closed (test)",
    );
    expect(warnings).toContain("upload stream rejected (test)");
    expect(warnings).toContain("not saved to the Actions cache");
    expect(r.stdout).toContain("::set-output name=saved::false");
  });
});
