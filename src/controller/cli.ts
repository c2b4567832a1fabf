/**
 * hexclave-emulator-k8s: the Kubernetes edge's processes.
 *   controller [--config <file>]   the controller (in-cluster or $KUBECONFIG)
 *   agent                          the engine inside an Emulator's Pod (config from env)
 *   warm                           the warm-up DaemonSet: capture into the node's store, then idle
 *   crd                            prints the CRDs (Emulator, EmulatorPool, EmulatorClaim) as a JSON
 *                                  List (kubectl apply -f -)
 */
import { KubeConfig } from "@kubernetes/client-node";
import { parseArgs } from "node:util";
import { describeError } from "../engine/index.js";
import { runAgent } from "./agent/agent.js";
import { runWarm } from "./agent/warm.js";
import { EmulatorController, jsonLogger } from "./controller.js";
import { emulatorCrd } from "./crd/manifest.js";
import { claimCrd, poolCrd } from "./crd/pool-manifest.js";
import { loadControllerOptions } from "./options.js";

export async function k8sMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case "agent": {
      const agent = await runAgent(env);
      const onSignal = () => void agent.stop();
      process.once("SIGTERM", onSignal);
      process.once("SIGINT", onSignal);
      return agent.done;
    }
    case "warm": {
      const warm = await runWarm(env);
      const onSignal = () => void warm.stop();
      process.once("SIGTERM", onSignal);
      process.once("SIGINT", onSignal);
      return warm.done;
    }
    case "controller": {
      const { values } = parseArgs({ args: rest, options: { config: { type: "string" } } });
      const options = loadControllerOptions(env, values.config);
      const kc = new KubeConfig();
      kc.loadFromDefault();
      let exit!: (code: number) => void;
      const exited = new Promise<number>((r) => (exit = r));
      const controller = new EmulatorController(kc, options, {
        onLostLeadership: () => {
          jsonLogger("error", "lost the leader Lease; exiting so a clean replica takes over");
          void controller.stop().finally(() => exit(1));
        },
      });
      const onSignal = () => void controller.stop().finally(() => exit(0));
      process.once("SIGTERM", onSignal);
      process.once("SIGINT", onSignal);
      await controller.start();
      jsonLogger("info", "controller started", {
        identity: options.identity,
        namespace: options.watchNamespace || "(all)",
        http: controller.httpPort,
      });
      return exited;
    }
    case "crd":
      process.stdout.write(
        `${JSON.stringify({ apiVersion: "v1", kind: "List", items: [emulatorCrd(), poolCrd(), claimCrd()] }, null, 2)}\n`,
      );
      return 0;
    default:
      process.stderr.write("usage: hexclave-emulator-k8s controller [--config file] | agent | warm | crd\n");
      return 2;
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  k8sMain(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`hexclave-emulator-k8s: ${describeError(err)}\n`);
      process.exit(1);
    },
  );
}
