/**
 * Where things live on the runner, and the emulator config the inputs make.
 *
 * - cache: actions / none: the emulator's home (snapshot store, digest and
 *   probe caches) is under RUNNER_TEMP; an Actions cache entry refills the
 *   store on the next job.
 * - cache: local: the home is cache-dir (default ~/.hexclave/emulator), which
 *   outlives the job on a self-hosted runner: snapshots stay there, nothing
 *   is uploaded or downloaded.
 * The run directory (pid, sockets, overlay, logs) is per job, in RUNNER_TEMP.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, type ConfigOverrides, type EmulatorConfig } from "../engine/index.js";
import { OVERRIDE_NAMES, type ActionInputs } from "./inputs.js";

export interface RunnerDirs {
  /** RUNNER_TEMP (emptied by the runner at the start of each job). */
  temp: string;
  /** RUNNER_TOOL_CACHE (downloaded images). */
  toolCache: string;
  /** GITHUB_WORKSPACE: the working directory, shared at /host by default. */
  workspace: string;
  home: string;
}

export function runnerDirs(env: NodeJS.ProcessEnv, homeDir: string, cwd: string): RunnerDirs {
  const temp = env.RUNNER_TEMP || tmpdir();
  return {
    temp,
    toolCache: env.RUNNER_TOOL_CACHE || join(temp, "tool-cache"),
    workspace: env.GITHUB_WORKSPACE || cwd,
    home: homeDir,
  };
}

/** The Action's own working area under RUNNER_TEMP. */
export const actionTemp = (dirs: RunnerDirs): string => join(dirs.temp, "hexclave-emulator");

/**
 * Where the snapshot archive is packed for the Actions cache. Only its
 * name reaches @actions/cache (relative to this directory: see
 * cache-client.ts), so the entry's version is the same on every runner.
 */
export const cacheDirOf = (dirs: RunnerDirs): string => join(actionTemp(dirs), "cache");

export interface Resolved {
  image?: string | undefined;
  qemuBinary?: string | undefined;
}

export function emulatorConfig(
  inputs: ActionInputs,
  dirs: RunnerDirs,
  resolved: Resolved,
  env: NodeJS.ProcessEnv,
  hostArch: string,
): EmulatorConfig {
  const overrides: ConfigOverrides = {
    ...inputs.overrides,
    runDir: join(actionTemp(dirs), "run"),
  };
  if (inputs.cache === "local") {
    if (inputs.cacheDir) overrides.home = inputs.cacheDir;
  } else {
    overrides.home = join(actionTemp(dirs), "home");
  }
  if (resolved.image) overrides.image = resolved.image;
  if (resolved.qemuBinary) overrides.qemuBinary = resolved.qemuBinary;
  return loadConfig({
    env,
    overrides,
    cwd: dirs.workspace,
    homeDir: dirs.home,
    hostArch,
    overrideSource: "action inputs",
    overrideNames: OVERRIDE_NAMES,
  });
}
