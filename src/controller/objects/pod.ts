/**
 * The Pod that runs one Emulator: the engine in agent mode, configured
 * through the engine's own environment variables, the keys as a read-only
 * Secret volume, the node's snapshot store as a hostPath, the run directory
 * as an emptyDir. Pure: the same Emulator and options give the same Pod, and
 * its spec hash (an annotation) tells the reconcile when to replace it.
 */
import { createHash } from "node:crypto";
import type {
  V1Affinity,
  V1Container,
  V1EnvVar,
  V1Pod,
  V1PodSpec,
  V1Volume,
  V1VolumeMount,
} from "@kubernetes/client-node";
import { SERVICE_NAMES } from "../../engine/index.js";
import { AGENT_ENV, AGENT_PATHS } from "../agent/contract.js";
import { isImageUrl, memoryMiB, type EmulatorSpec } from "../crd/types.js";
import { POOL_LABEL } from "../crd/pool-types.js";
import type { AgentOptions } from "../options.js";
import {
  labelsFor,
  ownerReference,
  podName,
  secretName,
  SPEC_HASH_ANNOTATION,
  WARMED_LABEL,
  type Owned,
} from "./names.js";
import { servicePortsOf } from "./ports.js";
import { PORT_NAMES } from "./service.js";

export const CONTAINER = "emulator";
export const IMAGE_VOLUME_MOUNT = "/images";
export const HOST_SHARE_MOUNT = "/host-share";

const ENGINE_PORT_ENV = {
  dashboard: "EMULATOR_DASHBOARD_PORT",
  backend: "EMULATOR_BACKEND_PORT",
  minio: "EMULATOR_MINIO_PORT",
  inbucket: "EMULATOR_INBUCKET_PORT",
  mockOauth: "EMULATOR_MOCK_OAUTH_PORT",
} as const;

/** Where a pulled image lives in the node store: one file per URL. */
export function pulledImagePath(storeMountPath: string, url: string): string {
  const digest = createHash("sha256").update(url).digest("hex").slice(0, 16);
  return `${storeMountPath}/images/url-${digest}.qcow2`;
}

export function agentEnv(owner: Owned, spec: EmulatorSpec, agent: AgentOptions): V1EnvVar[] {
  const ports = servicePortsOf(spec);
  const ram = memoryMiB(spec.resources.memory);
  const image = isImageUrl(spec.image) ? pulledImagePath(agent.storeMountPath, spec.image) : spec.image;
  const env: [string, string | undefined][] = [
    [AGENT_ENV.emulator, `${owner.namespace}/${owner.name}`],
    [AGENT_ENV.port, String(agent.port)],
    [AGENT_ENV.keysDir, spec.rotation ? agent.keysMountPath : undefined],
    [AGENT_ENV.imageUrl, isImageUrl(spec.image) ? spec.image : undefined],
    ["HEXCLAVE_EMULATOR_HOME", `${agent.runMountPath}/home`],
    ["EMULATOR_RUN_DIR", `${agent.runMountPath}/run`],
    ["HEXCLAVE_EMULATOR_SNAPSHOT_DIR", `${agent.storeMountPath}/snapshots`],
    ["EMULATOR_IMAGE_DIR", `${agent.storeMountPath}/images`],
    ["HEXCLAVE_EMULATOR_IMAGE", image],
    ["EMULATOR_ARCH", spec.arch],
    ["EMULATOR_RAM", String(ram)],
    ["EMULATOR_CPUS", String(spec.resources.cpus)],
    ["HEXCLAVE_EMULATOR_SNAPSHOT", spec.snapshot],
    ["EMULATOR_NO_ROTATION", spec.rotation ? "0" : "1"],
    ["HEXCLAVE_EMULATOR_BIND_ADDRESS", "0.0.0.0"],
    ["HEXCLAVE_EMULATOR_HOST_SHARE", spec.hostShare ? HOST_SHARE_MOUNT : "none"],
    [
      "HEXCLAVE_EMULATOR_HOST_SHARE_READ_ONLY",
      spec.hostShare ? (spec.hostShare.readOnly ? "1" : "0") : undefined,
    ],
    ["HEXCLAVE_EMULATOR_STOP_GRACE", String(agent.stopGraceSec)],
    ...SERVICE_NAMES.map((s): [string, string] => [ENGINE_PORT_ENV[s], String(ports[s])]),
  ];
  return env
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([name, value]) => ({ name, value }));
}

function volumesOf(owner: Owned, spec: EmulatorSpec, agent: AgentOptions): [V1Volume[], V1VolumeMount[]] {
  const volumes: V1Volume[] = [
    { name: "store", hostPath: { path: agent.storeHostPath, type: "DirectoryOrCreate" } },
    { name: "run", emptyDir: {} },
    { name: "tmp", emptyDir: {} },
  ];
  const mounts: V1VolumeMount[] = [
    { name: "store", mountPath: agent.storeMountPath },
    { name: "run", mountPath: agent.runMountPath },
    { name: "tmp", mountPath: "/tmp" },
  ];
  if (spec.rotation) {
    volumes.push({ name: "keys", secret: { secretName: secretName(owner.name), defaultMode: 0o400 } });
    mounts.push({ name: "keys", mountPath: agent.keysMountPath, readOnly: true });
  }
  if (spec.imageVolume) {
    volumes.push({
      name: "images",
      persistentVolumeClaim: { claimName: spec.imageVolume.claimName, readOnly: true },
    });
    mounts.push({ name: "images", mountPath: IMAGE_VOLUME_MOUNT, readOnly: true });
  }
  if (spec.hostShare) {
    volumes.push({
      name: "host-share",
      persistentVolumeClaim: { claimName: spec.hostShare.claimName, readOnly: spec.hostShare.readOnly },
    });
    mounts.push({ name: "host-share", mountPath: HOST_SHARE_MOUNT, readOnly: spec.hostShare.readOnly });
  }
  if (agent.kvm.mode === "host-path") {
    volumes.push({ name: "kvm", hostPath: { path: "/dev/kvm", type: "CharDevice" } });
    mounts.push({ name: "kvm", mountPath: "/dev/kvm" });
  }
  return [volumes, mounts];
}

/** Whole cores as "2", a share of them in millicores ("500m"). */
function cpuRequest(cpus: number, percent: number): string {
  const milli = Math.max(1, Math.round(cpus * percent * 10));
  return milli % 1000 === 0 ? String(milli / 1000) : `${milli}m`;
}

/** A path as one sh word. */
const shellWord = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * The node store is a hostPath, which the kubelet creates root-owned (0755) and fsGroup does not
 * reach. For a non-root agent this root step makes the store and its directories and hands them
 * to the agent's user; nothing else in the Pod runs as root.
 */
function prepareStore(agent: AgentOptions): V1Container | undefined {
  const uid = agent.runAsUser;
  if (uid === undefined || uid === 0) return undefined;
  const dir = shellWord(agent.storeMountPath);
  return {
    name: "prepare-store",
    image: agent.image,
    imagePullPolicy: agent.imagePullPolicy,
    command: [
      "sh",
      "-c",
      `mkdir -p ${dir}/snapshots ${dir}/images && chown -R ${uid}:${agent.runAsGroup ?? uid} ${dir}`,
    ],
    securityContext: {
      runAsUser: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["CHOWN", "DAC_OVERRIDE", "FOWNER"] },
    },
    resources: { requests: { cpu: "10m", memory: "16Mi" }, limits: { memory: "64Mi" } },
    volumeMounts: [{ name: "store", mountPath: agent.storeMountPath }],
    terminationMessagePolicy: "FallbackToLogsOnError",
  };
}

/**
 * Where the Pod would rather run: a pool's instances spread over the nodes when they can (one
 * node's loss takes few of them); with the warm-up DaemonSet, nodes whose store it warmed.
 */
function affinityOf(owner: Owned, agent: AgentOptions): Pick<V1PodSpec, "affinity"> {
  const affinity: V1Affinity = {};
  if (owner.pool)
    affinity.podAntiAffinity = {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 100,
          podAffinityTerm: {
            topologyKey: "kubernetes.io/hostname",
            labelSelector: { matchLabels: { [POOL_LABEL]: owner.pool } },
          },
        },
      ],
    };
  if (agent.preferWarmNodesIn)
    affinity.podAffinity = {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 50,
          podAffinityTerm: {
            labelSelector: { matchLabels: { [WARMED_LABEL]: "true" } },
            namespaces: [agent.preferWarmNodesIn],
            topologyKey: "kubernetes.io/hostname",
          },
        },
      ],
    };
  return Object.keys(affinity).length > 0 ? { affinity } : {};
}

export function buildPod(owner: Owned, spec: EmulatorSpec, agent: AgentOptions): V1Pod {
  const ports = servicePortsOf(spec);
  const ramMiB = memoryMiB(spec.resources.memory);
  const memory = `${ramMiB + agent.memoryOverheadMiB}Mi`;
  const kvm = agent.kvm.mode === "device-plugin" ? { [agent.kvm.resourceName]: "1" } : {};
  const [volumes, volumeMounts] = volumesOf(owner, spec, agent);
  const init = prepareStore(agent);
  // The Secret's files are 0400 root: a non-root agent reads them through the Pod's fsGroup
  // (the kubelet makes them 0440 and of that group), by default the agent's group.
  const fsGroup =
    agent.fsGroup ??
    (agent.runAsUser === undefined || agent.runAsUser === 0
      ? undefined
      : (agent.runAsGroup ?? agent.runAsUser));
  const container: V1Container = {
    name: CONTAINER,
    image: agent.image,
    imagePullPolicy: agent.imagePullPolicy,
    command: agent.command,
    args: agent.args,
    env: agentEnv(owner, spec, agent),
    ports: [
      { name: "agent", containerPort: agent.port, protocol: "TCP" },
      ...SERVICE_NAMES.map((s) => ({ name: PORT_NAMES[s], containerPort: ports[s], protocol: "TCP" })),
    ],
    // Ready soon after the guest is (checked every 2 s, one success is enough), but not flapping on
    // a busy node: a TCG guest, or a capture next to it, can make one health round take seconds.
    // Only five failures in a row (10 s and more) take the Service's endpoints away.
    readinessProbe: {
      httpGet: { path: AGENT_PATHS.readyz, port: "agent" },
      periodSeconds: 2,
      timeoutSeconds: 4,
      successThreshold: 1,
      failureThreshold: 5,
    },
    livenessProbe: {
      httpGet: { path: AGENT_PATHS.healthz, port: "agent" },
      initialDelaySeconds: 10,
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 3,
    },
    resources: {
      requests: { cpu: cpuRequest(spec.resources.cpus, agent.cpuRequestPercent), memory, ...kvm },
      limits: { memory, ...kvm },
    },
    securityContext: {
      allowPrivilegeEscalation: agent.privileged,
      privileged: agent.privileged,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    },
    volumeMounts,
    terminationMessagePolicy: "FallbackToLogsOnError",
  };
  const nodeSelector = {
    ...agent.nodeSelector,
    ...(spec.arch ? { "kubernetes.io/arch": spec.arch } : {}),
    ...spec.nodeSelector,
  };
  const pod: V1Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: podName(owner.name),
      namespace: owner.namespace,
      labels: { ...labelsFor(owner.name), ...(owner.pool ? { [POOL_LABEL]: owner.pool } : {}) },
      annotations: {},
      ownerReferences: [ownerReference(owner)],
    },
    spec: {
      // The agent reads nothing from the API: its keys come as files, its report goes out on /status.
      automountServiceAccountToken: false,
      ...(agent.serviceAccountName ? { serviceAccountName: agent.serviceAccountName } : {}),
      enableServiceLinks: false,
      restartPolicy: "Always",
      terminationGracePeriodSeconds: agent.stopGraceSec + 15,
      ...(Object.keys(nodeSelector).length > 0 ? { nodeSelector } : {}),
      ...affinityOf(owner, agent),
      tolerations: [...agent.tolerations, ...(spec.tolerations ?? [])],
      ...(agent.priorityClassName ? { priorityClassName: agent.priorityClassName } : {}),
      securityContext: {
        runAsNonRoot: agent.runAsNonRoot,
        ...(agent.runAsUser === undefined ? {} : { runAsUser: agent.runAsUser }),
        ...(agent.runAsGroup === undefined ? {} : { runAsGroup: agent.runAsGroup }),
        ...(fsGroup === undefined ? {} : { fsGroup }),
        seccompProfile: { type: "RuntimeDefault" },
      },
      ...(init ? { initContainers: [init] } : {}),
      containers: [container],
      volumes,
    },
  };
  pod.metadata!.annotations![SPEC_HASH_ANNOTATION] = specHash(pod);
  return pod;
}

/** A digest of what the controller decides about a Pod (its spec, labels, owner). */
export function specHash(pod: V1Pod): string {
  const stable = { labels: pod.metadata?.labels, owner: pod.metadata?.ownerReferences, spec: pod.spec };
  return createHash("sha256").update(canonicalJson(stable)).digest("hex").slice(0, 16);
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}
