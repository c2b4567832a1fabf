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
import type { EmulatorConfig } from "../src/engine/config/index.js";
import { resolveContext, type EngineContext } from "../src/engine/lifecycle/context.js";
import { ensureRunDir } from "../src/engine/lifecycle/run-dir.js";
import { createOverlay, ensurePhantoms, virtualSize } from "../src/engine/lifecycle/disks.js";
import { connectAgent, vmDirHost, writeRuntimeIso } from "../src/engine/lifecycle/boot.js";
import { planFor } from "../src/engine/lifecycle/plan.js";
import { launchVm } from "../src/engine/lifecycle/launch.js";
import { resumeState } from "../src/engine/lifecycle/migrate.js";
import { migrationSpec, SNAPSHOT_FILES } from "../src/engine/lifecycle/strategies.js";
import { killVm } from "../src/engine/lifecycle/stop.js";
import { buildQemuArgv, type QemuPlan } from "../src/engine/qemu/argv.js";
import type { QmpEvent } from "../src/engine/qemu/qmp.js";
import type { PublishedSnapshot } from "../src/engine/snapshot/index.js";
import { bareArgv, launchToGreeting, withClientQmp } from "./floor.js";
import { now, repeat, round, summarize, type Summary } from "./stats.js";
import type { BenchEnv } from "./setup.js";

export interface OverheadResult {
  strategy: string;
  /** The resume argv launched to its QMP greeting (no connect polling). */
  fullFloorMs: Summary;
  /** The bare binary (-machine none) launched to its QMP greeting, interleaved with the rest. */
  bareFloorMs: Summary;
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

/** A fresh session overlay on the snapshot's layer (a resumed guest must not see another run's writes). */
async function freshOverlay(ctx: EngineContext, snapshot: PublishedSnapshot): Promise<void> {
  const layer = join(snapshot.dir, SNAPSHOT_FILES.diskLayer);
  await createOverlay(
    ctx.qemuImg,
    ctx.paths.session,
    layer,
    await virtualSize(ctx.qemuImg, ctx.config.image),
  );
}

async function prepare(ctx: EngineContext, snapshot: PublishedSnapshot): Promise<QemuPlan> {
  const { config, paths } = ctx;
  const layer = join(snapshot.dir, SNAPSHOT_FILES.diskLayer);
  await freshOverlay(ctx, snapshot);
  ensurePhantoms(paths.phantoms);
  await writeRuntimeIso(ctx, vmDirHost(ctx));
  const ramFile = ctx.strategy === "template" ? join(snapshot.dir, SNAPSHOT_FILES.ram) : undefined;
  return planFor(ctx, "resume", { base: config.image, layer, session: paths.session }, ramFile);
}

export async function overheadSection(
  env: BenchEnv,
  config: EmulatorConfig,
  snapshot: PublishedSnapshot,
  runs: number,
  log: (m: string) => void,
): Promise<OverheadResult> {
  const ctx = await resolveContext(config);
  ensureRunDir(ctx.paths);
  const plan = await prepare(ctx, snapshot);
  const sock = join(ctx.paths.dir, "floor.sock");
  const floorArgv = withClientQmp([...buildQemuArgv(plan), "-S"], sock);
  const bareFloorArgv = withClientQmp(bareArgv(), sock);
  await launchToGreeting(ctx.qemu.binary, floorArgv, sock);
  const fullFloor: number[] = [];
  const bareFloor: number[] = [];

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
    bareFloor.push(await launchToGreeting(ctx.qemu.binary, bareFloorArgv, sock));
    fullFloor.push(await launchToGreeting(ctx.qemu.binary, floorArgv, sock));
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
      if (seen !== undefined) notice.push(seen);
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
    fullFloorMs: summarize(fullFloor),
    bareFloorMs: summarize(bareFloor),
    launchMs: summarize(launch),
    migrateMs: summarize(migrate),
    toRunningMs: summarize(launch.map((l, i) => l + (migrate[i] ?? 0))),
    resumeNoticeMs: summarize(notice),
    qmpRoundTripMs: summarize(qmpRtt),
    agentRoundTripMs: summarize(agentRtt),
  };
  log(
    `overhead: full floor ${result.fullFloorMs.median} ms, direct to running ${result.toRunningMs.median} ms, ` +
      `RESUME notice ${round(result.resumeNoticeMs.median, 3)} ms, QMP ${round(result.qmpRoundTripMs.median, 3)} ms, ` +
      `agent ${round(result.agentRoundTripMs.median, 3)} ms`,
  );
  return result;
}
