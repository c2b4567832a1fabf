/**
 * One start at a time per run directory: an exclusive flock on start.lock
 * (see snapshot/flock.ts), released by the kernel when the start's process
 * dies. A container killed mid-start (OOM, liveness) comes back as pid 1 with
 * the same host name; a lock judged by pid and host would look alive to it
 * for ever. The file's note ({pid, host, at}) is only for the message.
 */
import { hostname } from "node:os";
import { EngineError } from "../errors.js";
import { readLockNote, tryLockSync } from "../snapshot/flock.js";

export interface RunLock {
  release(): void;
}

function holderPid(path: string): number | undefined {
  try {
    const pid = (JSON.parse(readLockNote(path)) as { pid?: unknown }).pid;
    return typeof pid === "number" ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function acquireRunLock(path: string, runDir: string): RunLock {
  const lock = tryLockSync(path, "exclusive");
  if (lock === undefined || lock === "busy") {
    const pid = holderPid(path);
    throw new EngineError(
      "RUN_DIR_BUSY",
      `another start (${pid === undefined ? "a process" : `pid ${pid}`}) is using ${runDir}`,
      { hint: "wait for it, or give this emulator its own run directory (EMULATOR_RUN_DIR) and ports" },
    );
  }
  lock.write(JSON.stringify({ pid: process.pid, host: hostname(), at: new Date().toISOString() }));
  return { release: () => lock.remove() };
}
