/**
 * Stopping: ask the guest agent to power off (a guest without an ACPI
 * handler ignores the power button), then ACPI, then SIGTERM, then SIGKILL,
 * each with a bounded wait. Sockets and the pid file go with it.
 */
import { GuestAgent } from "../qemu/qga.js";
import { QmpClient } from "../qemu/qmp.js";
import { isAlive, readPidFile, signal, waitForExit, type PidRecord } from "../qemu/process.js";
import type { RunPaths } from "./run-dir.js";
import { clearRuntimeFiles } from "./run-dir.js";
import type { EventSink } from "./events.js";

export async function killVm(pid: PidRecord): Promise<void> {
  if (!isAlive(pid)) return;
  signal(pid, "SIGKILL");
  await waitForExit(pid, 10_000);
}

export interface StopResult {
  wasRunning: boolean;
  /** How it went down: agent, acpi, sigterm, sigkill, or not running. */
  via: "agent" | "acpi" | "sigterm" | "sigkill" | "none";
}

export async function stopVm(
  paths: RunPaths,
  graceSec: number,
  sink: EventSink = () => undefined,
): Promise<StopResult> {
  const pid = readPidFile(paths.pidFile);
  if (!pid || !isAlive(pid)) {
    clearRuntimeFiles(paths);
    return { wasRunning: false, via: "none" };
  }
  const graceMs = graceSec * 1000;
  let via: StopResult["via"] = "agent";
  try {
    const agent = await GuestAgent.connect(paths.qgaSocket, { timeoutMs: 2_000 });
    try {
      await agent.shutdown("powerdown", { timeoutMs: 3_000 });
    } finally {
      agent.close();
    }
  } catch {
    via = "acpi";
  }
  if (via === "agent" && (await waitForExit(pid, graceMs))) return done(paths, via);
  via = "acpi";
  try {
    const qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: 2_000 });
    try {
      await qmp.execute("system_powerdown", undefined, { timeoutMs: 2_000 });
    } finally {
      qmp.close();
    }
    if (await waitForExit(pid, Math.min(graceMs, 10_000))) return done(paths, via);
  } catch {
    /* fall through to signals */
  }
  sink({ kind: "warn", message: "the guest did not power off in time; sending SIGTERM to QEMU" });
  signal(pid, "SIGTERM");
  if (await waitForExit(pid, 5_000)) return done(paths, "sigterm");
  signal(pid, "SIGKILL");
  await waitForExit(pid, 10_000);
  return done(paths, "sigkill");
}

function done(paths: RunPaths, via: StopResult["via"]): StopResult {
  clearRuntimeFiles(paths);
  return { wasRunning: true, via };
}
