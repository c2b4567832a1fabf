/**
 * Launching QEMU for a plan: ports checked, process started detached, pid
 * recorded, QMP connected; an early exit becomes an error that says why.
 */
import { readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { EngineError } from "../errors.js";
import { spawnDetached } from "../exec.js";
import { buildQemuArgv, type QemuPlan } from "../qemu/argv.js";
import { processStartTicks, writePidFile, type PidRecord } from "../qemu/process.js";
import { QmpClient } from "../qemu/qmp.js";
import type { RunPaths } from "./run-dir.js";

export class PortInUseError extends EngineError {
  constructor(
    readonly port: number,
    bind: string,
    owner?: string,
  ) {
    super("PORT_IN_USE", `host port ${bind}:${port} is already in use${owner ? ` by ${owner}` : ""}`, {
      hint: `stop what listens there, or choose other ports (EMULATOR_*_PORT / --port-… / the port inputs)`,
    });
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
  const proc = spawnDetached(binary, argv, paths.qemuLog);
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
    if (!(err instanceof EngineError && err.code.startsWith("QEMU_"))) {
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
