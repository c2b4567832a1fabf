/**
 * The warm-up DaemonSet's process: make sure the node's store has a snapshot
 * for the configured image and layout (the engine's capture), then stay up
 * answering /readyz so the DaemonSet shows which nodes are warm.
 */
import { existsSync } from "node:fs";
import { captureOnly, describeError, pullImage } from "../../engine/index.js";
import { startProbeServer } from "../http/probe-server.js";
import { agentConfig } from "./agent.js";
import { AGENT_ENV } from "./contract.js";

export async function runWarm(
  env: NodeJS.ProcessEnv,
  log: (l: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<{
  done: Promise<number>;
  stop(): Promise<void>;
}> {
  let state: { ready: boolean; problem?: string; key?: string } = { ready: false, problem: "capturing" };
  const server = await startProbeServer({
    host: "0.0.0.0",
    port: Number(env[AGENT_ENV.port] ?? 8090),
    healthz: () => undefined,
    readyz: () => (state.ready ? undefined : state.problem),
    json: { "/status": () => state },
  });
  let finish!: (code: number) => void;
  const done = new Promise<number>((r) => (finish = r));
  void (async () => {
    try {
      const config = agentConfig(env);
      const url = env[AGENT_ENV.imageUrl];
      if (url && !existsSync(config.image)) await pullImage(url, config.image);
      const r = await captureOnly(config, (e) => {
        if (e.kind !== "phase-start") log(`[warm] ${"message" in e ? e.message : `${e.phase} ${e.ms} ms`}`);
      });
      state = { ready: true, key: r.key };
      log(`[warm] snapshot ${r.key} ${r.skipped ? "was already in the store" : "captured"}`);
    } catch (err) {
      state = { ready: false, problem: describeError(err) };
      log(`[warm] failed: ${state.problem}`);
      await server.close();
      finish(1);
    }
  })();
  return {
    done,
    stop: async () => {
      await server.close();
      finish(0);
    },
  };
}
