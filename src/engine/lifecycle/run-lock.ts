/** One start at a time per run directory: an O_EXCL lock file naming its holder. */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { EngineError } from "../errors.js";

export interface RunLock {
  release(): void;
}

function holderAlive(path: string): { pid: number; alive: boolean } | undefined {
  try {
    const holder = JSON.parse(readFileSync(path, "utf8")) as { pid: number; host: string };
    if (holder.host !== hostname()) return { pid: holder.pid, alive: true };
    try {
      process.kill(holder.pid, 0);
      return { pid: holder.pid, alive: true };
    } catch (err) {
      return { pid: holder.pid, alive: (err as NodeJS.ErrnoException).code === "EPERM" };
    }
  } catch {
    return undefined;
  }
}

export function acquireRunLock(path: string, runDir: string): RunLock {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), at: new Date().toISOString() }));
      closeSync(fd);
      return { release: () => rmSync(path, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = holderAlive(path);
      if (holder?.alive) {
        throw new EngineError("RUN_DIR_BUSY", `another start (pid ${holder.pid}) is using ${runDir}`, {
          hint: "wait for it, or give this emulator its own run directory (EMULATOR_RUN_DIR) and ports",
        });
      }
      rmSync(path, { force: true }); // stale: its process is gone
    }
  }
  throw new EngineError("RUN_DIR_BUSY", `could not lock ${runDir}`, { hint: "retry" });
}
