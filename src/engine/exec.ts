/**
 * Where the engine starts processes: short commands (qemu-img, perl, …)
 * through `run`, QEMU through `spawnDetached` so it outlives the command that
 * launched it (the CLI exits, the Action step ends). The one exception is
 * snapshot/zstd.ts, whose zstd subprocesses stream GiBs through pipes.
 */
import { spawn } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { execa } from "execa";
import { EngineError } from "./errors.js";

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: Record<string, string>;
  cwd?: string;
}

export class CommandError extends EngineError {
  readonly exitCode: number | undefined;
  readonly stderr: string;
  constructor(command: string, exitCode: number | undefined, stderr: string, hint?: string) {
    const tail = stderr.trim().split("\n").slice(-8).join("\n");
    super(
      "COMMAND_FAILED",
      `${command} failed${exitCode === undefined ? "" : ` (exit ${exitCode})`}: ${tail}`,
      {
        ...(hint === undefined ? {} : { hint }),
      },
    );
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Runs a command to completion; rejects with a CommandError carrying its stderr. */
export async function run(
  file: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<{ stdout: string; stderr: string }> {
  try {
    const r = await execa(file, args, {
      ...(opts.input === undefined ? {} : { input: opts.input }),
      ...(opts.timeoutMs === undefined ? {} : { timeout: opts.timeoutMs }),
      ...(opts.env === undefined ? {} : { env: opts.env }),
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      stripFinalNewline: true,
    });
    return { stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as {
      exitCode?: number;
      stderr?: string;
      code?: string;
      timedOut?: boolean;
      shortMessage?: string;
    };
    if (e.code === "ENOENT") {
      throw new EngineError("COMMAND_NOT_FOUND", `${file} was not found`, {
        hint: `install it or put it on PATH`,
        cause: err,
      });
    }
    const stderr = e.stderr || e.shortMessage || String(err);
    throw new CommandError(`${file} ${args.join(" ")}`.slice(0, 200), e.exitCode, stderr);
  }
}

export interface DetachedProcess {
  pid: number;
  /** Resolves when the process exits while this Node process is still alive. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a long-lived process in its own session, stdout+stderr to a log file. */
export function spawnDetached(
  file: string,
  args: readonly string[],
  logFile: string,
  env?: NodeJS.ProcessEnv,
  /** Descriptors the process inherits as its fd 3, 4, …: locks it holds until it exits. */
  inherit: readonly number[] = [],
): DetachedProcess {
  const fd = openSync(logFile, "a", 0o600);
  try {
    const child = spawn(file, args, {
      detached: true,
      stdio: ["ignore", fd, fd, ...inherit],
      env: env ?? process.env,
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    // A launch failure (ENOENT) surfaces through `exited`; never unhandled.
    exited.catch(() => undefined);
    if (child.pid === undefined) {
      return { pid: -1, exited };
    }
    child.unref();
    return { pid: child.pid, exited };
  } finally {
    closeSync(fd);
  }
}
