import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { saveDecision } from "../../src/action/save-policy.js";

const made: string[] = [];
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

function event(payload: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), "hxe-event-"));
  made.push(dir);
  const file = join(dir, "event.json");
  writeFileSync(file, JSON.stringify(payload));
  return file;
}

describe("when a captured snapshot is saved", () => {
  const onMain = event({ ref: "refs/heads/trunk", repository: { default_branch: "trunk" } });

  it("default-branch: saves on the repository's default branch, read from the event payload", () => {
    expect(
      saveDecision("default-branch", { GITHUB_REF: "refs/heads/trunk", GITHUB_EVENT_PATH: onMain }),
    ).toEqual({
      save: true,
      why: "refs/heads/trunk is the default branch",
    });
  });

  it("default-branch: not on a pull request or another branch", () => {
    const pr = saveDecision("default-branch", { GITHUB_REF: "refs/pull/7/merge", GITHUB_EVENT_PATH: onMain });
    expect(pr.save).toBe(false);
    expect(pr.why).toContain("refs/pull/7/merge is not refs/heads/trunk");
    expect(
      saveDecision("default-branch", { GITHUB_REF: "refs/heads/main", GITHUB_EVENT_PATH: onMain }).save,
    ).toBe(false);
  });

  it("default-branch: not when the payload names no default branch (or is missing)", () => {
    const none = event({ ref: "refs/heads/trunk" });
    expect(
      saveDecision("default-branch", { GITHUB_REF: "refs/heads/trunk", GITHUB_EVENT_PATH: none }).save,
    ).toBe(false);
    expect(saveDecision("default-branch", { GITHUB_REF: "refs/heads/trunk" }).why).toContain(
      "GITHUB_EVENT_PATH",
    );
  });

  it("default-branch: a schedule run saves although its payload has no repository object", () => {
    const schedule = event({ schedule: "17 3 * * *" });
    const d = saveDecision("default-branch", {
      GITHUB_EVENT_NAME: "schedule",
      GITHUB_REF: "refs/heads/trunk",
      GITHUB_EVENT_PATH: schedule,
    });
    expect(d.save).toBe(true);
    expect(d.why).toContain("schedule");
  });

  it("default-branch: a workflow_dispatch run on the default branch saves, told the branch by the default-branch input", () => {
    const dispatch = event({ inputs: {}, ref: "refs/heads/trunk" });
    const env = {
      GITHUB_EVENT_NAME: "workflow_dispatch",
      GITHUB_REF: "refs/heads/trunk",
      GITHUB_EVENT_PATH: dispatch,
    };
    expect(saveDecision("default-branch", env).save).toBe(false);
    expect(saveDecision("default-branch", env).why).toContain("default-branch input");
    expect(saveDecision("default-branch", env, "trunk")).toEqual({
      save: true,
      why: "refs/heads/trunk is the default branch (from the default-branch input)",
    });
    expect(saveDecision("default-branch", { ...env, GITHUB_REF: "refs/heads/feature" }, "trunk").save).toBe(
      false,
    );
    // Without GITHUB_REF, GITHUB_REF_NAME names the branch.
    expect(
      saveDecision(
        "default-branch",
        { GITHUB_EVENT_NAME: "workflow_dispatch", GITHUB_REF_NAME: "trunk", GITHUB_REF_TYPE: "branch" },
        "trunk",
      ).save,
    ).toBe(true);
  });

  it("always and never mean what they say", () => {
    expect(saveDecision("always", { GITHUB_REF: "refs/pull/1/merge" }).save).toBe(true);
    expect(saveDecision("never", { GITHUB_REF: "refs/heads/trunk", GITHUB_EVENT_PATH: onMain }).save).toBe(
      false,
    );
  });
});
