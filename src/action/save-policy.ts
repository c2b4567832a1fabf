/**
 * Whether a snapshot captured in this job is saved to the Actions cache.
 * default-branch: only when the job runs on the repository's default branch.
 * The default branch comes from the event payload (`repository.default_branch`),
 * else the default-branch input. The job's branch is GITHUB_REF, or
 * GITHUB_REF_NAME when GITHUB_REF is not a branch ref. A `schedule` run is on
 * the default branch by definition (GitHub runs schedules only there), so it
 * saves even when its payload names no branch. Pull requests can restore the
 * default branch's entries but not each other's, so saving there only spends
 * cache quota.
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

/** The branch this job runs on, or undefined (a tag, a pull request's merge ref). */
function jobBranch(env: NodeJS.ProcessEnv): string | undefined {
  const ref = env.GITHUB_REF ?? "";
  if (ref.startsWith("refs/heads/")) return ref.slice("refs/heads/".length);
  if (ref === "" && env.GITHUB_REF_TYPE === "branch" && env.GITHUB_REF_NAME) return env.GITHUB_REF_NAME;
  return undefined;
}

export function saveDecision(
  saveOn: ActionInputs["saveOn"],
  env: NodeJS.ProcessEnv,
  defaultBranchInput?: string,
): SaveDecision {
  if (saveOn === "never") return { save: false, why: "save-on is never" };
  if (saveOn === "always") return { save: true, why: "save-on is always" };
  const ref = env.GITHUB_REF || (env.GITHUB_REF_NAME ? `refs/heads/${env.GITHUB_REF_NAME}` : "");
  const event = env.GITHUB_EVENT_NAME ?? "";
  const fromPayload = defaultBranchOf(env.GITHUB_EVENT_PATH);
  const branch = fromPayload ?? defaultBranchInput;
  const here = jobBranch(env);
  if (!branch) {
    if (event === "schedule" && here) {
      return { save: true, why: `a schedule run (GitHub runs schedules on the default branch: ${here})` };
    }
    return {
      save: false,
      why: `save-on is default-branch, and neither the ${event || "event"} payload (GITHUB_EVENT_PATH) nor the default-branch input names the default branch`,
    };
  }
  const source = fromPayload ? "" : " (from the default-branch input)";
  if (here === branch) return { save: true, why: `${ref} is the default branch${source}` };
  return {
    save: false,
    why: `save-on is default-branch and ${ref || "GITHUB_REF (unset)"} is not refs/heads/${branch}${source}; jobs there restore the default branch's snapshot`,
  };
}
