/**
 * The one-node cluster of scripts/k8s/cluster.sh (a real kubelet, containerd,
 * kube-proxy and control plane on this machine) for the end-to-end tests:
 * brought up, or reused when one already runs (then left running), and the
 * agent's image built by scripts/k8s/build-image.sh and imported into its
 * containerd under the chart's default name.
 */
import { execFile, execFileSync } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { REPO_ROOT } from "./tools.js";

const run = promisify(execFile);
const CLUSTER_SH = join(REPO_ROOT, "scripts/k8s/cluster.sh");
const BUILD_IMAGE_SH = join(REPO_ROOT, "scripts/k8s/build-image.sh");

export interface RealCluster {
  kubeconfigPath: string;
  nodeName: string;
  nodeIp: string;
  kubectlBin: string;
  /** cluster.sh's state dir: `down` removes it, and everything in it. */
  stateDir: string;
  /** containerd's socket (ctr --address). */
  ctrAddress: string;
  /** True when this process brought it up (and stop() takes it down). */
  startedHere: boolean;
  /** Seconds `cluster.sh up` took (0 when reused). */
  upSeconds: number;
  kubectl(args: string[], input?: string): string;
  helm(args: string[]): string;
  admin(): KubeConfig;
  /** `kubectl get -o json`, undefined when NotFound. */
  getJson<T = Record<string, unknown>>(args: string[]): T | undefined;
  /** Takes the cluster down when this process brought it up; returns the seconds `down` took. */
  stop(): Promise<number | undefined>;
}

function envOf(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .trim()
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** Brings the cluster up (cluster.sh waits on every part of it) or reuses the running one. */
export async function startRealCluster(): Promise<RealCluster> {
  const running = await run("bash", [CLUSTER_SH, "status"]).then(
    () => true,
    () => false,
  );
  const t0 = performance.now();
  if (!running) {
    try {
      await run("bash", [CLUSTER_SH, "up"], { maxBuffer: 16 << 20 });
    } catch (err) {
      throw new Error(`cluster.sh up failed:\n${(err as { stderr?: string }).stderr ?? String(err)}`);
    }
  }
  const upSeconds = running ? 0 : (performance.now() - t0) / 1000;
  const env = envOf((await run("bash", [CLUSTER_SH, "env"])).stdout);
  const kubeconfigPath = env.KUBECONFIG!;
  const kubectl = (args: string[], input?: string): string =>
    execFileSync(env.KUBECTL_BIN!, [`--kubeconfig=${kubeconfigPath}`, ...args], {
      encoding: "utf8",
      input,
      stdio: ["pipe", "pipe", "pipe"],
      maxBuffer: 64 << 20,
    });
  return {
    kubeconfigPath,
    nodeName: env.NODE_NAME!,
    nodeIp: env.NODE_IP!,
    kubectlBin: env.KUBECTL_BIN!,
    stateDir: env.STATE_DIR!,
    ctrAddress: env.CTR_ADDRESS!,
    startedHere: !running,
    upSeconds,
    kubectl,
    helm: (args) =>
      execFileSync(env.HELM_BIN!, [`--kubeconfig=${kubeconfigPath}`, ...args], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      }),
    admin: () => {
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfigPath);
      return kc;
    },
    getJson: <T>(args: string[]): T | undefined => {
      try {
        return JSON.parse(kubectl(["get", ...args, "-o", "json"])) as T;
      } catch (err) {
        if (/NotFound|not found/.test((err as { stderr?: string }).stderr ?? "")) return undefined;
        throw err;
      }
    },
    stop: async () => {
      if (running || process.env.HEXCLAVE_KEEP_CLUSTER) return undefined;
      const t = performance.now();
      await run("bash", [CLUSTER_SH, "down"]);
      return (performance.now() - t) / 1000;
    },
  };
}

export interface AgentImage {
  /** The image's name (the chart's default image.repository:appVersion). */
  name: string;
  archive: string;
  /** Seconds the build (a cache hit is quick) and the import took. */
  seconds: number;
}

/** Builds (cached by its inputs) and imports the agent's image into the cluster's containerd. */
export async function importAgentImage(cluster: RealCluster): Promise<AgentImage> {
  const t0 = performance.now();
  try {
    const { stdout } = await run("bash", [BUILD_IMAGE_SH, "--import", cluster.ctrAddress], {
      maxBuffer: 16 << 20,
    });
    const [archive, name] = stdout.trim().split("\n");
    return { name: name!, archive: archive!, seconds: (performance.now() - t0) / 1000 };
  } catch (err) {
    throw new Error(`build-image.sh failed:\n${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
}
