/**
 * The Action's main step: inputs → KVM, QEMU, image → snapshot cache restore
 * → engine start → outputs and summary. The logic lives here (the entry file
 * is one line), as actions/cache splits restoreImpl from its entry point; the
 * post step's state goes through a StateProvider.
 *
 * The VM is launched detached by the engine and outlives this process; the
 * step exits as soon as the emulator is healthy (with earlyExit, like
 * actions/cache, nothing left dangling — an HTTP keep-alive socket, a timer —
 * can hold the step open).
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import * as core from "@actions/core";
import {
  EngineError,
  describeError,
  openSnapshotStore,
  snapshotKeyFor,
  start,
  type EmulatorConfig,
} from "../engine/index.js";
import { resolveImage } from "./image.js";
import { readActionInputs, type ActionInputs } from "./inputs.js";
import { ensureKvm, hostKvmDeps, type KvmDeps } from "./kvm.js";
import { PhaseLog } from "./log.js";
import { hostQemuDeps, resolveQemu } from "./qemu.js";
import { setOutputs, writeFailureSummary, writeSummary, type CacheReport } from "./report.js";
import { cacheArchivePath, emulatorConfig, runnerDirs } from "./runner.js";
import { cacheKeyOf, restoreSnapshot, type RestoreOutcome } from "./snapshot-cache.js";
import { ActionsStateProvider, saveEmulatorState, type StateProvider } from "./state.js";

export interface MainOptions {
  state?: StateProvider;
  env?: NodeJS.ProcessEnv;
  kvm?: KvmDeps;
  /** performance.now() at which the step started (default 0: the process's start). */
  startedAt?: number;
  /** Exit the process when done (the entry point's choice; tests leave it off). */
  earlyExit?: boolean;
}

export async function runMain(options: MainOptions = {}): Promise<void> {
  // Startup counts from the process's start (performance.now()'s origin), so
  // it includes loading the bundle, as the step's time does.
  const t0 = options.startedAt ?? 0;
  const env = options.env ?? process.env;
  const state = options.state ?? new ActionsStateProvider();
  const log = new PhaseLog();
  try {
    await mainSteps({ env, state, log, t0, kvm: options.kvm });
  } catch (err) {
    const message = describeError(err);
    core.setFailed(message);
    await writeFailureSummary(message, log.timings).catch(() => undefined);
  }
  if (options.earlyExit) process.exit(process.exitCode ?? 0);
}

interface Ctx {
  env: NodeJS.ProcessEnv;
  state: StateProvider;
  log: PhaseLog;
  t0: number;
  kvm?: KvmDeps | undefined;
}

async function mainSteps({ env, state, log, t0, kvm: kvmDeps }: Ctx): Promise<void> {
  const cwd = process.cwd();
  const homeDir = homedir();
  const hostArch = process.arch;
  const dirs = runnerDirs(env, homeDir, cwd);
  const inputs = readActionInputs((name) => core.getInput(name), {
    env,
    cwd: dirs.workspace,
    homeDir,
    hostArch,
  });

  const kvm = await log.step("kvm", async () => {
    const r = await ensureKvm(kvmDeps ?? hostKvmDeps());
    log.info(r.message);
    return r;
  });
  // A config without the resolved QEMU and image first: it says which arch,
  // whether the environment names a QEMU, and where the default image is.
  const draft = emulatorConfig(inputs, dirs, {}, env, hostArch);
  const qemu = await log.step("qemu", async () => {
    if (inputs.qemu === "auto" && draft.qemuBinary) {
      return { binary: draft.qemuBinary, message: `QEMU_BINARY: ${draft.qemuBinary}` };
    }
    const c = await resolveQemu(
      inputs.qemu,
      draft.arch,
      hostQemuDeps((m) => log.info(m)),
    );
    log.info(c.message);
    return c;
  });
  const image = await log.step("image", async () => {
    const c = await resolveImage(inputs.image, {
      arch: draft.arch,
      defaultPath: draft.image,
      resolvedPath: inputs.image.kind === "path" ? draft.image : undefined,
      expectedSha256: inputs.imageSha256,
      log: (m) => log.info(m),
    });
    log.info(c.message);
    return c;
  });
  const config = emulatorConfig(inputs, dirs, { image: image.path, qemuBinary: qemu.binary }, env, hostArch);
  const archive = cacheArchivePath(dirs);
  const base = { config, cache: inputs.cache, saveOn: inputs.saveOn, archive, captured: false };
  saveEmulatorState(state, { ...base, outcome: "starting" });

  const { cache, snapshotKey, startConfig, fallbackReason, allowCapture } = await restore(
    inputs,
    config,
    archive,
    log,
  );
  saveEmulatorState(state, { ...base, outcome: "starting", cacheKey: cache.cacheKey });

  let result;
  try {
    result = await start(startConfig, log.sink, { allowCapture });
  } catch (err) {
    saveEmulatorState(state, { ...base, outcome: "failed", cacheKey: cache.cacheKey });
    throw err;
  }
  // Nothing prints the key before setOutputs masks it (its first act).
  const publishableKey = readKey(result.publishableKeyFile);
  saveEmulatorState(state, {
    ...base,
    outcome: "started",
    snapshotKey: result.snapshotKey,
    cacheKey: result.snapshotKey ? cacheKeyOf(result.snapshotKey) : cache.cacheKey,
    captured: result.captured,
    bootMode: result.bootMode,
  });
  const startupMs = Math.round(performance.now() - t0);
  const report = {
    result,
    publishableKey,
    snapshotKey,
    fallbackReason: fallbackReason ?? result.fallbackReason,
    cache,
    kvm,
    qemuNote: qemu.message,
    imageNote: image.message,
    startupMs,
    timings: log.timings,
  };
  setOutputs(report);
  log.info(
    `emulator ready in ${(startupMs / 1000).toFixed(2)} s: ${result.bootMode}` +
      `${report.fallbackReason ? ` (${report.fallbackReason})` : ""}, ${result.accelerator}, backend ${result.urls.backend}`,
  );
  await writeSummary(report).catch((err: unknown) =>
    log.warn(`could not write the job summary: ${describeError(err)}`),
  );
}

interface Restored {
  cache: CacheReport;
  snapshotKey?: string | undefined;
  startConfig: EmulatorConfig;
  /** False after an unusable cache entry: this job cold-boots instead of capturing. */
  allowCapture?: boolean | undefined;
  fallbackReason?: string | undefined;
}

/**
 * Bring the snapshot for this runner into the store when the cache has it.
 * A cached snapshot that turns out unusable means a cold boot this time (no
 * capture: that start would pay for a capture to save over an entry that
 * cannot be replaced anyway).
 */
async function restore(
  inputs: ActionInputs,
  config: EmulatorConfig,
  archive: string,
  log: PhaseLog,
): Promise<Restored> {
  const mode = inputs.cache;
  if (config.snapshot === "never") {
    return { cache: { mode, hit: false, note: "not used (snapshot is never)" }, startConfig: config };
  }
  if (mode === "none") {
    return { cache: { mode, hit: false, note: "off (cache is none)" }, startConfig: config };
  }
  const { key: snapshotKey, cacheKey } = await log.step("snapshot-key", async () => {
    const key = await snapshotKeyFor(config);
    log.info(`snapshot key ${key}`);
    return { key, cacheKey: cacheKeyOf(key) };
  });
  if (mode === "local") {
    const found = await openSnapshotStore(config.snapshotDir).usable(snapshotKey);
    const note =
      found.state === "usable"
        ? `hit in ${config.snapshotDir}`
        : found.state === "unusable"
          ? `unusable in ${config.snapshotDir} (${found.reason}): this job sets it aside and cold-boots`
          : `miss in ${config.snapshotDir} (this job captures one there)`;
    const hit = found.state === "usable";
    return { cache: { mode, hit, note, cacheKey }, snapshotKey, startConfig: config };
  }
  const outcome: RestoreOutcome = await log.step("cache-restore", () =>
    restoreSnapshot({ snapshotKey, storeRoot: config.snapshotDir, archive, log }),
  );
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  switch (outcome.kind) {
    case "in-store":
      return {
        cache: { mode, hit: true, note: "already in the store", cacheKey },
        snapshotKey,
        startConfig: config,
      };
    case "restored":
      return {
        cache: {
          mode,
          hit: true,
          note: `hit: restored ${(outcome.bytes / 1024 / 1024).toFixed(1)} MiB in ${secs(outcome.ms)}`,
          cacheKey,
        },
        snapshotKey,
        startConfig: config,
      };
    case "miss":
      return {
        cache: {
          mode,
          hit: false,
          note: outcome.warned ? `miss (${outcome.warned})` : "miss: this job captures a snapshot",
          cacheKey,
        },
        snapshotKey,
        startConfig: config,
      };
    case "corrupt":
      if (config.snapshot === "required") {
        throw new EngineError("SNAPSHOT_UNUSABLE", outcome.reason, {
          hint: "snapshot is required and the cached one is unusable: use snapshot: auto, or a new cache key (change an input)",
        });
      }
      return {
        cache: { mode, hit: true, note: `hit, but unusable: ${outcome.reason}`, cacheKey },
        snapshotKey,
        startConfig: config,
        allowCapture: false,
        fallbackReason: `${outcome.reason}; cold boot without capture`,
      };
  }
}

function readKey(file: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return "";
  }
}
