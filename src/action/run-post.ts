/**
 * The Action's post step (post-if: always()): diagnostics when the job or the
 * emulator failed, stop the VM cleanly, then save the snapshot this job
 * captured when save-on allows (or, when the restored entry did not resume,
 * capture a fresh one and save it as the next generation); then the QEMU
 * .debs and the image this job downloaded, if the main step left them.
 *
 * Nothing here fails the job. Every step is caught and warned; and, as
 * actions/cache does, process-level handlers turn an exception or rejection
 * that escapes @actions/cache's upload internals (a socket callback, a
 * stream) into a warning, and the step ends with exit code 0.
 */
import * as core from "@actions/core";
import { captureOnly, describeError, runPaths, status, stopVm, type StatusReport } from "../engine/index.js";
import { saveAptDebs } from "./apt-cache.js";
import type { CacheClient } from "./cache-client.js";
import { cacheKeyOf } from "./cache-key.js";
import { diagnostics } from "./diagnostics.js";
import { saveImage, type EntrySave } from "./image-cache.js";
import { PhaseLog } from "./log.js";
import { writeSaveSummary } from "./report.js";
import { saveDecision } from "./save-policy.js";
import { saveSnapshot, type SaveOutcome } from "./snapshot-cache.js";
import { ActionsStateProvider, readEmulatorState, type EmulatorState, type StateProvider } from "./state.js";

export interface PostOptions {
  state?: StateProvider;
  env?: NodeJS.ProcessEnv;
  cache?: CacheClient;
  earlyExit?: boolean;
}

/** Warn about whatever escapes; never let it end the step with a failure. */
function guardProcess(): () => void {
  const onError = (err: unknown) => {
    core.warning(`post step: an error escaped the cache client and was ignored: ${describeError(err)}`);
  };
  process.on("uncaughtException", onError);
  process.on("unhandledRejection", onError);
  return () => {
    process.off("uncaughtException", onError);
    process.off("unhandledRejection", onError);
  };
}

export async function runPost(options: PostOptions = {}): Promise<void> {
  const env = options.env ?? process.env;
  const log = new PhaseLog();
  const unguard = guardProcess();
  try {
    const st = readEmulatorState(options.state ?? new ActionsStateProvider());
    if (!st) {
      log.info("the main step started no emulator: nothing to stop");
    } else {
      await postSteps(st, env, log, options.cache);
    }
  } catch (err) {
    core.warning(`post step: ${describeError(err)}`);
  }
  if (options.earlyExit) {
    // Let anything already thrown from a callback reach the handlers, then end well.
    await new Promise<void>((resolve) => setImmediate(resolve));
    process.exit(0);
  }
  unguard();
}

async function postSteps(
  st: EmulatorState,
  env: NodeJS.ProcessEnv,
  log: PhaseLog,
  client: CacheClient | undefined,
): Promise<void> {
  try {
    await stopAndSaveSnapshot(st, env, log, client);
  } finally {
    // After the snapshot, which matters most; and also when stopping failed.
    await saveDownloads(st, log, client);
  }
}

async function stopAndSaveSnapshot(
  st: EmulatorState,
  env: NodeJS.ProcessEnv,
  log: PhaseLog,
  client: CacheClient | undefined,
): Promise<void> {
  const { config } = st;
  const jobStatus = core.getInput("job-status");
  const jobFailed = jobStatus === "failure" || jobStatus === "cancelled";
  let report: StatusReport | undefined;
  try {
    report = await status(config);
  } catch (err) {
    log.warn(`could not read the emulator's status: ${describeError(err)}`);
  }
  const emulatorFailed = st.outcome !== "started" || !report?.ok;
  if (jobFailed || emulatorFailed) {
    const why = [
      ...(jobFailed ? [`the job's status is ${jobStatus}`] : []),
      ...(st.outcome === "failed" ? ["the emulator failed to start"] : []),
      ...(st.outcome === "started" && report && !report.ok ? ["the emulator is not healthy now"] : []),
    ].join("; ");
    core.startGroup(`Emulator diagnostics (${why || "the main step did not finish"})`);
    core.info(diagnostics(config, report));
    core.endGroup();
  } else {
    log.info(`emulator healthy at the end of the job (${report?.services.length ?? 0} services)`);
  }

  await log.step("stop", async () => {
    const r = await stopVm(runPaths(config.runDir), config.stopGraceSec, log.sink);
    log.info(r.wasRunning ? `stopped the VM (${r.via})` : "the VM was not running");
  });

  const notSaved = async (why: string) => {
    log.info(`no snapshot saved: ${why}`);
    core.setOutput("saved", "false");
    await writeSaveSummary(false, why).catch(() => undefined);
  };
  if (st.cache !== "actions" || !(st.captured || st.recapture) || !st.snapshotKey) {
    const why =
      st.cache === "local"
        ? `snapshots stay in ${config.snapshotDir} (cache: local)`
        : st.cache === "none"
          ? "cache is none"
          : st.outcome !== "started"
            ? "the emulator did not start"
            : "this job did not capture a snapshot (it resumed the cached one, or cold-booted)";
    return notSaved(why);
  }
  const decision = saveDecision(st.saveOn, env, st.defaultBranch);
  if (!decision.save) return notSaved(`not saving the captured snapshot: ${decision.why}`);
  const snapshotKey = st.snapshotKey;
  const key = cacheKeyOf(snapshotKey, st.cacheKeySuffix, st.saveGeneration);
  if (st.recapture && !st.captured) {
    try {
      await log.step("recapture", async () => {
        log.info(`the restored entry did not resume: capturing a fresh snapshot for ${key}`);
        await captureOnly({ ...config, forceCapture: true }, log.sink);
      });
    } catch (err) {
      log.warn(`could not capture a fresh snapshot: ${describeError(err)}`);
      return notSaved(`the fresh capture failed: ${describeError(err)}`);
    }
  }
  const r: SaveOutcome = await log.step("cache-save", async () => {
    log.info(`saving ${key} (${decision.why})`);
    return saveSnapshot({
      snapshotKey,
      suffix: st.cacheKeySuffix,
      generation: st.saveGeneration,
      storeRoot: config.snapshotDir,
      dir: st.cacheDir,
      log,
      client,
    });
  });
  if (r.kind === "saved") {
    const why = `${(r.bytes / 1024 / 1024).toFixed(1)} MiB as cache entry ${r.entryId} (${key}) in ${(r.ms / 1000).toFixed(1)} s`;
    log.info(`saved ${why}`);
    core.setOutput("saved", "true");
    await writeSaveSummary(true, why).catch(() => undefined);
  } else if (r.kind === "lost-race") {
    await notSaved(`another job saved ${key} first, which is as good`);
  } else {
    await notSaved(r.outage ? `the Actions cache service failed: ${r.reason}` : r.reason);
  }
}

/**
 * The QEMU .debs and the image this job downloaded, each guarded: a failure
 * is a warning and the other still goes. Saved from any branch, unlike the
 * snapshot: an entry is readable only from its own ref (and the refs it is
 * the base of), so a pull request's entry never reaches the default
 * branch's jobs; the key names what the entry must be (the runner image's
 * package set, the image's digest); and neither holds anything of the
 * repository's (public packages, a public image). The snapshot's
 * default-branch policy is about which branch's guest state others resume.
 */
async function saveDownloads(
  st: EmulatorState,
  log: PhaseLog,
  client: CacheClient | undefined,
): Promise<void> {
  const lines: string[] = [];
  const { aptSave, imageSave } = st;
  if (aptSave) {
    const what = { label: "QEMU packages", noun: "the QEMU packages" };
    await guarded(log, what, lines, async () => {
      const r = await log.step("apt-save", () => saveAptDebs({ ...aptSave, client, log }));
      const size = r.debs === undefined ? "" : `${r.debs} .debs, ${mib(r.bytes ?? 0)}`;
      lines.push(summaryLine(what, r, size, log));
    });
  }
  if (imageSave) {
    const what = { label: "Image", noun: "the image" };
    await guarded(log, what, lines, async () => {
      const r = await log.step("image-save", () =>
        saveImage({ ...imageSave, dir: st.cacheDir, client, log }),
      );
      lines.push(summaryLine(what, r, r.bytes === undefined ? "" : mib(r.bytes), log));
    });
  }
  if (lines.length === 0) return;
  await core.summary
    .addHeading("Hexclave emulator: QEMU packages and image", 3)
    .addRaw(lines.join(""))
    .write()
    .catch(() => undefined);
}

interface Saved {
  /** For the summary: "QEMU packages saved: yes". */
  label: string;
  /** For the log: "saved the QEMU packages". */
  noun: string;
}

async function guarded(log: PhaseLog, what: Saved, lines: string[], fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const why = describeError(err);
    log.warn(`post step: could not save ${what.noun} to the Actions cache: ${why}`);
    lines.push(`<p>${what.label} saved: <b>no</b> (${escape(why)})</p>`);
  }
}

/** The log's and the summary's word on one save. */
function summaryLine(what: Saved, r: EntrySave, size: string, log: PhaseLog): string {
  let saved = false;
  let why: string;
  if (r.kind === "saved") {
    saved = true;
    why = `${size ? `${size} ` : ""}as cache entry ${r.entryId} (${r.key}) in ${(r.ms / 1000).toFixed(1)} s`;
    log.info(`saved ${what.noun}: ${why}`);
  } else if (r.kind === "lost-race") {
    why = `another job saved ${r.key} first, which is as good`;
  } else {
    why = r.reason;
  }
  return `<p>${what.label} saved: <b>${saved ? "yes" : "no"}</b> (${escape(why)})</p>`;
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
