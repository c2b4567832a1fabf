/**
 * The guest steps after `cont`, run at once: the rotation and the host
 * share's mount are independent guest-execs (each returns a pid at once and
 * is polled), health is polled as soon as rotation exits. The
 * resume phases are timed as before; they overlap now, so their sum is more
 * than the wall time. Fatal (the contract's): a silent agent, a failed
 * contract-form mount, a failed rotation, unhealthy services. Optional: the
 * clock, the share's --path (see guest/clock.ts, guest/host-share.ts).
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

async function hostShareStep(
  ctx: EngineContext,
  vm: ResumedVm,
  agent: GuestAgent,
  phases: Phases,
): Promise<void> {
  const share = hostShareOf(ctx);
  if (!share) return;
  await phases.run("host-share", async () => {
    if (!vm.sharePlugged) await vm.qmp.execute("device_add", { ...HOSTFS_DEVICE });
    const driver = await waitForVirtioDriver(vm.qmp, HOSTFS_DEVICE.id, ctx.deps);
    const mounted = await mountHostShare(agent, share.path, ctx.deps, 20_000, driver);
    if (mounted.degraded) phases.skip("host-share-path", mounted.degraded);
  });
}

/**
 * Agent, then (rotation → health) ∥ (host share → clock). The first failure
 * ends the others: the agent is closed (its pending calls reject) and the
 * health poll is aborted, so nothing outlives the start.
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
    // Rotation first: it is the longest, and its guest-exec returns at once.
    // The clock after the share's mount: guest-set-time holds the agent
    // until the guest's hwclock exits, which would delay the mount's exec.
    // The clock before the rotation (services surely restarted with it) was
    // tried: under TCG it made QEMU 10's cache-hit start about 0.2 s slower.
    const [ready] = await Promise.all([
      step(finishGuest(ctx, agent, phases, healthTimeoutSec, secrets, both)),
      step(hostShareStep(ctx, vm, agent, phases).then(() => clockStep(ctx, agent, phases))),
    ]);
    return ready;
  } finally {
    agent.close();
  }
}
