/**
 * The Emulator custom resource (emulator.hexclave.com/v1alpha1): its spec and
 * status as zod types. The CRD's OpenAPI schema is generated from these
 * (crd/manifest.ts), so the API server and the controller validate the same
 * shape; refinements the API server cannot express are checked again by the
 * controller (parseSpec).
 */
import { isAbsolute } from "node:path";
import type { V1OwnerReference } from "@kubernetes/client-node";
import { z } from "zod";
import { ARCHES, SERVICE_NAMES, SNAPSHOT_MODES } from "../../engine/index.js";

export const GROUP = "emulator.hexclave.com";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = "Emulator";
export const PLURAL = "emulators";
export const SINGULAR = "emulator";
export const SHORT_NAMES = ["emu"];
/** The finalizer that makes deletion wait for a clean VM stop. */
export const FINALIZER = `${GROUP}/stop-vm`;
/** Emulator names stay short enough for `<name>-emulator` to be a DNS label (the Pod's hostname). */
export const MAX_NAME_LENGTH = 54;

const labelValue = z
  .string()
  .max(63)
  .regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/);
const labelKey = z
  .string()
  .min(1)
  .max(317)
  .regex(
    /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/,
  );
const port = z.number().int().min(1).max(65535);
/** A Kubernetes object name (a DNS subdomain). */
export const objectName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);

export const Toleration = z.object({
  key: z.string().max(317).optional(),
  operator: z.enum(["Exists", "Equal"]).optional(),
  value: z.string().max(63).optional(),
  effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
  tolerationSeconds: z.number().int().optional(),
});
export type Toleration = z.infer<typeof Toleration>;

export const Memory = z
  .string()
  .regex(/^[1-9][0-9]*(Mi|Gi)$/)
  .describe("guest RAM as a Kubernetes quantity in Mi or Gi, e.g. 4Gi");

/** "4Gi" → 4096, "512Mi" → 512. */
export function memoryMiB(q: string): number {
  const m = /^([1-9][0-9]*)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`memory ${q} is not a quantity in Mi or Gi`);
  return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
}

const ServicePorts = z
  .object(
    Object.fromEntries(SERVICE_NAMES.map((s) => [s, port.optional()])) as Record<
      (typeof SERVICE_NAMES)[number],
      z.ZodOptional<typeof port>
    >,
  )
  .describe("the port each service listens on in the Pod and the Service (default: the engine's ports)");

export const EmulatorSpec = z.object({
  image: z
    .string()
    .min(1)
    .max(2048)
    .describe(
      "the emulator image: an https:// URL (pulled once into the node's store, checked against <url>.sha256) or an absolute path in the Pod (the node store, or imageVolume mounted at /images)",
    ),
  imageVolume: z
    .object({ claimName: objectName })
    .optional()
    .describe("a PersistentVolumeClaim holding images, mounted read-only at /images"),
  arch: z.enum(ARCHES).optional().describe("guest architecture (default: the node's)"),
  resources: z
    .object({
      memory: Memory.default("4Gi"),
      cpus: z.number().int().min(1).max(64).default(2).describe("virtual CPUs"),
    })
    .default({ memory: "4Gi", cpus: 2 }),
  rotation: z
    .boolean()
    .default(true)
    .describe("rotate the snapshot's placeholder secrets to the keys in status.secretName"),
  snapshot: z
    .enum(SNAPSHOT_MODES)
    .default("auto")
    .describe(
      "auto: resume from the node's store or capture; never: cold boot; required: fail without a snapshot",
    ),
  ports: ServicePorts.optional(),
  service: z
    .object({
      type: z.enum(["ClusterIP", "NodePort", "LoadBalancer"]).default("ClusterIP"),
      expose: z
        .array(z.enum(SERVICE_NAMES))
        .max(SERVICE_NAMES.length)
        .default([...SERVICE_NAMES])
        .describe("which services the Service exposes")
        .meta({ "x-kubernetes-list-type": "set" }),
    })
    .default({ type: "ClusterIP", expose: [...SERVICE_NAMES] }),
  hostShare: z
    .object({
      claimName: objectName.describe("a PersistentVolumeClaim shared with the guest at /host"),
      readOnly: z.boolean().default(true),
    })
    .optional()
    .describe("a volume the guest sees under /host (a claim, never the node's filesystem)"),
  nodeSelector: z.record(labelKey, labelValue).optional(),
  tolerations: z.array(Toleration).max(32).optional(),
  ttlSeconds: z
    .number()
    .int()
    .min(60)
    .max(31_536_000)
    .optional()
    .describe("delete the Emulator this many seconds after its creation (ephemeral CI use)"),
});
export type EmulatorSpecInput = z.input<typeof EmulatorSpec>;
export type EmulatorSpec = z.output<typeof EmulatorSpec>;

export const CONDITION_TYPES = ["Ready", "SnapshotResumed", "SecretsRotated", "Degraded"] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];

export const Condition = z.object({
  type: z.string().min(1).max(316),
  status: z.enum(["True", "False", "Unknown"]),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
  message: z.string().max(32768),
  lastTransitionTime: z.string().meta({ format: "date-time" }),
  observedGeneration: z.number().int().min(0).optional(),
});
export type Condition = z.infer<typeof Condition>;

export const Endpoint = z.object({
  name: z.enum(SERVICE_NAMES),
  host: z.string(),
  port,
  url: z.string(),
});
export type Endpoint = z.infer<typeof Endpoint>;

export const BOOT_MODES = ["resume", "cold"] as const;

export const EmulatorStatus = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  conditions: z
    .array(Condition)
    .max(16)
    .optional()
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] }),
  phase: z.enum(["Pending", "Starting", "Ready", "Degraded", "Terminating"]).optional(),
  bootMode: z.enum(BOOT_MODES).optional(),
  fallbackReason: z.string().max(4096).optional(),
  startupSeconds: z
    .number()
    .min(0)
    .optional()
    .describe("from Pod start to a healthy emulator, as the agent measured"),
  timings: z.record(z.string(), z.number()).optional().describe("milliseconds per engine phase"),
  endpoints: z.array(Endpoint).max(8).optional(),
  secretName: z.string().optional().describe("the Secret holding the live keys"),
  snapshotKey: z.string().optional(),
  strategy: z.string().optional(),
  qemuVersion: z.string().optional(),
  accelerator: z.string().optional(),
  node: z.string().optional(),
  podName: z.string().optional(),
  podUID: z.string().optional().describe("the Pod the boot report belongs to"),
  expiresAt: z.string().meta({ format: "date-time" }).optional(),
});
export type EmulatorStatus = z.infer<typeof EmulatorStatus>;

/** Metadata of our kinds as the API returns it (kept loose: the API server owns it). */
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string | Date;
  deletionTimestamp?: string | Date;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: V1OwnerReference[];
}

/** An Emulator as the API returns it. */
export interface Emulator {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: EmulatorSpecInput;
  status?: EmulatorStatus;
}

export type SpecCheck = { ok: true; spec: EmulatorSpec } | { ok: false; problems: string[] };

/** The spec with defaults applied, plus what the schema cannot say (image is a URL or an absolute path). */
export function parseSpec(raw: unknown): SpecCheck {
  const parsed = EmulatorSpec.safeParse(raw ?? {});
  if (!parsed.success) {
    return {
      ok: false,
      problems: parsed.error.issues.map((i) => `spec.${i.path.join(".")}: ${i.message}`),
    };
  }
  const spec = parsed.data;
  const problems: string[] = [];
  if (!isImageUrl(spec.image) && !isAbsolute(spec.image)) {
    problems.push(`spec.image: "${spec.image}" is neither an http(s) URL nor an absolute path`);
  }
  if (spec.image.startsWith("/images/") && !spec.imageVolume) {
    problems.push("spec.image: a path under /images needs spec.imageVolume");
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, spec };
}

export function isImageUrl(image: string): boolean {
  return /^https?:\/\//.test(image);
}
