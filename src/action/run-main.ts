/**
 * The Action's main step: inputs → KVM, QEMU, image → snapshot cache restore
 * → engine start → outputs and summary. The logic lives here (the entry file
 * is one line), as actions/cache splits restoreImpl from its entry point; the
 * post step's state goes through a StateProvider, the cache through a
 * CacheClient.
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
  checkImage,
  digestCacheDir,
  resolveContext,
  seedImageDigest,
  snapshotKeyOf,
  start,
  type EmulatorConfig,
  type EngineContext,
  type RotatedSecrets,
} from "../engine/index.js";
import { actionsCache, type CacheClient } from "./cache-client.js";
import { imageCacheKey, restoreImage } from "./image-cache.js";
import { cacheKeyOf } from "./cache-key.js";
import { describeOverride, environmentOverrides, fieldsOf } from "./env-overrides.js";
import { locateImage, type LocatedImage } from "./image.js";
import { readActionInputs, type ActionInputs } from "./inputs.js";
import { ensureKvm, hostKvmDeps, type KvmDeps } from "./kvm.js";
import { PhaseLog } from "./log.js";
import { hostQemuDeps, resolveQemu } from "./qemu.js";
import {
  setOutputs,
  writeFailureSummary,
  writeSummary,
  type CacheReport,
  type MainReport,
} from "./report.js";
import { cacheDirOf, emulatorConfig, runnerDirs } from "./runner.js";
import { saveDecision } from "./save-policy.js";
import { maskedSecrets } from "./secrets.js";
import { restoreSnapshot, type RestoreOutcome } from "./snapshot-cache.js";
import { ActionsStateProvider, saveEmulatorState, type EmulatorState, type StateProvider } from "./state.js";

export interface MainOptions {
  state?: StateProvider;
  env?: NodeJS.ProcessEnv;
  kvm?: KvmDeps;
  cache?: CacheClient;
  /** performance.now() at which the step started (default 0: the process's start). */
  startedAt?: number;
  /** Exit the process when done (the entry point's choice; tests leave it off). */
  earlyExit?: boolean;
}

/** The engine's post-resume health timeout by default (EMULATOR_SNAPSHOT_READY_TIMEOUT's default). */
export const RESUME_TIMEOUT_SEC = 45;
/** How much longer everything takes under TCG than under KVM/HVF. */
export const TCG_SLOWDOWN = 4;

/** The resume-timeout default for an accelerator: 45 s, times 4 under TCG. */
export const resumeTimeoutFor = (accelerator: string): number =>
  accelerator === "tcg" ? RESUME_TIMEOUT_SEC * TCG_SLOWDOWN : RESUME_TIMEOUT_SEC;

export async function runMain(options: MainOptions = {}): Promise<void> {
  // Startup counts from the process's start (performance.now()'s origin), so
  // it includes loading the bundle, as the step's time does.
  const t0 = options.startedAt ?? 0;
  const env = options.env ?? process.env;
  const state = options.state ?? new ActionsStateProvider();
  const log = new PhaseLog();
  try {
    await mainSteps({ env, state, log, t0, kvm: options.kvm, cache: options.cache });
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
  cache?: CacheClient | undefined;
}

async function mainSteps({ env, state, log, t0, kvm: kvmDeps, cache: client }: Ctx): Promise<void> {
  const cwd = process.cwd();
  const homeDir = homedir();
  const hostArch = process.arch;
  const dirs = runnerDirs(env, homeDir, cwd);
  // The token is masked before anything (an input error included) could print it.
  const token = core.getInput("token");
  if (token) core.setSecret(token);
  const inputs = readActionInputs((name) => core.getInput(name), {
    env,
    cwd: dirs.workspace,
    homeDir,
    hostArch,
  });
  // Made and masked before anything runs that could print one (the engine's
  // events, an error, the guest's console in the post step's diagnostics).
  const secrets = maskedSecrets((s) => core.setSecret(s));

  // What the Action sets itself beats the environment as the inputs do.
  const setHere = fieldsOf(inputs.overrides as Record<string, unknown>);
  setHere.add("runDir");
  if (inputs.cache !== "local" || inputs.cacheDir) setHere.add("home");
  if (inputs.image.kind !== "default") setHere.add("image");
  const envOverrides = environmentOverrides(env, setHere);
  for (const o of envOverrides) log.info(`environment: ${describeOverride(o)}`);

  const cacheDir = cacheDirOf(dirs);
  // The QEMU packages and a downloaded image go through the Actions cache too,
  // with cache: actions only (local promises no transfer; none, no cache at all).
  const downloads = inputs.cache === "actions" ? (client ?? actionsCache) : undefined;
  downloads?.warmUp?.();

  const kvm = await log.step("kvm", async () => {
    const r = await ensureKvm(inputs.enableKvm, kvmDeps ?? hostKvmDeps());
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
      hostQemuDeps((m) => log.info(m), { warn: (m) => log.warn(m), cache: downloads, cacheDir }),
    );
    log.info(c.message);
    return c;
  });
  // What the image step says: straight to the log while it runs, held back
  // while its fetch runs beside the snapshot restore (whose log groups it
  // would otherwise break into), and printed in its own group when awaited.
  const imageOut = new HeldLog(log);
  const located = await log.step("image", async () => {
    const l = await locateImage(inputs.image, {
      arch: draft.arch,
      defaultPath: draft.image,
      resolvedPath: inputs.image.kind === "path" ? draft.image : undefined,
      expectedSha256: inputs.imageSha256,
      token: inputs.token,
      toolCacheDir: dirs.toolCache,
      env,
      releaseBase: env.HEXCLAVE_EMULATOR_RELEASE_BASE || undefined,
      restore: downloads
        ? async (sha256, into) => {
            const r = await restoreImage({
              sha256,
              arch: draft.arch,
              dest: into,
              dir: cacheDir,
              client: downloads,
              log: imageOut,
            });
            return r.kind === "hit";
          }
        : undefined,
      log: (m) => imageOut.info(m),
      warn: (m) => imageOut.warn(m),
    });
    if (l.kind === "ready") log.info(l.choice.message);
    else
      log.info(`sha256 ${l.sha256} verified beforehand: the image is fetched while the snapshot is restored`);
    return l;
  });
  // A pending image comes (Actions cache, else a download) while the snapshot
  // is looked up and restored: its key names the image's verified digest, so
  // it needs no bytes of it. Awaited (and checked) before anything boots.
  const fetching = located.kind === "pending" ? imageOut.hold(located.fetch()) : undefined;
  const imagePath = located.kind === "ready" ? located.choice.path : located.path;
  const knownDigest = located.kind === "pending" ? located.sha256 : undefined;
  let config = emulatorConfig(inputs, dirs, { image: imagePath, qemuBinary: qemu.binary }, env, hostArch);
  // A digest verified while downloading (or recorded beside a tool-cache hit):
  // the key does not hash the image again. Seeded before resolveContext, which
  // starts reading any image whose digest it does not know.
  if (located.kind === "ready" && located.choice.sha256)
    await seedImageDigest(located.choice.path, located.choice.sha256, { cacheDir: digestCacheDir(config) });
  // The host as the engine sees it (QEMU probed once; the snapshot key reuses it).
  const engineCtx = await log.step("accelerator", async () => {
    const ctx = await resolveContext(config, {}, { imageCheck: !fetching });
    log.info(`${ctx.accel.accelerator}: ${ctx.accel.reason}`);
    return ctx;
  });
  const timeoutFromEnv = envOverrides.some((o) => o.used && o.fields.includes("snapshotReadyTimeoutSec"));
  if (!inputs.resumeTimeoutGiven && !timeoutFromEnv) {
    const sec = resumeTimeoutFor(engineCtx.accel.accelerator);
    log.info(`resume-timeout ${sec} s (${engineCtx.accel.accelerator})`);
    config = { ...config, snapshotReadyTimeoutSec: sec };
  }

  const decision =
    inputs.cache === "actions" ? saveDecision(inputs.saveOn, env, inputs.defaultBranch) : undefined;
  const maySave = decision?.save ?? false;
  // A capture costs a migration, a publish of the guest's RAM and a resume:
  // worth it only when the snapshot outlives the job (capture: always opts in).
  const keeps = inputs.cache === "local" || maySave;
  const mayCapture = inputs.capture === "always" || keeps;
  const base: Omit<EmulatorState, "outcome" | "saveGeneration"> = {
    config,
    cache: inputs.cache,
    saveOn: inputs.saveOn,
    defaultBranch: inputs.defaultBranch,
    cacheDir,
    cacheKeySuffix: inputs.cacheKeySuffix,
    captured: false,
    aptSave: "aptSave" in qemu ? qemu.aptSave : undefined,
  };
  saveEmulatorState(state, { ...base, outcome: "starting", saveGeneration: 1 });

  const restored = await restore(
    inputs,
    config,
    engineCtx,
    cacheDir,
    log,
    { maySave, mayCapture, imageDigest: knownDigest },
    client,
  );
  const image = fetching
    ? await log.step("image-fetch", async () => {
        const c = await imageOut.release(fetching);
        log.info(c.message);
        // Checked now that it is here, as resolveContext would have (the path is the one the config names).
        checkImage(c.path, draft.arch);
        if (c.sha256) await seedImageDigest(c.path, c.sha256, { cacheDir: engineCtx.cacheDir });
        return c;
      })
    : (located as Extract<LocatedImage, { kind: "ready" }>).choice;
  // A verified download this job made: the post step keeps it in the Actions cache for the next jobs.
  base.imageSave =
    downloads && image.source === "download" && image.verified && image.sha256
      ? { sha256: image.sha256, path: image.path, key: imageCacheKey(draft.arch, image.sha256) }
      : undefined;
  const { cache, snapshotKey, startConfig, fallbackReason, allowCapture, saveGeneration } = restored;
  const keyed = { ...base, snapshotKey, cacheKey: cache.cacheKey, saveGeneration };
  saveEmulatorState(state, { ...keyed, outcome: "starting" });

  let result;
  try {
    result = await start(startConfig, log.sink, { allowCapture, secrets, context: engineCtx });
  } catch (err) {
    saveEmulatorState(state, { ...keyed, outcome: "failed" });
    throw err;
  }
  const live: RotatedSecrets = result.placeholderSecrets
    ? {
        publishableClientKey: readKey(result.publishableKeyFile),
        secretServerKey: "",
        superSecretAdminKey: "",
        cronSecret: "",
      }
    : {
        ...secrets,
        publishableClientKey: readKey(result.publishableKeyFile) || secrets.publishableClientKey,
      };
  // A restored entry that did not resume: the post step captures the next generation.
  const recapture = restored.restoredFromCache && result.bootMode === "cold" && maySave;
  saveEmulatorState(state, {
    ...keyed,
    outcome: "started",
    snapshotKey: result.snapshotKey ?? snapshotKey,
    captured: result.captured,
    recapture,
    bootMode: result.bootMode,
  });
  const startupMs = Math.round(performance.now() - t0);
  const saved: MainReport["saved"] =
    inputs.cache !== "actions"
      ? {
          value: "false",
          why: inputs.cache === "local" ? `snapshots stay in ${config.snapshotDir}` : "cache is none",
        }
      : !(result.captured || recapture)
        ? { value: "false", why: "this job captured no snapshot (it resumed the cached one, or cold-booted)" }
        : maySave
          ? { value: "pending", why: `as ${cache.cacheKey ?? "?"} (${decision?.why ?? ""})` }
          : { value: "false", why: decision?.why ?? "not saving" };
  const report: MainReport = {
    result,
    secrets: live,
    snapshotKey,
    fallbackReason: fallbackReason ?? result.fallbackReason,
    cache,
    saved,
    envOverrides,
    kvm,
    qemuNote: qemu.message,
    imageNote: base.imageSave
      ? `${image.message}; the post step keeps it in the Actions cache as ${base.imageSave.key}`
      : image.message,
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

const NOT_KEPT =
  "no cached snapshot, and one captured here would not be kept (capture: when-saved; this job does not save): cold boot";

interface Restored {
  cache: CacheReport;
  snapshotKey?: string | undefined;
  startConfig: EmulatorConfig;
  /** False when a snapshot this job captured would not be kept (see `capture`): it cold-boots instead. */
  allowCapture: boolean;
  fallbackReason?: string | undefined;
  /** The generation a save of this job uses. */
  saveGeneration: number;
  /** The snapshot came from the Actions cache in this job. */
  restoredFromCache: boolean;
}

/**
 * Bring the snapshot for this runner into the store when the cache has it.
 * A cached snapshot that turns out unusable means: capture a new one and
 * save it as the next generation when this job may save; else a cold boot
 * (no capture: it would not be saved).
 */
async function restore(
  inputs: ActionInputs,
  config: EmulatorConfig,
  engineCtx: EngineContext,
  cacheDir: string,
  log: PhaseLog,
  {
    maySave,
    mayCapture,
    imageDigest,
  }: { maySave: boolean; mayCapture: boolean; imageDigest?: string | undefined },
  client: CacheClient | undefined,
): Promise<Restored> {
  const mode = inputs.cache;
  const plain = {
    startConfig: config,
    saveGeneration: 1,
    restoredFromCache: false,
    allowCapture: mayCapture,
  };
  /** What a job without a usable snapshot does, for the notes. */
  const then = mayCapture
    ? "this job captures a snapshot"
    : "cold boot: a snapshot captured here would not be kept (capture: when-saved)";
  if (config.snapshot === "never") {
    return { ...plain, cache: { mode, state: "off", note: "not used (snapshot is never)" } };
  }
  if (mode === "none") return { ...plain, cache: { mode, state: "off", note: "off (cache is none)" } };
  const snapshotKey = await log.step("snapshot-key", async () => {
    const { key } = await snapshotKeyOf(engineCtx, { imageDigest });
    log.info(`snapshot key ${key}`);
    return key;
  });
  if (mode === "local") {
    const found = await openSnapshotStore(config.snapshotDir).usable(snapshotKey);
    const [state, note]: [CacheReport["state"], string] =
      found.state === "usable"
        ? ["hit", `in ${config.snapshotDir}`]
        : found.state === "unusable"
          ? [
              "unusable",
              `unusable in ${config.snapshotDir} (${found.reason}): this job sets it aside and cold-boots`,
            ]
          : ["miss", `miss in ${config.snapshotDir} (${then} there)`];
    return { ...plain, cache: { mode, state, note }, snapshotKey };
  }
  const suffix = inputs.cacheKeySuffix;
  const outcome: RestoreOutcome = await log.step("cache-restore", () =>
    restoreSnapshot({ snapshotKey, suffix, storeRoot: config.snapshotDir, dir: cacheDir, log, client }),
  );
  const keyFor = (g: number) => cacheKeyOf(snapshotKey, suffix, g);
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  switch (outcome.kind) {
    case "in-store":
      return {
        ...plain,
        cache: { mode, state: "hit", note: "already in the store", cacheKey: keyFor(1) },
        snapshotKey,
      };
    case "restored": {
      const g = outcome.generation + 1;
      return {
        ...plain,
        restoredFromCache: true,
        saveGeneration: g,
        cache: {
          mode,
          state: "hit",
          note: `restored ${outcome.key} (${(outcome.bytes / 1024 / 1024).toFixed(1)} MiB) in ${secs(outcome.ms)}`,
          cacheKey: keyFor(g),
        },
        snapshotKey,
      };
    }
    case "miss":
      return {
        ...plain,
        cache: { mode, state: "miss", note: `miss: ${then}`, cacheKey: keyFor(1) },
        snapshotKey,
        fallbackReason: mayCapture ? undefined : NOT_KEPT,
      };
    case "unavailable":
      return {
        ...plain,
        cache: {
          mode,
          state: "unavailable",
          note: `${outcome.reason} (${then})`,
          cacheKey: keyFor(1),
        },
        snapshotKey,
        fallbackReason: mayCapture ? undefined : NOT_KEPT,
      };
    case "corrupt": {
      if (config.snapshot === "required") {
        throw new EngineError("SNAPSHOT_UNUSABLE", outcome.reason, {
          hint: "snapshot is required and the cached one is unusable: use snapshot: auto once (a job on the default branch saves a new generation), or change cache-key-suffix",
        });
      }
      const g = outcome.generation + 1;
      const cache: CacheReport = {
        mode,
        state: "unusable",
        note: maySave
          ? `${outcome.reason}; this job captures a new snapshot and saves it as ${keyFor(g)}`
          : mayCapture
            ? `${outcome.reason}; this job captures a snapshot for itself (capture: always; it does not save)`
            : `${outcome.reason}; cold boot (this job does not save, so it does not capture)`,
        cacheKey: keyFor(g),
      };
      return {
        ...plain,
        cache,
        snapshotKey,
        saveGeneration: g,
        fallbackReason: mayCapture ? outcome.reason : `${outcome.reason}; cold boot without capture`,
      };
    }
  }
}

function readKey(file: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return "";
  }
}

/**
 * A logger whose lines can be held back while a task runs beside others
 * (the image fetch), then printed when the task is awaited.
 */
class HeldLog {
  private held: Array<["info" | "warn", string]> | undefined;
  constructor(private readonly log: PhaseLog) {}

  info(message: string): void {
    if (this.held) this.held.push(["info", message]);
    else this.log.info(message);
  }

  warn(message: string): void {
    if (this.held) this.held.push(["warn", message]);
    else this.log.warn(message);
  }

  /** Holds this logger's lines from now on; the task's rejection is handled when released (never left unhandled). */
  hold<T>(task: Promise<T>): Promise<T> {
    this.held ??= [];
    task.catch(() => undefined);
    return task;
  }

  /** Awaits the task, then prints what was held, in order, and prints directly again. */
  async release<T>(task: Promise<T>): Promise<T> {
    try {
      return await task;
    } finally {
      const lines = this.held ?? [];
      this.held = undefined;
      for (const [kind, m] of lines) this[kind](m);
    }
  }
}
