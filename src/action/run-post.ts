/**
 * The Action's post step (post-if: always()): diagnostics when the job or the
 * emulator failed, stop the VM cleanly, then save the snapshot this job
 * captured when save-on allows. Nothing here fails the job: a stop that needs
 * force or a cache that does not answer are warnings.
 */
import * as core from "@actions/core";
import { describeError, runPaths, status, stopVm, type StatusReport } from "../engine/index.js";
import { diagnostics } from "./diagnostics.js";
import { PhaseLog } from "./log.js";
import { saveDecision } from "./save-policy.js";
import { saveSnapshot } from "./snapshot-cache.js";
import { ActionsStateProvider, readEmulatorState, type EmulatorState, type StateProvider } from "./state.js";

export interface PostOptions {
  state?: StateProvider;
  env?: NodeJS.ProcessEnv;
  earlyExit?: boolean;
}

export async function runPost(options: PostOptions = {}): Promise<void> {
  const env = options.env ?? process.env;
  const log = new PhaseLog();
  try {
    const st = readEmulatorState(options.state ?? new ActionsStateProvider());
    if (!st) {
      log.info("the main step started no emulator: nothing to stop");
    } else {
      await postSteps(st, env, log);
    }
  } catch (err) {
    core.warning(`post step: ${describeError(err)}`);
  }
  if (options.earlyExit) process.exit(process.exitCode ?? 0);
}

async function postSteps(st: EmulatorState, env: NodeJS.ProcessEnv, log: PhaseLog): Promise<void> {
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

  if (st.cache !== "actions" || !st.captured || !st.snapshotKey) {
    const why =
      st.cache === "local"
        ? `snapshots stay in ${config.snapshotDir} (cache: local)`
        : st.cache === "none"
          ? "cache is none"
          : st.outcome !== "started"
            ? "the emulator did not start"
            : "this job did not capture a snapshot (it restored or cold-booted)";
    log.info(`no snapshot to save: ${why}`);
    return;
  }
  const decision = saveDecision(st.saveOn, env);
  if (!decision.save) {
    log.info(`not saving the captured snapshot: ${decision.why}`);
    return;
  }
  const snapshotKey = st.snapshotKey;
  await log.step("cache-save", async () => {
    log.info(`saving ${st.cacheKey ?? snapshotKey} (${decision.why})`);
    const r = await saveSnapshot({ snapshotKey, storeRoot: config.snapshotDir, archive: st.archive, log });
    if (r.kind === "saved") {
      log.info(
        `saved ${(r.bytes / 1024 / 1024).toFixed(1)} MiB as cache entry ${r.entryId} in ${(r.ms / 1000).toFixed(1)} s`,
      );
    }
  });
}
