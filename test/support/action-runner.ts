/**
 * Runs the bundled Action (dist/) the way the GitHub runner does: a Node
 * process per step, inputs as INPUT_<NAME> (action.yml's defaults for those
 * not given, `${{ job.status }}` evaluated), fresh file-command files per
 * step (GITHUB_OUTPUT, GITHUB_STATE, GITHUB_ENV, GITHUB_PATH,
 * GITHUB_STEP_SUMMARY) processed after the step, and the main step's saved
 * state handed to the post step as STATE_<name>. A job lays out the runner's
 * directories at fixed paths (RUNNER_TEMP emptied at the start of each job,
 * as the runner does; the tool cache persists, as on a self-hosted runner).
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isAlive, readPidFile, signal } from "../../src/engine/qemu/process.js";
import { CACHE_ROOT, REPO_ROOT } from "./tools.js";

/**
 * A Node 24 binary (action.yml says node24; the tests run the bundle on it
 * as well as on the Node 20 that runs them): the npm registry's `node@24`
 * package, installed once into the cache (CACHE_ROOT/node24), then reused.
 */
export function node24(): string {
  const dir = join(CACHE_ROOT, "node24");
  const bin = join(dir, "node_modules", ".bin", "node");
  if (!existsSync(bin)) {
    mkdirSync(dir, { recursive: true });
    execFileSync(
      "npm",
      ["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", dir, "node@24"],
      {
        stdio: "inherit",
        timeout: 300_000,
      },
    );
  }
  const version = execFileSync(bin, ["--version"], { encoding: "utf8" }).trim();
  if (!version.startsWith("v24.")) throw new Error(`${bin} is ${version}, not Node 24`);
  return bin;
}

/** Parses a file-command file: `name<<DELIM\nvalue\nDELIM` blocks and `name=value` lines; the last one wins. */
export function parseFileCommands(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (line === "") continue;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, name, delim] = heredoc as unknown as [string, string, string];
      const value: string[] = [];
      for (i++; i < lines.length && lines[i] !== delim; i++) value.push(lines[i] ?? "");
      if (i >= lines.length) throw new Error(`unterminated heredoc for ${name}`);
      out[name] = value.join("\n");
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`malformed file-command line: ${line}`);
    out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

export interface ActionMetadata {
  inputs: Record<string, { default: string }>;
  outputs: string[];
  runs: Record<string, string>;
}

/** The parts of action.yml the runner uses (a small reader for this file's plain layout). */
export function readActionYml(path = join(REPO_ROOT, "action.yml")): ActionMetadata {
  const meta: ActionMetadata = { inputs: {}, outputs: [], runs: {} };
  let section = "";
  let current = "";
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const top = /^([a-z-]+):\s*$/.exec(line) ?? /^([a-z-]+):\s/.exec(line);
    if (top && !line.startsWith(" ")) {
      section = top[1] ?? "";
      continue;
    }
    if (section === "runs") {
      const m = /^ {2}([a-z-]+):\s*(.*)$/.exec(line);
      if (m) meta.runs[m[1]!] = m[2]!.trim();
      continue;
    }
    const name = /^ {2}([a-z0-9-]+):\s*$/.exec(line);
    if (name) {
      current = name[1]!;
      if (section === "inputs") meta.inputs[current] = { default: "" };
      if (section === "outputs") meta.outputs.push(current);
      continue;
    }
    const def = /^ {4}default:\s*(.*)$/.exec(line);
    if (def && section === "inputs" && current) {
      let v = def[1]!.trim();
      if (/^".*"$/.test(v)) v = JSON.parse(v) as string;
      meta.inputs[current] = { default: v };
    }
  }
  return meta;
}

export interface StepResult {
  code: number | null;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  state: Record<string, string>;
  summary: string;
  /** Wall time of the step's process, launch to exit. */
  ms: number;
}

export interface RunnerJob {
  root: string;
  temp: string;
  toolCache: string;
  workspace: string;
  home: string;
  eventPath: string;
  env: Record<string, string>;
}

export interface JobOptions {
  ref?: string;
  defaultBranch?: string;
  env?: Record<string, string>;
}

/**
 * A job on the runner rooted at `root`: RUNNER_TEMP is emptied, the tool cache
 * kept. A VM a previous job left running is killed first, as the runner's
 * orphan-process cleanup would have done at that job's end.
 */
export function newJob(root: string, options: JobOptions = {}): RunnerJob {
  const temp = join(root, "work", "_temp");
  const leftover = readPidFile(join(temp, "hexclave-emulator", "run", "qemu.pid"));
  if (leftover && isAlive(leftover)) signal(leftover, "SIGKILL");
  rmSync(temp, { recursive: true, force: true });
  const job: RunnerJob = {
    root,
    temp,
    toolCache: join(root, "tool-cache"),
    workspace: join(root, "work", "repo", "repo"),
    home: join(root, "home"),
    eventPath: join(temp, "_github_workflow", "event.json"),
    env: {},
  };
  for (const d of [temp, job.toolCache, job.workspace, job.home, join(temp, "_github_workflow")]) {
    mkdirSync(d, { recursive: true });
  }
  const defaultBranch = options.defaultBranch ?? "main";
  writeFileSync(
    job.eventPath,
    JSON.stringify({
      ref: options.ref ?? `refs/heads/${defaultBranch}`,
      repository: { default_branch: defaultBranch },
    }),
  );
  job.env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: job.home,
    CI: "true",
    GITHUB_ACTIONS: "true",
    RUNNER_OS: "Linux",
    RUNNER_ARCH: process.arch === "arm64" ? "ARM64" : "X64",
    RUNNER_TEMP: temp,
    RUNNER_TOOL_CACHE: job.toolCache,
    GITHUB_WORKSPACE: job.workspace,
    GITHUB_REF: options.ref ?? `refs/heads/${defaultBranch}`,
    GITHUB_EVENT_NAME: "push",
    GITHUB_EVENT_PATH: job.eventPath,
    GITHUB_REPOSITORY: "hexclave/example",
    GITHUB_SERVER_URL: "https://github.com",
    ...options.env,
  };
  return job;
}

export interface StepOptions {
  inputs?: Record<string, string>;
  /** Extra environment for this step (wins over the job's). */
  env?: Record<string, string>;
  /** STATE_* values (the post step gets the main step's `state`). */
  state?: Record<string, string>;
  /** What `${{ job.status }}` evaluates to. Default "success". */
  jobStatus?: string;
  /** What `${{ github.token }}` evaluates to. Default "" (no token). */
  githubToken?: string;
  /** A command to run node under, e.g. ["unshare", "-m", "sh", "-c", "…", "--"]. */
  wrap?: string[];
  /** The node binary (default: the one running the tests). */
  node?: string;
  timeoutMs?: number;
}

let stepCount = 0;

/** Runs dist/<entry>/index.js as a step of `job`. */
export async function runStep(
  job: RunnerJob,
  entry: "main" | "post",
  options: StepOptions = {},
): Promise<StepResult> {
  const meta = readActionYml();
  const files = join(job.temp, "_runner_file_commands");
  mkdirSync(files, { recursive: true });
  const n = ++stepCount;
  const file = (name: string) => {
    const p = join(files, `${name}_${n}`);
    writeFileSync(p, "");
    return p;
  };
  const env: Record<string, string> = {
    ...job.env,
    GITHUB_OUTPUT: file("set_output"),
    GITHUB_STATE: file("save_state"),
    GITHUB_ENV: file("set_env"),
    GITHUB_PATH: file("add_path"),
    GITHUB_STEP_SUMMARY: file("step_summary"),
    ...options.env,
  };
  for (const [name, { default: def }] of Object.entries(meta.inputs)) {
    const given = options.inputs?.[name];
    const value =
      given ??
      (def === "${{ job.status }}"
        ? (options.jobStatus ?? "success")
        : def === "${{ github.token }}"
          ? (options.githubToken ?? "")
          : def);
    env[`INPUT_${name.replace(/ /g, "_").toUpperCase()}`] = value;
  }
  for (const [name, value] of Object.entries(options.state ?? {})) env[`STATE_${name}`] = value;

  const script = join(REPO_ROOT, "dist", entry, "index.js");
  const [cmd, ...args] = [...(options.wrap ?? []), options.node ?? process.execPath, script];
  const t0 = performance.now();
  const child = spawn(cmd!, args, { cwd: job.workspace, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 600_000);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (c) => resolve(c));
  });
  clearTimeout(timer);
  const ms = Math.round(performance.now() - t0);
  return {
    code,
    stdout,
    stderr,
    outputs: parseFileCommands(readFileSync(env.GITHUB_OUTPUT!, "utf8")),
    state: parseFileCommands(readFileSync(env.GITHUB_STATE!, "utf8")),
    summary: readFileSync(env.GITHUB_STEP_SUMMARY!, "utf8"),
    ms,
  };
}

/** `::warning::…` annotations a step printed (decoded). */
export function annotations(stdout: string, kind: "warning" | "error" | "notice"): string[] {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith(`::${kind}`))
    .map((l) =>
      l
        .replace(/^::[a-z]+[^:]*::/, "")
        .replace(/%0A/g, "\n")
        .replace(/%0D/g, "\r")
        .replace(/%25/g, "%"),
    );
}
