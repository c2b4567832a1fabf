/**
 * Capture: cold-boot the snapshot layout with its disk writes going into a
 * new layer, wait until every service is healthy and the agent answers,
 * migrate the state out, quit, and publish the snapshot atomically.
 */
import type { SnapshotStore, PublishedSnapshot } from "../snapshot/store.js";
import type { SnapshotKeyParts } from "../snapshot/key.js";
import { waitForHealthy, servicesFor, probeHost } from "../guest/health.js";
import type { EngineContext } from "./context.js";
import type { Phases } from "./events.js";
import { tailFile, whileRunning } from "./launch.js";
import { createOverlay, ensurePhantoms, virtualSize } from "./disks.js";
import { forwardedPorts, planFor } from "./plan.js";
import { SNAPSHOT_FILES, migrationSpec } from "./strategies.js";
import { captureState, MigrationError } from "./migrate.js";
import { writeRuntimeIso, connectAgent } from "./boot.js";
import { endVm } from "./stop.js";
import { ENGINE_VERSION } from "../version.js";
import { waitForExit } from "../qemu/process.js";
import { EngineError, TimeoutError, describeError } from "../errors.js";
import { rmSync } from "node:fs";
import { statfs } from "node:fs/promises";
import type { QemuPlan } from "../qemu/argv.js";
import type { LaunchedVm } from "./launch.js";
import type { GuestAgent } from "../qemu/qga.js";
import { parseStoreBudget, formatBytes } from "../snapshot/budget.js";
import { collectGarbage } from "../snapshot/evict.js";

export async function capture(
  ctx: EngineContext,
  store: SnapshotStore,
  key: string,
  parts: SnapshotKeyParts,
  phases: Phases,
): Promise<PublishedSnapshot> {
  const { config } = ctx;
  const writer = await store.begin(key, { force: config.forceCapture });
  const started = { ...phases.timings };
  try {
    if (ctx.strategy === "template") await assertRoomForRam(writer.dir, config.snapshotRamMiB);
    const layer = writer.path(SNAPSHOT_FILES.diskLayer);
    const ramFile = ctx.strategy === "template" ? writer.path(SNAPSHOT_FILES.ram) : undefined;
    const plan = planFor(ctx, "capture", { base: config.image, layer }, ramFile);
    ensurePhantoms(ctx.paths.phantoms);
    // Nothing of the host is attached during capture (a mounted 9p share
    // blocks migration), so the guest must not try to publish to /host.
    await writeRuntimeIso(ctx, "");
    const { vm, agent } = await bootForCapture(ctx, plan, layer, phases);
    try {
      const spec = migrationSpec(ctx.strategy, ctx.qemu, writer.dir, plan.cpus);
      await phases.run("capture-migrate", () =>
        captureState(vm.qmp, spec, 10 * 60_000)
          .catch(async (err: unknown) => {
            throw (await storeFull(writer.dir, ctx.paths.qemuLog, err)) ?? err;
          })
          .finally(() => agent.close()),
      );
      await phases.run("capture-quit", async () => {
        await vm.qmp.execute("quit").catch(() => undefined);
        // Polls the pid: the child is unref'd, so awaiting its exit event
        // alone would let Node's event loop drain and exit here.
        if (!(await waitForExit(vm.pid, 30_000)))
          throw new TimeoutError("QEMU_QUIT_TIMEOUT", "QEMU did not exit within 30 s of quit");
      });
      const timings = Object.fromEntries(
        Object.entries(phases.timings).filter(([k, v]) => v !== started[k] && k.startsWith("capture")),
      );
      const published = await phases.run("capture-publish", () =>
        writer.publish({
          manifest: { keyParts: parts, captureTimings: timings, guest: {}, engineVersion: ENGINE_VERSION },
          files: spec.files,
        }),
      );
      await keepInBudget(store, config.storeBudget, key, phases);
      return published;
    } finally {
      agent.close();
      await endVm(vm, ctx.paths);
    }
  } catch (err) {
    await writer.abort().catch(() => undefined);
    throw err;
  }
}

/**
 * The capture boot, with a watchdog: a TCG boot with several vCPUs on a busy
 * host hangs now and then, so one that is not healthy in time is killed and
 * retried once on a fresh layer (its writes must not reach the snapshot).
 *
 * The agent comes back connected, to be closed only once the state is out.
 * The port's open state is part of the device state, and so is what the
 * guest's qemu-ga is doing: with the host side closed it reads EOF and sleeps
 * 100 ms in a loop (its virtio-serial channel cannot wait for a reader), so a
 * snapshot taken then makes every resume's first agent reply wait out the
 * rest of that sleep. Captured connected, qemu-ga waits in poll and answers
 * the resumed engine at once.
 */
async function bootForCapture(
  ctx: EngineContext,
  plan: QemuPlan,
  layer: string,
  phases: Phases,
): Promise<{ vm: LaunchedVm; agent: GuestAgent }> {
  const { config, paths } = ctx;
  for (let attempt = 1; ; attempt++) {
    await createOverlay(ctx.qemuImg, layer, config.image, await virtualSize(ctx.qemuImg, config.image));
    if (plan.ramFile) rmSync(plan.ramFile, { force: true });
    await ctx.deps.checkPorts(config.bindAddress, forwardedPorts(ctx));
    const vm = await phases.run("capture-boot", () => ctx.deps.launch(ctx.qemu.binary, plan, paths));
    try {
      const agent = await phases.run("capture-ready", () =>
        whileRunning(vm, paths, "the capture boot", async (signal) => {
          await waitForHealthy(servicesFor(config), {
            host: probeHost(config.bindAddress),
            deadlineMs: config.readyTimeoutSec * 1000,
            signal,
          });
          return connectAgent(ctx, 60_000);
        }),
      );
      return { vm, agent };
    } catch (err) {
      await endVm(vm, paths);
      const timedOut = err instanceof TimeoutError;
      if (attempt >= 2 || !timedOut) throw err;
      phases.warn(`the capture boot did not become ready (${describeError(err)}); retrying once`);
    }
  }
}

/**
 * A migration that died because the store filled up says so in QEMU's words
 * only on some paths ("Broken pipe" when a `cat` writing the stream got
 * ENOSPC): name the cause when the store is full or the log says ENOSPC.
 */
async function storeFull(dir: string, qemuLog: string, err: unknown): Promise<EngineError | undefined> {
  if (!(err instanceof MigrationError)) return undefined;
  const fs = await statfs(dir).catch(() => undefined);
  const freeBytes = fs ? Number(fs.bavail) * Number(fs.bsize) : undefined;
  const logSays = /No space left on device|ENOSPC/.test(tailFile(qemuLog, 50));
  if (!logSays && (freeBytes === undefined || freeBytes > 1024 * 1024)) return undefined;
  return new EngineError(
    "SNAPSHOT_STORE_FULL",
    `the snapshot store ${dir} ran out of space during the capture (No space left on device): ${err.message}`,
    {
      hint: "free space there, point HEXCLAVE_EMULATOR_SNAPSHOT_DIR at a larger disk, or lower EMULATOR_SNAPSHOT_RAM",
      cause: err,
    },
  );
}

/** Room for the disk layer and device state besides the RAM file. */
const LAYER_ALLOWANCE_MIB = 64;

/**
 * A template capture maps the guest's RAM from a file in the store: on a full
 * file system the guest would die of SIGBUS mid-boot. Refuse up front instead.
 */
async function assertRoomForRam(dir: string, ramMiB: number): Promise<void> {
  const fs = await statfs(dir).catch(() => undefined);
  if (!fs) return;
  const freeMiB = Math.floor((Number(fs.bavail) * Number(fs.bsize)) / 1024 ** 2);
  const needMiB = ramMiB + LAYER_ALLOWANCE_MIB;
  if (freeMiB < needMiB) {
    throw new EngineError(
      "SNAPSHOT_STORE_FULL",
      `the snapshot store has ${freeMiB} MiB free, a template capture needs ${needMiB} MiB (${ramMiB} MiB of guest RAM, the disk layer and device state)`,
      {
        hint: "free space there, point HEXCLAVE_EMULATOR_SNAPSHOT_DIR at a larger disk, or lower EMULATOR_SNAPSHOT_RAM",
      },
    );
  }
}

/**
 * A capture is what grows the store: after each, evict down to the budget
 * (never the snapshot just published, which this start resumes next).
 * Optional: a failed clean-up warns and costs nothing else.
 */
async function keepInBudget(
  store: SnapshotStore,
  budget: string,
  key: string,
  phases: Phases,
): Promise<void> {
  const parsed = parseStoreBudget(budget);
  if (!parsed || parsed.kind === "unlimited") return;
  try {
    const r = await collectGarbage(store, parsed, { protect: [key] });
    for (const e of r.removed)
      phases.info(`evicted ${e.kind} ${e.name} (${formatBytes(e.bytes)}) to keep the store within ${budget}`);
    if (r.overBudget)
      phases.warn(
        `the snapshot store holds ${formatBytes(r.afterBytes)}, over its budget of ${budget}: what is left is in use or being written`,
      );
  } catch (err) {
    phases.warn(`could not keep the snapshot store within its budget: ${describeError(err)}`);
  }
}
