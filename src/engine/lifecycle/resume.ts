/**
 * Resume: a fresh session overlay on the snapshot's disk layer, QEMU with
 * `-incoming defer -S`, the state migrated in, the host share's device
 * plugged and the agent's socket opened while the guest is still paused,
 * then `cont`. The guest steps after it are in post-resume.ts.
 */
import type { PublishedSnapshot } from "../snapshot/store.js";
import { EngineError } from "../errors.js";
import type { EngineContext } from "./context.js";
import type { Phases } from "./events.js";
import type { LaunchedVm } from "./launch.js";
import { createOverlay, ensurePhantoms, qcow2VirtualSize, virtualSize } from "./disks.js";
import { settledAll } from "../settle.js";
import { forwardedPorts, hostShareOf, planFor } from "./plan.js";
import { SNAPSHOT_FILES, migrationSpec } from "./strategies.js";
import { resumeState } from "./migrate.js";
import { vmDirHost, writeRuntimeIso } from "./boot.js";
import { GuestAgent } from "../qemu/qga.js";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { isAlive } from "../qemu/process.js";
import { QmpClosedError } from "../qemu/protocol-errors.js";

/** A failure that says the snapshot itself is bad: it is quarantined. */
export class SnapshotUnusableError extends EngineError {}

/** A resumed VM, with what was done for the guest before `cont`. */
export interface ResumedVm extends LaunchedVm {
  /** The agent's socket, opened while paused (not yet synchronised). */
  earlyAgent?: Promise<GuestAgent> | undefined;
  /** The 9p device was hot-plugged before `cont`. */
  sharePlugged?: boolean | undefined;
}

export const HOSTFS_DEVICE = {
  driver: "virtio-9p-pci",
  id: "hostfs-dev",
  fsdev: "hostfs",
  mount_tag: "hostfs",
  bus: "hostfs-port",
} as const;

/** `use`: the snapshot's use lock (SnapshotStore.use), handed to QEMU to hold while it runs. */
export async function resumeVm(
  ctx: EngineContext,
  snapshot: PublishedSnapshot,
  phases: Phases,
  use?: { fd: number },
): Promise<ResumedVm> {
  const { config, paths } = ctx;
  const layer = join(snapshot.dir, SNAPSHOT_FILES.diskLayer);
  await phases.run("resume-prepare", async () => {
    ensurePhantoms(paths.phantoms);
    // Independent of each other: the overlay (its size from the layer's own
    // header, which has the image's), the runtime ISO and the port check.
    const size = qcow2VirtualSize(layer) ?? (await virtualSize(ctx.qemuImg, config.image));
    await settledAll([
      createOverlay(ctx.qemuImg, paths.session, layer, size),
      writeRuntimeIso(ctx, vmDirHost(ctx)),
      ctx.deps.checkPorts(config.bindAddress, forwardedPorts(ctx)),
    ]);
  });
  const ramFile = ctx.strategy === "template" ? join(snapshot.dir, SNAPSHOT_FILES.ram) : undefined;
  const plan = {
    ...planFor(ctx, "resume", { base: config.image, layer, session: paths.session }, ramFile),
    holdFds: use ? [use.fd] : [],
  };
  const vm = await phases.run("resume-launch", () => ctx.deps.launch(ctx.qemu.binary, plan, paths));
  const spec = migrationSpec(ctx.strategy, ctx.qemu, snapshot.dir, plan.cpus);
  const resumed: ResumedVm = vm;
  // While paused: the guest sees the device at `cont` (its driver binds
  // during the agent's wake-up), and the agent's socket is open already.
  // Neither failing is the snapshot's fault: both are retried after `cont`.
  const whilePaused = async (): Promise<void> => {
    resumed.earlyAgent = GuestAgent.connect(paths.qgaSocket, { timeoutMs: 10_000 });
    resumed.earlyAgent.catch(() => undefined);
    if (!hostShareOf(ctx)) return;
    resumed.sharePlugged = await vm.qmp.execute("device_add", { ...HOSTFS_DEVICE }).then(
      () => true,
      () => false,
    );
  };
  try {
    await phases.run("resume-migrate", () => resumeState(vm.qmp, spec, 5 * 60_000, whilePaused));
  } catch (err) {
    void resumed.earlyAgent?.then(
      (a) => a.close(),
      () => undefined,
    );
    const killed = await killedFromOutside(vm, err);
    if (killed) {
      // Not the snapshot's fault: it is kept, and this start falls back.
      throw new EngineError("QEMU_KILLED", `QEMU was killed (${killed}) while the snapshot was loading`, {
        hint: "something outside the engine signalled QEMU (OOM killer, a CI timeout, a user)",
        cause: err,
      });
    }
    throw new SnapshotUnusableError(
      "SNAPSHOT_RESUME_FAILED",
      `the snapshot did not load: ${(err as Error).message}`,
      {
        hint: "it is quarantined; the next start captures a new one",
        cause: err,
      },
    );
  }
  return resumed;
}

/** Signals that come from outside QEMU (a crash while loading a bad stream would be SIGSEGV/SIGABRT or an exit). */
const EXTERNAL_SIGNALS = new Set(["SIGKILL", "SIGTERM", "SIGINT", "SIGHUP"]);

async function killedFromOutside(vm: LaunchedVm, err: unknown): Promise<string | undefined> {
  // A closed monitor means QEMU is going away: give it a moment to be reaped.
  if (!(err instanceof QmpClosedError) && isAlive(vm.pid)) return undefined;
  const exit = await Promise.race([vm.exited, delay(1000).then(() => undefined)]).catch(() => undefined);
  return exit?.signal && EXTERNAL_SIGNALS.has(exit.signal) ? exit.signal : undefined;
}
