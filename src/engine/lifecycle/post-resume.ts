/**
 * The guest steps after `cont`. The clock comes first, so that the services
 * the rotation restarts start with the right time, not the capture's (a
 * backend that stamps or checks tokens at start would otherwise be behind by
 * the snapshot's age until the clock is set). Then the rotation and the host
 * share's mount run side by side: independent guest-execs (each returns a
 * pid at once and is polled); health is polled as soon as rotation exits.
 * The share's hot-plug and driver wait are QMP's, so they overlap the clock.
 * The phases overlap, so their sum is more than the wall time. Fatal (the
 * contract's): a silent agent, a failed contract-form mount, a failed
 * rotation, unhealthy services. Optional: the clock, the share's --path (see
 * guest/clock.ts, guest/host-share.ts).
 */
import type { GuestAgent } from "../qemu/qga.js";
import type { RotatedSecrets } from "../guest/rotation.js";
import { mountHostShare, waitForVirtioDriver } from "../guest/host-share.js";
import type { EngineContext } from "./context.js";
import type { Phases } from "./events.js";
import { connectAgent, finishGuest, type GuestReady } from "./boot.js";
import { hostShareOf } from "./plan.js";
import { HOSTFS_DEVICE, type ResumedVm } from "./resume.js";

/** The agent: the socket opened before `cont` when there is one, then its first sync. */
async function readyAgent(ctx: EngineContext, vm: ResumedVm, timeoutMs: number): Promise<GuestAgent> {
  const early = await vm.earlyAgent?.catch(() => undefined);
  if (!early) return connectAgent(ctx, timeoutMs);
  try {
    await early.waitUntilReady({ timeoutMs });
    return early;
  } catch (err) {
    early.close();
    throw err;
  }
}

async function clockStep(ctx: EngineContext, agent: GuestAgent, phases: Phases): Promise<void> {
  const clock = await phases.run("clock", () => ctx.deps.syncClock(agent));
  if (clock.method === "none") phases.skip("clock", `the guest clock was not set (${clock.reason})`);
}

/** The share: hot-plugged and its driver awaited over QMP, then mounted through the agent once `agentFree`. */
async function hostShareStep(
  ctx: EngineContext,
  vm: ResumedVm,
  agent: GuestAgent,
  phases: Phases,
  agentFree: Promise<void>,
): Promise<void> {
  const share = hostShareOf(ctx);
  if (!share) return;
  await phases.run("host-share", async () => {
    if (!vm.sharePlugged) await vm.qmp.execute("device_add", { ...HOSTFS_DEVICE });
    const driver = await waitForVirtioDriver(vm.qmp, HOSTFS_DEVICE.id, ctx.deps);
    await agentFree;
    const mounted = await mountHostShare(agent, share.path, ctx.deps, 20_000, driver);
    if (mounted.degraded) phases.skip("host-share-path", mounted.degraded);
  });
}

/**
 * Agent, clock, then (rotation → health) ∥ host share's mount. The first
 * failure ends the others: the agent is closed (its pending calls reject) and
 * the health poll is aborted, so nothing outlives the start.
 */
export async function settleResumedGuest(
  ctx: EngineContext,
  vm: ResumedVm,
  phases: Phases,
  healthTimeoutSec: number,
  secrets?: RotatedSecrets,
  signal?: AbortSignal,
): Promise<GuestReady> {
  const agent = await phases.run("agent", () => readyAgent(ctx, vm, 30_000));
  const failed = new AbortController();
  const both = signal ? AbortSignal.any([signal, failed.signal]) : failed.signal;
  const step = <T>(p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      failed.abort(err);
      throw err;
    });
  try {
    // guest-set-time holds the agent until the guest's hwclock exits, so the
    // rotation's and the mount's execs wait for it. Under TCG this order is
    // also the quicker one: the clock's fork warms the code the rotation's
    // shell runs, instead of competing with it for the one vCPU.
    const clocked = step(clockStep(ctx, agent, phases));
    const [ready] = await Promise.all([
      clocked.then(() => step(finishGuest(ctx, agent, phases, healthTimeoutSec, secrets, both))),
      step(hostShareStep(ctx, vm, agent, phases, clocked)),
    ]);
    return ready;
  } finally {
    agent.close();
  }
}
