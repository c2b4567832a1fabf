/**
 * Launching QEMU for a plan: ports checked, process started detached, pid
 * recorded, QMP connected; an early exit becomes an error that says why.
 */
import { readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { EngineError } from "../errors.js";
import { describePortOwner } from "../host/port-owner.js";
import { spawnDetached } from "../exec.js";
import { buildQemuArgv, type QemuPlan } from "../qemu/argv.js";
import { processStartTicks, writePidFile, type PidRecord } from "../qemu/process.js";
import { QmpClient } from "../qemu/qmp.js";
import { QmpClosedError } from "../qemu/protocol-errors.js";
import { setTimeout as delay } from "node:timers/promises";
import type { RunPaths } from "./run-dir.js";

export class PortInUseError extends EngineError {
  /** Who holds the port ("pid 1234 (python3)"), when /proc could tell. */
  readonly owner: string | undefined;
  constructor(
    readonly port: number,
    bind: string,
    owner: string | undefined = describePortOwner(port),
  ) {
    const where = bind.includes(":") ? `[${bind}]:${port}` : `${bind}:${port}`;
    super("PORT_IN_USE", `host port ${where} is already in use${owner ? ` by ${owner}` : ""}`, {
      hint: `stop what listens on port ${port}${owner ? ` (${owner})` : ""}, or choose other ports (the EMULATOR_*_PORT variables, or the Action's port inputs)`,
    });
    this.owner = owner;
  }
}

export class QemuLaunchError extends EngineError {}

export function tailFile(path: string, lines = 20): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** Fails fast, before QEMU starts, when a forwarded port is taken. */
export async function assertPortsFree(bind: string, ports: readonly number[]): Promise<void> {
  for (const port of ports) {
    await new Promise<void>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", (err: NodeJS.ErrnoException) =>
        reject(err.code === "EADDRINUSE" ? new PortInUseError(port, bind) : err),
      );
      srv.listen({ port, host: bind, exclusive: true }, () => srv.close(() => resolve()));
    });
  }
}

export interface LaunchedVm {
  pid: PidRecord;
  qmp: QmpClient;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  argv: string[];
}

export async function launchVm(
  binary: string,
  plan: QemuPlan,
  paths: RunPaths,
  timeoutMs = 30_000,
): Promise<LaunchedVm> {
  const argv = buildQemuArgv(plan);
  if (plan.layout === "resume") argv.push("-S");
  rmSync(paths.qmpSocket, { force: true });
  rmSync(paths.qgaSocket, { force: true });
  rmSync(paths.qemuLog, { force: true });
  const proc = spawnDetached(binary, argv, paths.qemuLog, undefined, plan.holdFds);
  const exitedEarly = proc.exited.then((r) => {
    throw launchFailure(binary, paths, r.code, r.signal);
  });
  if (proc.pid < 0) await exitedEarly;
  const pid: PidRecord = {
    pid: proc.pid,
    startTicks: processStartTicks(proc.pid),
    binary,
    startedAt: new Date().toISOString(),
  };
  writePidFile(paths.pidFile, pid);
  let qmp: QmpClient;
  try {
    qmp = await Promise.race([QmpClient.connect(paths.qmpSocket, { timeoutMs }), exitedEarly]);
  } catch (err) {
    // A QEMU that exits while we negotiate closes the monitor before its exit
    // is seen: its own reason (a taken port, a bad argument) is the better error.
    if (err instanceof QmpClosedError) {
      const early = await Promise.race([
        exitedEarly.then(
          () => undefined,
          (e: unknown) => e,
        ),
        delay(2_000).then(() => undefined),
      ]);
      if (early) throw early;
    }
    // Kill a QEMU that still runs (a monitor that timed out or spoke
    // nonsense); one that exited (a launch failure) needs nothing.
    if (!(err instanceof QemuLaunchError || err instanceof PortInUseError)) {
      try {
        process.kill(proc.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    throw err;
  }
  exitedEarly.catch(() => undefined);
  return { pid, qmp, exited: proc.exited, argv };
}

function launchFailure(
  binary: string,
  paths: RunPaths,
  code: number | null,
  sig: string | null,
): EngineError {
  const log = tailFile(paths.qemuLog);
  const fwd = /Could not set up host forwarding rule '?tcp:([^:]*):(\d+)/.exec(log);
  if (fwd) return new PortInUseError(Number(fwd[2]), fwd[1] ?? "127.0.0.1");
  return new QemuLaunchError(
    "QEMU_EXITED",
    `QEMU (${binary}) exited during launch (${sig ?? `exit ${code}`}):\n${log || "(no output)"}`,
    { hint: `see ${paths.qemuLog}; check the image path and the QEMU version` },
  );
}

/**
 * Runs `work` while the VM runs: when QEMU exits first, `work` is aborted
 * through its signal and this rejects at once with QEMU_EXITED, instead of
 * waiting out the work's own deadline (a crashed capture boot would
 * otherwise wait for health until readyTimeoutSec).
 */
export async function whileRunning<T>(
  vm: LaunchedVm,
  paths: RunPaths,
  what: string,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const abort = new AbortController();
  let settled = false;
  const exited = vm.exited.then((r) => {
    const how = r.signal ?? `exit ${r.code}`;
    const err = new QemuLaunchError("QEMU_EXITED", `QEMU exited (${how}) during ${what}`, {
      hint: `see ${paths.qemuLog} and ${paths.serialLog}`,
    });
    if (!settled) abort.abort(err);
    throw err;
  });
  exited.catch(() => undefined);
  try {
    return await Promise.race([work(abort.signal), exited]);
  } finally {
    settled = true;
  }
}
