/**
 * The Action's cache-hit job, as a runner runs it: the bundle (dist/) as a
 * Node process per step, against a local Actions cache service spoken to by
 * the real @actions/cache with Azure-style blob URLs (its SDK download path).
 * One job misses, captures and saves; then each run is a fresh runner layout
 * (other RUNNER_TEMP and workspace, an empty store) whose main step restores
 * the entry and resumes it. Startup is the Action's own `startup-seconds`
 * (step start, bundle load included, to healthy), split into the cache
 * restore and everything else (QEMU probe, key, resume, rotation, health).
 */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runPaths, stopVm } from "../src/engine/index.js";
import { ActionsCacheServer } from "../test/support/actions-cache-server.js";
import { newJob, runStep, type RunnerJob, type StepResult } from "../test/support/action-runner.js";
import type { BenchEnv } from "./setup.js";
import { summarize, summarizeRecords, type Summary } from "./stats.js";

export interface ActionFigures {
  ramMiB: number;
  /** The miss job: cold boot, capture, resume (startup), and its post step's save. */
  miss: { startupMs: number; postMs: number; entryBytes: number };
  /** Cache-hit jobs: startup-seconds, the restore phase, and startup minus restore. */
  hit: { startupMs: Summary; restoreMs: Summary; afterRestoreMs: Summary; mainWallMs: Summary };
  /** Every top-level phase the hit jobs logged (ms). */
  phases: Record<string, Summary>;
  failures: string[];
}

/** Port block 8 of the bench's range (the sharing section's extra guests use 1–8 only with 8 guests). */
const BLOCK = 8;

/** The Action's top-level phase lines (`name: 1.23 s`) of a step's log. */
export function phasesOf(stdout: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of stdout.split("\n")) {
    const m = /^([a-z][a-z0-9-]*): (\d+\.\d\d) s$/.exec(line);
    if (m) out[m[1]!] = (out[m[1]!] ?? 0) + Math.round(Number(m[2]) * 1000);
  }
  return out;
}

export async function actionSection(
  env: BenchEnv,
  ramMiB: number,
  runs: number,
  log: (m: string) => void,
): Promise<ActionFigures> {
  const server = await ActionsCacheServer.start({ blobHost: "azure" });
  const root = join(env.home, "action");
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const base = env.config({}, BLOCK).ports.dashboard;
  const inputs: Record<string, string> = {
    image: env.image,
    qemu: env.target.binary,
    ram: String(ramMiB),
    cpus: "1",
    "ready-timeout": "240",
    "dashboard-port": String(base),
    "backend-port": String(base + 1),
    "minio-port": String(base + 2),
    "inbucket-port": String(base + 3),
    "mock-oauth-port": String(base + 4),
  };
  const jobs: RunnerJob[] = [];
  const job = (name: string) => {
    const j = newJob(join(root, name), { env: server.clientEnv() });
    jobs.push(j);
    return j;
  };
  const step = async (j: RunnerJob, entry: "main" | "post", state?: Record<string, string>) => {
    const r: StepResult = await runStep(j, entry, { inputs, ...(state ? { state } : {}) });
    if (r.code !== 0) throw new Error(`${entry} step exited ${r.code}: ${r.stdout.slice(-2000)}`);
    return r;
  };
  const failures: string[] = [];
  try {
    const first = job("miss");
    const m = await step(first, "main");
    const p = await step(first, "post", m.state);
    const key = m.outputs["cache-key"] ?? "";
    const entryBytes = server.entryData(key)?.length ?? 0;
    if (entryBytes === 0) throw new Error(`the miss job saved no entry ${key}: ${p.stdout.slice(-2000)}`);
    const miss = {
      startupMs: Math.round(Number(m.outputs["startup-seconds"]) * 1000),
      postMs: p.ms,
      entryBytes,
    };
    log(`action: miss job ${miss.startupMs} ms, entry ${(entryBytes / 1048576).toFixed(1)} MiB`);

    const startup: number[] = [];
    const restore: number[] = [];
    const wall: number[] = [];
    const phases: Record<string, number>[] = [];
    for (let i = 0; i < runs + 2 && startup.length < runs; i++) {
      const j = job(`hit-${i}`);
      try {
        const main = await step(j, "main");
        if (main.outputs["cache-state"] !== "hit" || main.outputs["boot-mode"] !== "resume")
          throw new Error(
            `a hit job was ${main.outputs["cache-state"]}/${main.outputs["boot-mode"]}: ${main.outputs["fallback-reason"]}`,
          );
        const ph = phasesOf(main.stdout);
        startup.push(Math.round(Number(main.outputs["startup-seconds"]) * 1000));
        restore.push(ph["cache-restore"] ?? Number.NaN);
        wall.push(main.ms);
        phases.push(ph);
        await step(j, "post", main.state);
      } catch (err) {
        failures.push(err instanceof Error ? err.message.split("\n")[0]! : String(err));
      }
    }
    if (startup.length === 0) throw new Error(`every cache-hit job failed; first: ${failures[0] ?? "?"}`);
    log(`action: cache-hit startup ${startup.join(", ")} ms (restore ${restore.join(", ")})`);
    return {
      ramMiB,
      miss,
      hit: {
        startupMs: summarize(startup),
        restoreMs: summarize(restore),
        afterRestoreMs: summarize(startup.map((s, i) => s - restore[i]!)),
        mainWallMs: summarize(wall),
      },
      phases: summarizeRecords(phases),
      failures,
    };
  } finally {
    for (const j of jobs) {
      await stopVm(runPaths(join(j.temp, "hexclave-emulator", "run")), 5).catch(() => undefined);
    }
    await server.close();
    rmSync(root, { recursive: true, force: true });
  }
}
