/**
 * QEMU's process as the engine supervises it: a pid file that also records
 * the process start time (so a recycled pid is never mistaken for our QEMU),
 * liveness checks, and signals with a bounded wait.
 */
import { readFileSync, readdirSync, writeFileSync, rmSync, renameSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";

export interface PidRecord {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot); undefined off Linux. */
  startTicks?: number | undefined;
  binary: string;
  startedAt: string;
}

export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

export function writePidFile(path: string, record: PidRecord): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(record) + "\n", { mode: 0o600 });
  renameSync(tmp, path);
}

export function readPidFile(path: string): PidRecord | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as PidRecord;
    return Number.isInteger(parsed.pid) && parsed.pid > 0 ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export function removePidFile(path: string): void {
  rmSync(path, { force: true });
}

/** True when the pid is alive AND is the process the record describes. */
export function isAlive(record: PidRecord): boolean {
  try {
    process.kill(record.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (record.startTicks === undefined) return true;
  const now = processStartTicks(record.pid);
  if (now === undefined) return true;
  if (now !== record.startTicks) return false;
  // A zombie (exited, not yet reaped by its parent) is gone for our purposes.
  try {
    const state = readFileSync(`/proc/${record.pid}/stat`, "utf8");
    return state.slice(state.lastIndexOf(")") + 2, state.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Waits until the process is gone or the deadline passes; polls every 20 ms. */
export async function waitForExit(record: PidRecord, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(record)) {
    if (Date.now() >= deadline) return false;
    await delay(20);
  }
  return true;
}

export function signal(record: PidRecord, sig: NodeJS.Signals): void {
  if (!isAlive(record)) return;
  try {
    process.kill(record.pid, sig);
  } catch {
    /* already gone */
  }
}

/**
 * Ends what is left of the process group of a QEMU this engine launched and
 * has just killed. QEMU runs in a session of its own (spawnDetached), so what
 * it started, an `exec:` migration's `sh -c "cat > file"` (QEMU before 8.2),
 * is in its group and can hold a snapshot's files open after QEMU is gone.
 * Waits until no live member is left (zombies hold no files); false if one
 * outlived the wait. Only for a QEMU known to have been ours and alive just
 * now: its pid cannot name another group while members of its own remain.
 */
export async function endGroup(pgid: number, timeoutMs: number): Promise<boolean> {
  if (pgid <= 1) return true;
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    return true; // no group left (ESRCH)
  }
  const deadline = Date.now() + timeoutMs;
  while (hasLiveMember(pgid)) {
    if (Date.now() >= deadline) return false;
    await delay(20);
  }
  return true;
}

/** A process of group `pgid` that is not a zombie (Linux /proc; elsewhere the kill has to do). */
function hasLiveMember(pgid: number): boolean {
  if (process.platform !== "linux") return false;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // After "pid (comm) ": state, ppid, pgrp, …
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(pgrp) === pgid && state !== "Z") return true;
    } catch {
      /* gone meanwhile */
    }
  }
  return false;
}
