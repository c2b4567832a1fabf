/**
 * Resume time as guest RAM grows: template (the RAM file is mapped, so the
 * resume should stay flat) against stream (every page is read back). One
 * capture per size and strategy (reused when the capture section made it);
 * then the resumes run in rounds over every size, so that the load of a
 * shared machine drifts over all sizes alike. For the template strategy
 * each round also launches the resume argv of that size to its QMP greeting
 * (what QEMU alone costs at that size), and the transport figures are taken
 * at every size: packSnapshot reads only the allocated extents, plain
 * `zstd -1` reads the whole file.
 */
import { join } from "node:path";
import {
  buildQemuArgv,
  captureOnly,
  ensureRunDir,
  openSnapshotStore,
  resolveContext,
  type PublishedSnapshot,
  type StartResult,
  type Strategy,
} from "../src/engine/index.js";
import { now, round, summarize, type Summary } from "./stats.js";
import { resumeOnce, toRunningMs } from "./resume.js";
import { measureTransport, snapshotSize, type SnapshotSize, type TransportFigures } from "./transport.js";
import { launchTimes, summarizeLaunches, withQmpAt, type FloorFigures, type LaunchTimes } from "./floor.js";
import { prepareResume } from "./direct.js";
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
  /** Template: the resume argv of this size, launch → QMP greeting and → first reply. */
  floor: FloorFigures | undefined;
  transport: TransportFigures | undefined;
  /** Resumes that failed, with why. */
  failures: string[];
}

interface Prepared {
  strategy: Strategy;
  ramMiB: number;
  captureMs: number | undefined;
  snapshot: PublishedSnapshot;
  transport: TransportFigures | undefined;
  floor: (() => Promise<LaunchTimes>) | undefined;
  results: StartResult[];
  floors: LaunchTimes[];
  failures: string[];
}

async function preparePoint(
  env: BenchEnv,
  strategy: Strategy,
  ramMiB: number,
  scratch: string,
): Promise<Prepared> {
  const config = env.config({ strategy, ramMiB, snapshotRamMiB: ramMiB });
  const t0 = now();
  const cap = await captureOnly(config, () => undefined);
  const captureMs = cap.skipped ? undefined : round(now() - t0);
  await env.kill(config);
  const snapshot = await openSnapshotStore(config.snapshotDir).lookup(cap.key);
  if (!snapshot) throw new Error(`no snapshot ${cap.key} after capture`);
  let transport: TransportFigures | undefined;
  let floor: Prepared["floor"];
  if (strategy === "template") {
    transport = await measureTransport(
      snapshot.dir,
      join(snapshot.dir, "ram.bin"),
      join(scratch, "transport"),
      {
        unpack: false,
        level1: true,
      },
    );
    // Its own run dir and ports (block 8): the floor QEMU never runs the guest.
    const ctx = await resolveContext(
      env.config({ strategy, ramMiB, snapshotRamMiB: ramMiB }, 8, `floor-${ramMiB}`),
    );
    ensureRunDir(ctx.paths);
    const sock = join(ctx.paths.dir, "floor.sock");
    const argv = withQmpAt([...buildQemuArgv(await prepareResume(ctx, snapshot)), "-S"], sock);
    floor = () => launchTimes(ctx.qemu.binary, argv, sock);
    await floor(); // unmeasured: loads the binary and the file's pages
  }
  return { strategy, ramMiB, captureMs, snapshot, transport, floor, results: [], floors: [], failures: [] };
}

export async function scalingSection(
  env: BenchEnv,
  strategies: Strategy[],
  sizesMiB: number[],
  runs: number,
  scratch: string,
  log: (m: string) => void,
): Promise<ScalingPoint[]> {
  const points: Prepared[] = [];
  for (const strategy of strategies) {
    for (const size of sizesMiB) {
      const p = await preparePoint(env, strategy, size, scratch);
      const t = p.transport;
      log(
        `scaling ${strategy} ${size} MiB ready` +
          (t ? `: pack ${t.packMs} ms (level 1 ${t.packLevel1Ms} ms) vs zstd -1 ${t.plainZstd1?.ms} ms` : ""),
      );
      points.push(p);
    }
  }
  for (let r = 0; r < runs; r++) {
    for (const p of points) {
      if (p.floor) p.floors.push(await p.floor());
      try {
        p.results.push(
          await resumeOnce(
            env,
            env.config({ strategy: p.strategy, ramMiB: p.ramMiB, snapshotRamMiB: p.ramMiB }),
          ),
        );
      } catch (err) {
        p.failures.push((err as Error).message.split("\n")[0] ?? String(err));
      }
    }
    log(
      `scaling round ${r + 1}/${runs}: ` +
        points
          .map(
            (p) => `${p.strategy} ${p.ramMiB} ${p.results.at(-1) ? toRunningMs(p.results.at(-1)!) : "-"} ms`,
          )
          .join(", "),
    );
  }
  return points.map((p) => ({
    strategy: p.strategy,
    ramMiB: p.ramMiB,
    captureMs: p.captureMs,
    size: snapshotSize(p.snapshot.dir),
    toRunning: summarize(p.results.map(toRunningMs)),
    resumeLaunch: summarize(p.results.map((r) => r.timings["resume-launch"] ?? Number.NaN)),
    resumeMigrate: summarize(p.results.map((r) => r.timings["resume-migrate"] ?? Number.NaN)),
    toHealthy: summarize(p.results.map((r) => r.totalMs)),
    floor: p.floor ? summarizeLaunches(p.floors) : undefined,
    transport: p.transport,
    failures: p.failures,
  }));
}
