/**
 * Resume through the engine's own start(), per strategy, with and without
 * rotation: to running (QEMU launched to `cont` done: resume-launch +
 * resume-migrate) and to all-healthy (the whole start()), with every phase.
 */
import { start, type EmulatorConfig, type StartResult, type Strategy } from "../src/engine/index.js";
import { repeatTolerant, summarize, summarizeRecords, type Summary } from "./stats.js";
import type { BenchEnv } from "./setup.js";

export interface ResumeResult {
  strategy: Strategy;
  rotation: boolean;
  ramMiB: number;
  /** QEMU launched to `cont` done. */
  toRunning: Summary;
  /** start() from call to every service healthy. */
  toHealthy: Summary;
  phases: Record<string, Summary>;
  /** Runs that failed (and were retried), with why. */
  failures: string[];
}

/** resume-launch + resume-migrate: the process start, the incoming migration and `cont`. */
export const toRunningMs = (r: StartResult): number =>
  (r.timings["resume-launch"] ?? Number.NaN) + (r.timings["resume-migrate"] ?? Number.NaN);

/** One start() that must resume (never capture, never fall back), killed afterwards. */
export async function resumeOnce(env: BenchEnv, config: EmulatorConfig): Promise<StartResult> {
  try {
    const r = await start({ ...config, snapshot: "required" });
    if (r.bootMode !== "resume" || r.captured) throw new Error(`expected a plain resume, got ${r.bootMode}`);
    return r;
  } finally {
    await env.kill(config);
  }
}

export async function resumeSection(
  env: BenchEnv,
  strategy: Strategy,
  rotation: boolean,
  ramMiB: number,
  runs: number,
  log: (m: string) => void,
): Promise<ResumeResult> {
  const config = env.config({ strategy, rotation, ramMiB, snapshotRamMiB: ramMiB });
  const failures: string[] = [];
  const results = await repeatTolerant(
    runs,
    async (i) => {
      const r = await resumeOnce(env, config);
      log(
        `resume ${strategy} ${rotation ? "with" : "without"} rotation run ${i + 1}/${runs}: ` +
          `running ${toRunningMs(r)} ms, healthy ${r.totalMs} ms`,
      );
      return r;
    },
    failures,
  );
  return {
    failures,
    strategy,
    rotation,
    ramMiB,
    toRunning: summarize(results.map(toRunningMs)),
    toHealthy: summarize(results.map((r) => r.totalMs)),
    phases: summarizeRecords(results.map((r) => r.timings)),
  };
}
