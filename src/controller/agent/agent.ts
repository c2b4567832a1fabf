/**
 * The agent: the engine inside an Emulator's Pod. It reads the engine's
 * config from the Pod's environment and the live keys from the mounted
 * Secret, resumes (or captures, or cold-boots) the emulator, and serves:
 *   /healthz  the agent is alive (liveness probe)
 *   /readyz   the VM runs and every service answers (readiness probe)
 *   /status   the boot report the controller copies into the Emulator's status
 *   /metrics  the node store's size and snapshots (agent-metrics.ts)
 * SIGTERM stops the VM cleanly (agent → ACPI → signals) before exiting.
 * A failed start is written to the termination message, which the
 * controller reads from the Pod's status. The agent needs no API access.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import {
  EngineError,
  checkOnce,
  checkSecrets,
  describeError,
  isAlive,
  loadConfig,
  probeHost,
  pullImage,
  readPidFile,
  runPaths,
  servicesFor,
  start as engineStart,
  stopVm,
  type EmulatorConfig,
  type EngineEvent,
  type RotatedSecrets,
  type StartOptions,
  type StartResult,
} from "../../engine/index.js";
import { realClock, type Clock } from "../clock.js";
import { startProbeServer, type ProbeServer } from "../http/probe-server.js";
import { SECRET_KEYS } from "../objects/secret.js";
import { agentMetrics } from "./agent-metrics.js";
import { AGENT_ENV, type AgentReport } from "./contract.js";

export interface AgentDeps {
  start?: (
    config: EmulatorConfig,
    sink: (e: EngineEvent) => void,
    options: StartOptions,
  ) => Promise<StartResult>;
  log?: (line: string) => void;
  /** How long a failed agent keeps answering /status before it exits (default 10 s). */
  failLingerMs?: number;
  host?: string;
  /** Time for the report, the health cache, the fail linger and the VM watch (the wall clock by default). */
  clock?: Clock;
}

export interface RunningAgent {
  port: number;
  report(): AgentReport;
  /** Resolves with the report once its state is one of `states` (at once if it is already). */
  reached(states: readonly AgentReport["state"][]): Promise<AgentReport>;
  /** Resolves with the process exit code once the agent is done (stopped or failed). */
  done: Promise<number>;
  stop(): Promise<void>;
}

/** Reads the four keys (one file each) from the mounted Secret. */
export function readKeys(dir: string): RotatedSecrets {
  const keys = Object.fromEntries(
    SECRET_KEYS.map((k) => {
      const path = join(dir, k);
      if (!existsSync(path)) {
        throw new EngineError("KEYS_MISSING", `the Secret mounted at ${dir} has no ${k}`, {
          hint: "the controller writes all four keys; was the Secret edited?",
        });
      }
      return [k, readFileSync(path, "utf8").trim()];
    }),
  ) as unknown as RotatedSecrets;
  return checkSecrets(keys);
}

/** The engine config from the Pod's env; never the node's root as host share. */
export function agentConfig(env: NodeJS.ProcessEnv): EmulatorConfig {
  const shareSet = Boolean(env.HEXCLAVE_EMULATOR_HOST_SHARE);
  const config = loadConfig({
    env,
    cwd: "/",
    homeDir: env.HOME ?? homedir(),
    hostArch: process.arch,
    overrideSource: "agent",
    ...(shareSet ? {} : { overrides: { hostShare: { mode: "none" } } }),
  });
  if (config.hostShare.mode === "root" || config.hostShare.mode === "cwd") {
    throw new EngineError("HOST_SHARE_REFUSED", "the agent never shares the node's filesystem", {
      hint: "set HEXCLAVE_EMULATOR_HOST_SHARE to none or to a mounted volume's path",
    });
  }
  return config;
}

export async function runAgent(env: NodeJS.ProcessEnv, deps: AgentDeps = {}): Promise<RunningAgent> {
  const log = deps.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const clock = deps.clock ?? realClock;
  const t0 = clock.now();
  const report: AgentReport = {
    state: "starting",
    emulator: env[AGENT_ENV.emulator],
    startedAt: new Date(t0).toISOString(),
  };
  const watchers = new Set<() => void>();
  const changed = () => {
    for (const w of [...watchers]) w();
  };
  const reached = (states: readonly AgentReport["state"][]) =>
    new Promise<AgentReport>((resolve) => {
      const check = () => {
        if (!states.includes(report.state)) return;
        watchers.delete(check);
        resolve(report);
      };
      watchers.add(check);
      check();
    });
  let config: EmulatorConfig | undefined;
  let healthCache: { at: number; problem: string | undefined } | undefined;
  let finish!: (code: number) => void;
  const done = new Promise<number>((r) => (finish = r));
  let stopping: Promise<void> | undefined;

  const vmAlive = () => {
    if (!config) return false;
    const pid = readPidFile(runPaths(config.runDir).pidFile);
    return pid !== undefined && isAlive(pid);
  };
  const readyz = async (): Promise<string | undefined> => {
    if (report.state !== "ready" || !config) return `the emulator is ${report.state}`;
    if (healthCache && clock.now() - healthCache.at < 1000) return healthCache.problem;
    let problem: string | undefined;
    if (!vmAlive()) problem = "the VM is not running";
    else {
      const bad = (
        await checkOnce(servicesFor(config), probeHost(config.bindAddress), { timeoutMs: 1500 })
      ).filter((s) => !s.ok);
      problem =
        bad.length > 0 ? `unhealthy: ${bad.map((s) => `${s.name} (${s.detail})`).join(", ")}` : undefined;
    }
    healthCache = { at: clock.now(), problem };
    return problem;
  };
  const port = Number(env[AGENT_ENV.port] ?? 8090);
  const server: ProbeServer = await startProbeServer({
    host: deps.host ?? "0.0.0.0",
    port,
    healthz: () => undefined,
    readyz,
    metrics: agentMetrics(() => config?.snapshotDir),
    json: { "/status": () => report },
  });
  log(`[agent] listening on ${server.port} for ${report.emulator ?? "an emulator"}`);

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const wasReady = report.state === "ready";
      report.state = "stopping";
      changed();
      if (config) {
        const r = await stopVm(runPaths(config.runDir), config.stopGraceSec, (e) =>
          log(`[agent] ${eventLine(e)}`),
        ).catch((err: unknown) => {
          log(`[agent] stop failed: ${describeError(err)}`);
          return undefined;
        });
        if (r) log(`[agent] VM stopped (${r.wasRunning ? `via ${r.via}` : "it was not running"})`);
      }
      await server.close();
      finish(wasReady || report.error === undefined ? 0 : 1);
    })();
    return stopping;
  };

  const fail = (err: unknown) => {
    const code = err instanceof EngineError ? err.code : "AGENT_FAILED";
    report.state = "failed";
    report.error = { code, message: describeError(err) };
    log(`[agent] failed: ${report.error.message}`);
    const termLog =
      env.HEXCLAVE_AGENT_TERMINATION_LOG ??
      (existsSync("/dev/termination-log") ? "/dev/termination-log" : undefined);
    if (termLog) {
      try {
        writeFileSync(termLog, `${code}: ${report.error.message}`.slice(0, 4000));
      } catch {
        /* best effort */
      }
    }
    clock.setTimeout(() => void stop(), deps.failLingerMs ?? 10_000);
    changed();
  };

  // A VM that dies under a ready agent fails the Pod, so the kubelet restarts it.
  const watchVm = () => {
    clock.setTimeout(() => {
      if (report.state !== "ready") return;
      if (vmAlive()) return watchVm();
      fail(
        new EngineError("VM_EXITED", "the VM exited under a ready agent", {
          hint: "see serial.log in the run directory",
        }),
      );
    }, 2_000);
  };

  void (async () => {
    try {
      config = agentConfig(env);
      const keysDir = env[AGENT_ENV.keysDir];
      const secrets = config.rotation && keysDir ? readKeys(keysDir) : undefined;
      const url = env[AGENT_ENV.imageUrl];
      if (url && !existsSync(config.image)) {
        log(`[agent] pulling ${url}`);
        const pulled = await pullImage(url, config.image);
        log(
          `[agent] pulled ${pulled.bytes} bytes in ${pulled.ms} ms (checksum ${pulled.checksumVerified ? "verified" : "not published"})`,
        );
      }
      const start = deps.start ?? engineStart;
      const result = await start(config, (e) => log(`[agent] ${eventLine(e)}`), { secrets });
      if (stopping) return;
      const readyAt = clock.now();
      Object.assign(report, {
        state: "ready",
        readyAt: new Date(readyAt).toISOString(),
        startupSeconds: (readyAt - t0) / 1000,
        bootMode: result.bootMode,
        fallbackReason: result.fallbackReason,
        snapshotKey: result.snapshotKey,
        strategy: result.strategy,
        captured: result.captured,
        qemuVersion: result.qemuVersion,
        accelerator: result.accelerator,
        placeholderSecrets: result.placeholderSecrets,
        rotatedToSecret: secrets !== undefined && !result.placeholderSecrets,
        timings: result.timings,
      } satisfies Partial<AgentReport>);
      log(
        `[agent] ready: ${result.bootMode}${result.fallbackReason ? ` (${result.fallbackReason})` : ""} in ${report.startupSeconds} s`,
      );
      watchVm();
      changed();
    } catch (err) {
      if (stopping) return;
      fail(err);
    }
  })();

  return { port: server.port, report: () => report, reached, done, stop };
}

function eventLine(e: EngineEvent): string {
  if (e.kind === "phase-end") return `${e.phase} ${(e.ms / 1000).toFixed(2)} s`;
  if (e.kind === "phase-start") return `${e.phase}…`;
  return e.kind === "warn" ? `WARNING: ${e.message}` : e.message;
}
