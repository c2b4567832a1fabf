/** Small tools the reliability scenarios share: processes, files, sockets. */
import { spawn, type ChildProcess } from "node:child_process";
import { lstatSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { EmulatorConfig } from "../../../src/engine/config/index.js";
import { readState, runPaths } from "../../../src/engine/lifecycle/run-dir.js";
import { start } from "../../../src/engine/lifecycle/start.js";
import { leftByInterruptedStart } from "../../../src/engine/lifecycle/stop.js";
import { captureOnly } from "../../../src/engine/lifecycle/capture-verb.js";
import { isAlive, readPidFile, waitForExit, type PidRecord } from "../../../src/engine/qemu/process.js";
import { silent, type EngineEvent } from "../../../src/engine/lifecycle/events.js";
import type { TestEmulator } from "../../support/emulator.js";
import { REPO_ROOT } from "../../support/tools.js";

/*
 * Fixtures: the scenarios share one emulator home, so each test first brings
 * it to the state it needs (cheap when it is already there) instead of
 * relying on what an earlier test left.
 */

/** The emulator up from a finished start (started if not: it resumes, capturing first when there is no snapshot). */
export async function ensureRunning(emu: TestEmulator, config: EmulatorConfig): Promise<void> {
  const paths = runPaths(config.runDir);
  const pid = readPidFile(paths.pidFile);
  if (pid && isAlive(pid) && !leftByInterruptedStart(pid, readState(paths))) return;
  await start(config);
}

/** The emulator stopped and a published snapshot for `config` in its store (captured if missing); returns its key. */
export async function ensureSnapshot(emu: TestEmulator, config: EmulatorConfig): Promise<string> {
  await emu.stop(config);
  return (await captureOnly(config, silent)).key;
}

/** The emulator stopped and its snapshot store gone: the next start has to capture. */
export async function ensureNoSnapshot(emu: TestEmulator, config: EmulatorConfig): Promise<void> {
  await emu.stop(config);
  rmSync(config.snapshotDir, { recursive: true, force: true });
}

export function qemuOf(config: EmulatorConfig): PidRecord {
  const pid = readPidFile(runPaths(config.runDir).pidFile);
  if (!pid) throw new Error(`no pid file in ${config.runDir}`);
  return pid;
}

export async function sigkill(pid: PidRecord): Promise<void> {
  process.kill(pid.pid, "SIGKILL");
  await waitForExit(pid, 10_000);
}

/** An event sink that records everything and runs `on` for each event. */
export function recorder(on?: (e: EngineEvent) => void) {
  const events: EngineEvent[] = [];
  return {
    events,
    sink: (e: EngineEvent) => {
      events.push(e);
      on?.(e);
    },
    warnings: () => events.flatMap((e) => (e.kind === "warn" ? [e.message] : [])),
  };
}

/**
 * The engine in a child process; `onEvent` sees its events as they come.
 * With `freezeAt`, the child stops itself (SIGSTOP) as that phase starts, so
 * it is still in that phase whenever `onEvent` acts on the phase's event.
 */
export function engineChild(
  config: EmulatorConfig,
  onEvent: (e: EngineEvent, child: ChildProcess) => void,
  freezeAt?: string,
): { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(REPO_ROOT, "test/support/engine-child.ts"),
      JSON.stringify(config),
      ...(freezeAt ? [freezeAt] : []),
    ],
    { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      const m = JSON.parse(line) as { event?: EngineEvent };
      if (m.event) onEvent(m.event, child);
    } catch {
      /* not ours */
    }
  });
  child.stderr!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, exited };
}

/** A process (not this one) listening on 127.0.0.1:port; resolves once it listens. */
export async function portHolder(port: number, host = "127.0.0.1"): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ["-e", `require("net").createServer().listen(${port}, ${JSON.stringify(host)}, () => console.log("up"))`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`port holder exited ${code}`)));
  });
  return child;
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await gone;
}

/** Every regular file under `dir` (sockets, fifos and links skipped). */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Addresses listening on `port` from /proc/net/tcp{,6}, e.g. ["127.0.0.1"]. */
export function listeningAddresses(port: number): string[] {
  const out: string[] = [];
  for (const table of ["tcp", "tcp6"]) {
    const lines = readFileSync(`/proc/net/${table}`, "utf8").trim().split("\n").slice(1);
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      const [addr, p] = (f[1] ?? "").split(":");
      if (f[3] !== "0A" || Number.parseInt(p ?? "", 16) !== port) continue;
      if (table === "tcp") {
        const b = Buffer.from(addr ?? "", "hex");
        out.push([b[3], b[2], b[1], b[0]].join("."));
      } else out.push(`[${addr}]`);
    }
  }
  return out;
}

/** Live QEMU processes whose command line mentions `needle` (our run dir or home). */
export function qemuProcessesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
      if (cmd.includes("qemu-system") && cmd.includes(needle)) pids.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return pids;
}
