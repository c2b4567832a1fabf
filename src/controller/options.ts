/**
 * The controller's own configuration: a JSON file the chart renders from its
 * values (a ConfigMap), plus the Pod's name and namespace from the downward
 * API. zod at the edge; defaults make an empty file valid.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { Toleration } from "./crd/types.js";

export const KVM_MODES = ["device-plugin", "host-path", "none"] as const;

export const AgentOptions = z.object({
  /** The container image that runs the agent (the same image as the controller by default). */
  image: z.string().min(1).default("ghcr.io/hexclave/emulator-action:latest"),
  imagePullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).default("IfNotPresent"),
  command: z.array(z.string()).default(["hexclave-emulator-k8s"]),
  args: z.array(z.string()).default(["agent"]),
  /** The agent's HTTP port: /healthz, /readyz (the readiness probe) and /status (read by the controller). */
  port: z.number().int().min(1).max(65535).default(8090),
  /** The node's snapshot and image store (a hostPath), keyed exactly as the engine keys it. */
  storeHostPath: z.string().startsWith("/").default("/var/lib/hexclave-emulator"),
  storeMountPath: z.string().startsWith("/").default("/var/lib/hexclave-emulator"),
  /** The run directory (an emptyDir): sockets, overlay disk, logs. */
  runMountPath: z.string().startsWith("/").default("/run/hexclave-emulator"),
  /** Where the Secret's keys are mounted (read-only files). */
  keysMountPath: z.string().startsWith("/").default("/var/run/secrets/hexclave-emulator"),
  kvm: z
    .object({
      mode: z.enum(KVM_MODES).default("device-plugin"),
      /** The extended resource a KVM device plugin advertises. */
      resourceName: z.string().default("devices.kubevirt.io/kvm"),
    })
    .default({ mode: "device-plugin", resourceName: "devices.kubevirt.io/kvm" }),
  /** Run the agent container privileged (only for kvm.mode host-path on nodes whose runtime needs it). */
  privileged: z.boolean().default(false),
  runAsNonRoot: z.boolean().default(true),
  runAsUser: z.number().int().min(0).optional().default(65532),
  runAsGroup: z.number().int().min(0).optional().default(65532),
  fsGroup: z.number().int().min(0).optional(),
  /** Memory the Pod asks for beyond the guest's RAM (QEMU, the agent). */
  memoryOverheadMiB: z.number().int().min(0).default(512),
  /**
   * The CPU the Pod requests per guest vCPU, in percent: 100 reserves a core per vCPU; less
   * overcommits, as CI fleets whose guests mostly wait often do.
   */
  cpuRequestPercent: z.number().int().min(1).max(100).default(100),
  nodeSelector: z.record(z.string(), z.string()).default({}),
  tolerations: z.array(Toleration).default([]),
  priorityClassName: z.string().optional(),
  stopGraceSec: z.number().int().min(0).max(3600).default(30),
  /** With the warm-up DaemonSet: prefer nodes whose warm-up Pod (in this namespace) is marked warmed. */
  preferWarmNodesIn: z.string().optional(),
  serviceAccountName: z.string().optional(),
});
export type AgentOptions = z.infer<typeof AgentOptions>;

export const ControllerOptions = z.object({
  /** The controller's namespace (the Lease lives there). */
  namespace: z.string().default("hexclave-emulator"),
  /** Watch one namespace; empty watches all. */
  watchNamespace: z.string().default(""),
  identity: z.string().optional(),
  leaderElection: z
    .object({
      enabled: z.boolean().default(true),
      leaseName: z.string().default("hexclave-emulator-controller"),
      leaseDurationSec: z.number().int().min(2).default(15),
      renewDeadlineSec: z.number().int().min(1).default(10),
      retryPeriodSec: z.number().min(0.1).default(2),
    })
    .default({
      enabled: true,
      leaseName: "hexclave-emulator-controller",
      leaseDurationSec: 15,
      renewDeadlineSec: 10,
      retryPeriodSec: 2,
    }),
  workers: z.number().int().min(1).max(64).default(2),
  http: z
    .object({ host: z.string().default("0.0.0.0"), port: z.number().int().min(0).max(65535).default(8080) })
    .default({ host: "0.0.0.0", port: 8080 }),
  clusterDomain: z.string().default("cluster.local"),
  /** How long the controller waits for an agent's /status. */
  reportTimeoutMs: z.number().int().min(100).default(3000),
  /** How often a Ready Emulator is re-checked without any event. */
  resyncSec: z.number().int().min(5).default(300),
  /**
   * A Pod still there this long after its grace period ended (its node is lost or NotReady: no
   * kubelet confirms the deletion) is deleted without waiting (grace 0), with a Warning event.
   */
  forceDeleteAfterSec: z.number().int().min(0).default(60),
  /**
   * Watch the owned Secrets (needs list and watch on Secrets, rbac.ts): a deleted or replaced
   * Secret wakes its Emulator at once. Without it, the change is found at the next reconcile
   * (at the latest after resyncSec).
   */
  watchSecrets: z.boolean().default(false),
  /** Pods replaced because the agent template changed (a helm upgrade), not an Emulator's spec. */
  rollout: z
    .object({
      /** At most this many such replacements coming up at once (each stops a running VM). */
      maxUnavailable: z.number().int().min(1).default(1),
    })
    .default({ maxUnavailable: 1 }),
  agent: AgentOptions.default(AgentOptions.parse({})),
});
export type ControllerOptions = z.infer<typeof ControllerOptions>;
export type ControllerOptionsInput = z.input<typeof ControllerOptions>;

export function controllerOptions(input: ControllerOptionsInput = {}): ControllerOptions {
  const o = ControllerOptions.parse(input);
  o.identity ??= `${hostname()}_${randomBytes(4).toString("hex")}`;
  return o;
}

/** The file named by --config or HEXCLAVE_CONTROLLER_CONFIG, with POD_NAMESPACE and POD_NAME filled in. */
export function loadControllerOptions(env: NodeJS.ProcessEnv, path?: string): ControllerOptions {
  const file = path ?? env.HEXCLAVE_CONTROLLER_CONFIG;
  const raw = file ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>) : {};
  if (env.POD_NAMESPACE && raw.namespace === undefined) raw.namespace = env.POD_NAMESPACE;
  if (env.POD_NAME && raw.identity === undefined)
    raw.identity = `${env.POD_NAME}_${randomBytes(4).toString("hex")}`;
  return controllerOptions(raw as ControllerOptionsInput);
}
