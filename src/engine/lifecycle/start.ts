/**
 * start: from a config to a healthy emulator. Resume a valid snapshot when
 * there is one; with none, capture one first (snapshot=auto/required);
 * whenever the snapshot path fails, stop, discard the session and cold-boot,
 * and say which path ran and why.
 */
import { describeError, EngineError, TimeoutError } from "../errors.js";
import type { EmulatorConfig } from "../config/index.js";
import { SERVICE_NAMES, type ServiceName } from "../config/index.js";
import { openSnapshotStore, type SnapshotStore, type Usability } from "../snapshot/store.js";
import type { GuestAgent } from "../qemu/qga.js";
import type { RotatedSecrets } from "../guest/rotation.js";
import { resolveContext, reuseContext, type EngineContext } from "./context.js";
import { Phases, silent, type EventSink, type SkippedStep } from "./events.js";
import { ensureRunDir, writeState, type RunState } from "./run-dir.js";
import { acquireRunLock } from "./run-lock.js";
import { keyOf } from "./snapshot-key.js";
import { capture } from "./capture.js";
import type { EngineDeps } from "./deps.js";
import { afterSnapshotFailure, needsLookup, planBoot, type BootInput } from "./boot-plan.js";
import { resumeVm, SnapshotUnusableError } from "./resume.js";
import { settleResumedGuest } from "./post-resume.js";
import { connectAgent, finishGuest, launchCold } from "./boot.js";
import { endVm, reclaimRunDir } from "./stop.js";
import { whileRunning, type LaunchedVm } from "./launch.js";
import { rmSync } from "node:fs";

export interface StartResult {
  bootMode: "resume" | "cold";
  fallbackReason?: string | undefined;
  snapshotKey?: string | undefined;
  strategy?: string | undefined;
  captured: boolean;
  qemuVersion: string;
  accelerator: string;
  acceleratorReason: string;
  placeholderSecrets: boolean;
  urls: Record<ServiceName, string>;
  /** Where the live publishable client key is (mode 0600). */
  publishableKeyFile: string;
  timings: Record<string, number>;
  /** Steps beyond the guest contract that this image did not offer (skipped or degraded, with why). */
  skipped?: SkippedStep[] | undefined;
  totalMs: number;
}

/** What a caller may hand the engine besides the config. */
export interface StartOptions {
  /**
   * The secrets to rotate the guest to (64 lowercase hex each), e.g. from a
   * Kubernetes Secret the controller generated. Without them the engine
   * generates fresh ones. Ignored when rotation is off.
   */
  secrets?: RotatedSecrets | undefined;
  /**
   * Whether this start may capture a missing snapshot (default true). The
   * Action says false after a cache entry turned out unusable: that job
   * cold-boots rather than pay for a capture it would not save.
   */
  allowCapture?: boolean | undefined;
  /** Effects to use instead of the real ones (wrapping them is the usual case: see deps.ts). */
  deps?: Partial<EngineDeps> | undefined;
  /**
   * A context the caller already resolved (resolveContext) for this config or
   * one differing only in what the probe does not read: used instead of
   * probing again. Ignored when `deps` is given (the context carries its own).
   */
  context?: EngineContext | undefined;
}

export async function start(
  config: EmulatorConfig,
  sink: EventSink = silent,
  options: StartOptions = {},
): Promise<StartResult> {
  const t0 = performance.now();
  const phases = new Phases(sink);
  const given = options.context && !options.deps ? reuseContext(options.context, config) : undefined;
  const ctx = given ?? (await phases.run("probe", () => resolveContext(config, options.deps)));
  ensureRunDir(ctx.paths);
  const lock = acquireRunLock(ctx.paths.lock, ctx.paths.dir);
  try {
    const reclaimed = await reclaimRunDir(
      ctx.paths,
      (pid) =>
        new EngineError(
          "ALREADY_RUNNING",
          `an emulator is already running from ${ctx.paths.dir} (pid ${pid})`,
          {
            hint: "stop it first (hexclave-emulator stop), or use another run directory",
          },
        ),
    );
    if (reclaimed !== undefined)
      phases.warn(`killed QEMU pid ${reclaimed}, left running by an interrupted start in ${ctx.paths.dir}`);
    phases.info(
      `QEMU ${ctx.qemu.versionString}, ${ctx.accel.accelerator} (${ctx.accel.reason}), ${ctx.machineType}`,
    );
    const outcome = await boot(ctx, phases, options);
    const result: StartResult = {
      ...outcome,
      qemuVersion: ctx.qemu.versionString,
      accelerator: ctx.accel.accelerator,
      acceleratorReason: ctx.accel.reason,
      urls: urlsOf(config),
      publishableKeyFile: ctx.paths.internalPck,
      timings: phases.timings,
      skipped: phases.skipped,
      totalMs: Math.round(performance.now() - t0),
    };
    const state: RunState = {
      bootMode: result.bootMode,
      layout: result.bootMode,
      snapshotKey: result.snapshotKey,
      fallbackReason: result.fallbackReason,
      qemuBinary: ctx.qemu.binary,
      qemuVersion: ctx.qemu.versionString,
      accelerator: ctx.accel.accelerator,
      bindAddress: config.bindAddress,
      ports: { ...config.ports },
      placeholderSecrets: result.placeholderSecrets,
      startedAt: new Date().toISOString(),
      timings: result.timings,
    };
    writeState(ctx.paths, state);
    return result;
  } finally {
    lock.release();
  }
}

type Outcome = Pick<
  StartResult,
  "bootMode" | "fallbackReason" | "snapshotKey" | "strategy" | "captured" | "placeholderSecrets"
>;

async function boot(ctx: EngineContext, phases: Phases, options: StartOptions): Promise<Outcome> {
  const { config } = ctx;
  const secrets = options.secrets;
  const input: BootInput = {
    mode: config.snapshot,
    forceCapture: config.forceCapture,
    allowCapture: options.allowCapture ?? true,
  };
  // Snapshots off: nothing to look up, a plain cold boot.
  if (!needsLookup(config.snapshot)) return coldOutcome(ctx, phases, secrets, {});
  const store = openSnapshotStore(config.snapshotDir);
  await store.sweep().catch(() => undefined);
  const { key, parts } = await phases.run("snapshot-key", () => keyOf(ctx));
  const found = config.forceCapture ? undefined : await findSnapshot(store, key, phases);
  const plan = planBoot({ ...input, found });
  if (plan.kind === "refuse") throw new EngineError(plan.code, plan.message, { hint: plan.hint });
  if (plan.kind === "cold") return coldOutcome(ctx, phases, secrets, plan);

  let snapshot = found?.state === "usable" ? found.snapshot : undefined;
  let captured = false;
  if (plan.kind === "capture-then-resume") {
    try {
      phases.info(`no snapshot for ${key}: capturing one (cold boot, then migrate)`);
      snapshot = await capture(ctx, store, key, parts, phases);
      captured = true;
    } catch (err) {
      const next = afterSnapshotFailure(config.snapshot, "capture", describeError(err));
      if (next.kind === "fail") throw err;
      return coldOutcome(ctx, phases, secrets, next);
    }
  }
  if (!snapshot) throw new Error("boot: a resume plan without a snapshot");
  // Held from here, and by the QEMU from its launch: no eviction removes the snapshot under it.
  const use = await store.use(key);
  if (!use) {
    const next = afterSnapshotFailure(
      config.snapshot,
      "resume",
      `snapshot ${key} was evicted from the store`,
    );
    if (next.kind === "fail") {
      throw new EngineError("SNAPSHOT_REQUIRED", `snapshot ${key} was evicted before it could be resumed`, {
        hint: "start again (it captures a new one), or raise EMULATOR_STORE_BUDGET",
      });
    }
    return coldOutcome(ctx, phases, secrets, next);
  }
  let vm: LaunchedVm | undefined;
  try {
    const resumed = await resumeVm(ctx, snapshot, phases, use);
    vm = resumed;
    const ready = await whileRunning(resumed, ctx.paths, "the resumed guest's setup", (signal) =>
      settleResumedGuest(ctx, resumed, phases, config.snapshotReadyTimeoutSec, secrets, signal),
    );
    vm.qmp.close();
    return { bootMode: "resume", snapshotKey: key, strategy: ctx.strategy, captured, ...ready };
  } catch (err) {
    if (vm) await endVm(vm, ctx.paths);
    rmSync(ctx.paths.session, { force: true });
    if (err instanceof SnapshotUnusableError) {
      await store.quarantine(key, describeError(err)).catch(() => undefined);
    }
    const next = afterSnapshotFailure(config.snapshot, "resume", describeError(err));
    if (next.kind === "fail") throw err;
    return coldOutcome(ctx, phases, secrets, next);
  } finally {
    use.release(); // the QEMU's inherited copy keeps the lock while it runs
  }
}

async function coldOutcome(
  ctx: EngineContext,
  phases: Phases,
  secrets: RotatedSecrets | undefined,
  plan: { reason?: string | undefined },
): Promise<Outcome> {
  if (plan.reason) phases.warn(`${plan.reason}; falling back to a cold boot`);
  const ready = await coldBoot(ctx, phases, secrets);
  return { bootMode: "cold", fallbackReason: plan.reason, captured: false, ...ready };
}

/** The store's verdict; an unusable snapshot is quarantined here, with the reason. */
async function findSnapshot(store: SnapshotStore, key: string, phases: Phases): Promise<Usability> {
  const found = await store.usable(key);
  if (found.state === "unusable") {
    phases.warn(`${found.reason}; quarantining it`);
    await store.quarantine(key, found.reason).catch(() => undefined);
  }
  return found;
}

/** Cold boot with one retry: a TCG boot with several vCPUs rarely hangs. */
async function coldBoot(
  ctx: EngineContext,
  phases: Phases,
  secrets?: RotatedSecrets,
): Promise<{ placeholderSecrets: boolean }> {
  for (let attempt = 1; ; attempt++) {
    const vm = await phases.run("cold-boot", () => launchCold(ctx, phases));
    let agent: GuestAgent | undefined;
    try {
      const a = await phases.run("agent", () => connectAgent(ctx, ctx.config.readyTimeoutSec * 1000));
      agent = a;
      return await whileRunning(vm, ctx.paths, "the cold boot", (signal) =>
        finishGuest(ctx, a, phases, ctx.config.readyTimeoutSec, secrets, signal),
      );
    } catch (err) {
      await endVm(vm, ctx.paths);
      if (attempt >= 2 || !(err instanceof TimeoutError)) throw err;
      phases.warn(`cold boot did not become healthy (${describeError(err)}); retrying once`);
    } finally {
      agent?.close();
      vm.qmp.close();
    }
  }
}

export function urlsOf(config: EmulatorConfig): Record<ServiceName, string> {
  const host =
    config.bindAddress === "0.0.0.0" || config.bindAddress === "127.0.0.1" ? "localhost" : config.bindAddress;
  const h = host.includes(":") ? `[${host}]` : host;
  return Object.fromEntries(SERVICE_NAMES.map((s) => [s, `http://${h}:${config.ports[s]}`])) as Record<
    ServiceName,
    string
  >;
}
