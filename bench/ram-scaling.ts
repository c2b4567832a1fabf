/**
 * Resume time as guest RAM grows: template (the RAM file is mapped, so the
 * resume should stay flat) against stream (every page is read back). One
 * capture per size and strategy (reused when the capture section made it),
 * then N resumes with rotation through start(). For the template strategy
 * the transport figures are taken at every size too: packSnapshot reads
 * only the allocated extents, plain `zstd -1` reads the whole file.
 */
import { join } from "node:path";
import { captureOnly } from "../src/engine/lifecycle/capture-verb.js";
import { openSnapshotStore } from "../src/engine/snapshot/index.js";
import type { Strategy } from "../src/engine/qemu/argv.js";
import { now, repeatTolerant, round, summarize, type Summary } from "./stats.js";
import { resumeOnce, toRunningMs } from "./resume.js";
import { measureTransport, snapshotSize, type SnapshotSize, type TransportFigures } from "./transport.js";
import type { BenchEnv } from "./setup.js";

export interface ScalingPoint {
  strategy: Strategy;
  ramMiB: number;
  /** undefined when the capture section's snapshot was reused. */
  captureMs: number | undefined;
  size: SnapshotSize;
  toRunning: Summary;
  resumeLaunch: Summary;
  resumeMigrate: Summary;
  toHealthy: Summary;
  transport: TransportFigures | undefined;
  /** Resumes that failed (and were retried), with why. */
  failures: string[];
}

export async function scalingPoint(
  env: BenchEnv,
  strategy: Strategy,
  ramMiB: number,
  runs: number,
  scratch: string,
  log: (m: string) => void,
): Promise<ScalingPoint> {
  const config = env.config({ strategy, ramMiB, snapshotRamMiB: ramMiB });
  const t0 = now();
  const cap = await captureOnly(config, () => undefined);
  const captureMs = cap.skipped ? undefined : round(now() - t0);
  await env.kill(config);
  const snapshot = await openSnapshotStore(config.snapshotDir).lookup(cap.key);
  if (!snapshot) throw new Error(`no snapshot ${cap.key} after capture`);
  const failures: string[] = [];
  const results = await repeatTolerant(runs, async () => resumeOnce(env, config), failures);
  const transport =
    strategy === "template"
      ? await measureTransport(snapshot.dir, join(snapshot.dir, "ram.bin"), join(scratch, "transport"), {
          unpack: false,
          level1: true,
        })
      : undefined;
  const point: ScalingPoint = {
    strategy,
    ramMiB,
    captureMs,
    size: snapshotSize(snapshot.dir),
    toRunning: summarize(results.map(toRunningMs)),
    resumeLaunch: summarize(results.map((r) => r.timings["resume-launch"] ?? Number.NaN)),
    resumeMigrate: summarize(results.map((r) => r.timings["resume-migrate"] ?? Number.NaN)),
    toHealthy: summarize(results.map((r) => r.totalMs)),
    transport,
    failures,
  };
  log(
    `scaling ${strategy} ${ramMiB} MiB: running ${point.toRunning.median} ms` +
      (transport ? `, pack ${transport.packMs} ms vs zstd -1 ${transport.plainZstd1?.ms} ms` : ""),
  );
  return point;
}

export async function scalingSection(
  env: BenchEnv,
  strategies: Strategy[],
  sizesMiB: number[],
  runs: number,
  scratch: string,
  log: (m: string) => void,
): Promise<ScalingPoint[]> {
  const out: ScalingPoint[] = [];
  for (const strategy of strategies) {
    for (const size of sizesMiB) out.push(await scalingPoint(env, strategy, size, runs, scratch, log));
  }
  return out;
}
