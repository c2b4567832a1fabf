/**
 * Whether a snapshot captured in this job is saved to the Actions cache.
 * default-branch: only on a push (or any event) whose GITHUB_REF is the
 * repository's default branch, read from the event payload. Pull requests
 * can restore the default branch's entries but not each other's, so saving
 * there only spends cache quota.
 */
import { readFileSync } from "node:fs";
import type { ActionInputs } from "./inputs.js";

export interface SaveDecision {
  save: boolean;
  why: string;
}

export function defaultBranchOf(eventPath: string | undefined): string | undefined {
  if (!eventPath) return undefined;
  try {
    const event = JSON.parse(readFileSync(eventPath, "utf8")) as {
      repository?: { default_branch?: unknown };
    };
    const branch = event.repository?.default_branch;
    return typeof branch === "string" && branch !== "" ? branch : undefined;
  } catch {
    return undefined;
  }
}

export function saveDecision(saveOn: ActionInputs["saveOn"], env: NodeJS.ProcessEnv): SaveDecision {
  if (saveOn === "never") return { save: false, why: "save-on is never" };
  if (saveOn === "always") return { save: true, why: "save-on is always" };
  const ref = env.GITHUB_REF ?? "";
  const branch = defaultBranchOf(env.GITHUB_EVENT_PATH);
  if (!branch) {
    return {
      save: false,
      why: "save-on is default-branch, and the event payload (GITHUB_EVENT_PATH) names no default branch",
    };
  }
  if (ref === `refs/heads/${branch}`) return { save: true, why: `${ref} is the default branch` };
  return {
    save: false,
    why: `save-on is default-branch and ${ref || "GITHUB_REF (unset)"} is not refs/heads/${branch}; jobs there restore the default branch's snapshot`,
  };
}
