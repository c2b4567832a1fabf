/** Cold boot to all-healthy: start() with snapshot=never, on a fresh overlay every run. */
import { rmSync } from "node:fs";
import { runPaths, start } from "../src/engine/index.js";
import { repeatTolerant, summarize, summarizeRecords, type Summary } from "./stats.js";
import type { BenchEnv } from "./setup.js";

export interface ColdResult {
  ramMiB: number;
  /** start() from call to every service healthy (rotation included). */
  totalMs: Summary;
  phases: Record<string, Summary>;
  /** Runs that failed (and were retried), with why. */
  failures: string[];
}

export async function coldSection(
  env: BenchEnv,
  ramMiB: number,
  runs: number,
  log: (m: string) => void,
): Promise<ColdResult> {
  const config = env.config({ snapshot: "never", ramMiB, snapshotRamMiB: ramMiB }, 0, "cold");
  const failures: string[] = [];
  const results = await repeatTolerant(
    runs,
    async (i) => {
      // A reused overlay would boot a disk the previous (killed) run left dirty.
      const paths = runPaths(config.runDir);
      rmSync(paths.session, { force: true });
      rmSync(paths.sessionFingerprint, { force: true });
      try {
        const r = await start(config);
        if (r.bootMode !== "cold") throw new Error(`expected a cold boot, got ${r.bootMode}`);
        log(`cold boot ${ramMiB} MiB run ${i + 1}/${runs}: ${r.totalMs} ms`);
        return r;
      } finally {
        await env.kill(config);
      }
    },
    failures,
  );
  return {
    failures,
    ramMiB,
    totalMs: summarize(results.map((r) => r.totalMs)),
    phases: summarizeRecords(results.map((r) => r.timings)),
  };
}
