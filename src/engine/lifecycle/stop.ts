/**
 * Stopping: ask the guest agent to power off (a guest without an ACPI
 * handler ignores the power button), then ACPI, then SIGTERM, then SIGKILL,
 * each with a bounded wait. Sockets and the pid file go with it.
 */
import { GuestAgent } from "../qemu/qga.js";
import { QmpClient } from "../qemu/qmp.js";
import { rmSync } from "node:fs";
import {
  endGroup,
  isAlive,
  readPidFile,
  removePidFile,
  signal,
  waitForExit,
  type PidRecord,
} from "../qemu/process.js";
import type { RunPaths, RunState } from "./run-dir.js";
import { clearRuntimeFiles, readStateFile } from "./run-dir.js";
import { EngineError } from "../errors.js";
import type { EventSink } from "./events.js";

export async function killVm(pid: PidRecord): Promise<void> {
  if (!isAlive(pid)) return;
  signal(pid, "SIGKILL");
  await waitForExit(pid, 10_000);
  // And what it started (an exec: migration's cat), which may still hold the snapshot's files.
  await endGroup(pid.pid, 10_000);
}

/**
 * Ends a VM this process launched and is done with (a capture's, a failed
 * resume's): closes its monitor, kills it if it still runs, and removes its
 * pid file and sockets, so nothing stale stays in the run directory. The pid
 * file is removed only while it still names this VM: the next launch may
 * already have written its own.
 */
export async function endVm(vm: { pid: PidRecord; qmp: { close(): void } }, paths: RunPaths): Promise<void> {
  vm.qmp.close();
  await killVm(vm.pid);
  if (readPidFile(paths.pidFile)?.pid === vm.pid.pid) {
    removePidFile(paths.pidFile);
    rmSync(paths.qmpSocket, { force: true });
    rmSync(paths.qgaSocket, { force: true });
  }
}

/**
 * A live QEMU whose start never finished: the engine was killed while it
 * booted, captured or resumed, so no state.json was written after the QEMU
 * was launched. Such a VM is half set up (a capture VM, or one whose secrets
 * may not be rotated yet) and holds the ports: it is never handed out.
 */
export function leftByInterruptedStart(pid: PidRecord, state: RunState | undefined): boolean {
  if (!state) return true;
  const finished = Date.parse(state.startedAt);
  const launched = Date.parse(pid.startedAt);
  return Number.isFinite(finished) && Number.isFinite(launched) && finished < launched;
}

/**
 * Called with the run lock held, before a start or capture: refuses when a
 * finished start's emulator is running, and kills a QEMU an interrupted start
 * left behind. Returns the pid of the QEMU it killed.
 */
export async function reclaimRunDir(
  paths: RunPaths,
  running: (pid: number) => Error,
): Promise<number | undefined> {
  const pid = readPidFile(paths.pidFile);
  if (!pid || !isAlive(pid)) return undefined;
  const state = readStateFile(paths);
  if (state.state === "invalid") {
    // Unreadable is not "never written": the QEMU may be a healthy emulator.
    throw new EngineError(
      "RUN_STATE_INVALID",
      `${paths.state} cannot be trusted (${state.reason}); QEMU pid ${pid.pid} runs from ${paths.dir} and is left alone`,
      { hint: "stop it with hexclave-emulator stop, then start again" },
    );
  }
  if (!leftByInterruptedStart(pid, state.state === "ok" ? state.value : undefined)) throw running(pid.pid);
  await killVm(pid);
  clearRuntimeFiles(paths);
  return pid.pid;
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
