/**
 * The warm-up DaemonSet's process: make sure the node's store has a snapshot
 * for the configured image and layout (the engine's capture, which stops its
 * VM when done), then mark its own Pod warmed and stay up answering /readyz,
 * using next to nothing. The Pod requests little and may burst to a full
 * capture's memory (its limit), so warming never holds an emulator's worth
 * of a node's capacity; emulator Pods prefer nodes whose warm-up Pod carries
 * the mark (a preferred pod affinity, objects/pod.ts).
 */
import { existsSync } from "node:fs";
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { captureOnly, describeError, pullImage } from "../../engine/index.js";
import { startProbeServer } from "../http/probe-server.js";
import { WARMED_LABEL } from "../objects/names.js";
import { agentConfig } from "./agent.js";
import { AGENT_ENV } from "./contract.js";

export interface WarmDeps {
  capture?: typeof captureOnly;
  /** Labels the warm-up Pod as warmed; by default through the API with the Pod's own token. */
  markWarmed?: (env: NodeJS.ProcessEnv) => Promise<void>;
  log?: (l: string) => void;
}

/** The Pod's own label, set with its ServiceAccount (a Role on pods in its namespace). */
export async function markPodWarmed(env: NodeJS.ProcessEnv, kc?: KubeConfig): Promise<void> {
  const name = env.POD_NAME;
  const namespace = env.POD_NAMESPACE;
  if (!name || !namespace) throw new Error("POD_NAME and POD_NAMESPACE are not set (the downward API)");
  const config = kc ?? new KubeConfig();
  if (!kc) config.loadFromCluster();
  await config
    .makeApiClient(CoreV1Api)
    .patchNamespacedPod(
      { name, namespace, body: { metadata: { labels: { [WARMED_LABEL]: "true" } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
}

export async function runWarm(
  env: NodeJS.ProcessEnv,
  deps: WarmDeps = {},
): Promise<{
  done: Promise<number>;
  stop(): Promise<void>;
}> {
  const log = deps.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const capture = deps.capture ?? captureOnly;
  const markWarmed = deps.markWarmed ?? ((e: NodeJS.ProcessEnv) => markPodWarmed(e));
  let state: { ready: boolean; problem?: string; key?: string; marked?: boolean } = {
    ready: false,
    problem: "capturing",
  };
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
      const r = await capture(config, (e) => {
        if (e.kind !== "phase-start") log(`[warm] ${"message" in e ? e.message : `${e.phase} ${e.ms} ms`}`);
      });
      state = { ready: true, key: r.key };
      log(`[warm] snapshot ${r.key} ${r.skipped ? "was already in the store" : "captured"}`);
    } catch (err) {
      state = { ready: false, problem: describeError(err) };
      log(`[warm] failed: ${state.problem}`);
      await server.close();
      finish(1);
      return;
    }
    // Optional: without the mark, emulators simply do not prefer this node.
    try {
      await markWarmed(env);
      state = { ...state, marked: true };
      log(`[warm] marked this Pod ${WARMED_LABEL}=true`);
    } catch (err) {
      log(
        `[warm] WARNING: could not mark this Pod warmed (${(err as Error).message}); emulators will not prefer this node`,
      );
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
