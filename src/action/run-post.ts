/**
 * The Action's post step (post-if: always()): diagnostics when the job or the
 * emulator failed, stop the VM cleanly, then save the snapshot this job
 * captured when save-on allows (or, when the restored entry did not resume,
 * capture a fresh one and save it as the next generation).
 *
 * Nothing here fails the job. Every step is caught and warned; and, as
 * actions/cache does, process-level handlers turn an exception or rejection
 * that escapes @actions/cache's upload internals (a socket callback, a
 * stream) into a warning, and the step ends with exit code 0.
 */
import * as core from "@actions/core";
import { captureOnly, describeError, runPaths, status, stopVm, type StatusReport } from "../engine/index.js";
import type { CacheClient } from "./cache-client.js";
import { cacheKeyOf } from "./cache-key.js";
import { diagnostics } from "./diagnostics.js";
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
