/**
 * The engine's own overhead, and the floors it is measured against:
 * - the full floor: the resume argv itself (`-incoming defer -S`) launched
 *   to its QMP greeting, i.e. what QEMU costs before any engine step;
 * - an instrumented resume with the engine's pieces (launchVm, resumeState):
 *   launch to QMP ready, migration + `cont`, and the time from QEMU's RESUME
 *   event (its own timestamp) to the engine's handler seeing it;
 * - QMP and guest-agent round trips on the running guest.
 */
import { join } from "node:path";
import {
  buildQemuArgv,
  connectAgent,
  ensureRunDir,
  killVm,
  launchVm,
  migrationSpec,
  resolveContext,
  resumeState,
  type EmulatorConfig,
  type PublishedSnapshot,
  type QmpEvent,
} from "../src/engine/index.js";
import {
  bareArgv,
  launchTimes,
  summarizeLaunches,
  withQmpAt,
  type FloorFigures,
  type LaunchTimes,
} from "./floor.js";
import { now, repeat, round, summarize, type Summary } from "./stats.js";
import type { BenchEnv } from "./setup.js";
import { freshOverlay, prepareResume } from "./direct.js";

export interface OverheadResult {
  strategy: string;
  /** The resume argv launched to its QMP greeting, and to its first reply (floor.ts). */
  fullFloor: FloorFigures;
  /** The bare binary (-machine none), the same, interleaved with the rest. */
  bareFloor: FloorFigures;
  /** launchVm: spawn to QMP negotiated, as the engine does it (connect retried every 20 ms). */
  launchMs: Summary;
  /** resumeState: capabilities, incoming migration, `cont`, RESUME seen. */
  migrateMs: Summary;
  toRunningMs: Summary;
  /** QEMU's RESUME timestamp to the engine's handler running (wall clocks of one host). */
  resumeNoticeMs: Summary;
  qmpRoundTripMs: Summary;
  agentRoundTripMs: Summary;
}

const wallMs = (): number => performance.timeOrigin + performance.now();
const eventMs = (e: QmpEvent): number => e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;

export async function overheadSection(
  env: BenchEnv,
  config: EmulatorConfig,
  snapshot: PublishedSnapshot,
  runs: number,
  log: (m: string) => void,
): Promise<OverheadResult> {
  const ctx = await resolveContext(config);
  ensureRunDir(ctx.paths);
  const plan = await prepareResume(ctx, snapshot);
  const sock = join(ctx.paths.dir, "floor.sock");
  const floorArgv = withQmpAt([...buildQemuArgv(plan), "-S"], sock);
  const bareFloorArgv = withQmpAt(bareArgv(), sock);
  await launchTimes(ctx.qemu.binary, floorArgv, sock);
  const fullFloor: LaunchTimes[] = [];
  const bareFloor: LaunchTimes[] = [];

  const spec = migrationSpec(ctx.strategy, ctx.qemu, snapshot.dir, plan.cpus);
  const launch: number[] = [];
  const migrate: number[] = [];
  const notice: number[] = [];
  let qmpRtt: number[] = [];
  let agentRtt: number[] = [];
  for (let i = 0; i < runs; i++) {
    const last = i === runs - 1;
    // The floors and the resume are interleaved, so that a change of load
    // on this shared machine hits all three alike.
    bareFloor.push(await launchTimes(ctx.qemu.binary, bareFloorArgv, sock));
    fullFloor.push(await launchTimes(ctx.qemu.binary, floorArgv, sock));
    if (i > 0) await freshOverlay(ctx, snapshot);
    const t0 = now();
    const vm = await launchVm(ctx.qemu.binary, plan, ctx.paths);
    env.track(vm.pid);
    try {
      const t1 = now();
      let seen: number | undefined;
      vm.qmp.on("RESUME", (e) => {
        seen ??= wallMs() - eventMs(e);
      });
      await resumeState(vm.qmp, spec, 5 * 60_000);
      const t2 = now();
      launch.push(t1 - t0);
      migrate.push(t2 - t1);
      // performance.now() does not count time the machine was paused, the wall clock
      // does: after a pause or a clock step the two disagree, and the sample would
      // measure that, not the notice. Such a sample is left out, and said.
      const skew = Date.now() - wallMs();
      if (seen !== undefined && Math.abs(skew) < 50) notice.push(seen);
      else if (seen !== undefined)
        log(
          `overhead: RESUME notice sample left out: the wall clock moved ${Math.round(skew)} ms against the monotonic one`,
        );
      if (last) {
        qmpRtt = await repeat(200, async () => {
          const s = now();
          await vm.qmp.execute("query-status");
          return now() - s;
        });
        const agent = await connectAgent(ctx, 60_000);
        try {
          agentRtt = await repeat(50, async () => {
            const s = now();
            await agent.ping({ timeoutMs: 10_000 });
            return now() - s;
          });
        } finally {
          agent.close();
        }
      }
    } finally {
      vm.qmp.close();
      await killVm(vm.pid);
    }
  }
  const result: OverheadResult = {
    strategy: ctx.strategy,
    fullFloor: summarizeLaunches(fullFloor),
    bareFloor: summarizeLaunches(bareFloor),
    launchMs: summarize(launch),
    migrateMs: summarize(migrate),
    toRunningMs: summarize(launch.map((l, i) => l + (migrate[i] ?? 0))),
    resumeNoticeMs: summarize(notice),
    qmpRoundTripMs: summarize(qmpRtt),
    agentRoundTripMs: summarize(agentRtt),
  };
  log(
    `overhead: floor ${result.fullFloor.greetingMs.median} ms (ready ${result.fullFloor.readyMs.median} ms), direct to running ${result.toRunningMs.median} ms, ` +
      `RESUME notice ${round(result.resumeNoticeMs.median, 3)} ms, QMP ${round(result.qmpRoundTripMs.median, 3)} ms, ` +
      `agent ${round(result.agentRoundTripMs.median, 3)} ms`,
  );
  return result;
}
