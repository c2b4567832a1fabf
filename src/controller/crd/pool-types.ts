/**
 * The warm-pool custom resources (emulator.hexclave.com/v1alpha1):
 * - EmulatorPool keeps `replicas` Emulators (its instances) resumed, rotated
 *   and unclaimed, creating at most `maxCreating` at a time;
 * - EmulatorClaim takes one ready instance for itself (or, when the pool has
 *   none, an on-demand Emulator made from the pool's template). A claim owns
 *   no Pod: its status points at the Emulator that serves it.
 * The CRDs' schemas are generated from these (crd/pool-manifest.ts).
 */
import { z } from "zod";
import { Condition, EmulatorSpec, Endpoint, GROUP, objectName, type ObjectMeta } from "./types.js";

export const POOL_KIND = "EmulatorPool";
export const POOL_PLURAL = "emulatorpools";
export const POOL_SINGULAR = "emulatorpool";
export const POOL_SHORT_NAMES = ["emupool"];
export const CLAIM_KIND = "EmulatorClaim";
export const CLAIM_PLURAL = "emulatorclaims";
export const CLAIM_SINGULAR = "emulatorclaim";
export const CLAIM_SHORT_NAMES = ["emuclaim"];

/** On an instance: the pool it belongs to. */
export const POOL_LABEL = `${GROUP}/pool`;
/** On an instance bound to a claim, and on a claim's on-demand Emulator: the claim's name. */
export const CLAIM_LABEL = `${GROUP}/claim`;
/** On an instance: a digest of the pool template it was made from. */
export const TEMPLATE_HASH_ANNOTATION = `${GROUP}/template-hash`;
/** Pool and claim names leave room for `-<5 random characters>` within an Emulator name (54). */
export const MAX_POOL_NAME_LENGTH = 48;

export const EmulatorPoolSpec = z.object({
  template: EmulatorSpec.describe("the spec of every instance (an Emulator's spec)"),
  replicas: z
    .number()
    .int()
    .min(0)
    .max(256)
    .default(1)
    .describe("how many ready, unclaimed instances to keep"),
  maxCreating: z
    .number()
    .int()
    .min(1)
    .max(64)
    .default(2)
    .describe("at most this many instances starting at once"),
});
export type EmulatorPoolSpecInput = z.input<typeof EmulatorPoolSpec>;
export type EmulatorPoolSpec = z.output<typeof EmulatorPoolSpec>;

export const POOL_CONDITION_TYPES = ["Ready", "Schedulable"] as const;

const conditions = z
  .array(Condition)
  .max(8)
  .optional()
  .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] });

export const EmulatorPoolStatus = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  ready: z.number().int().min(0).optional().describe("unclaimed instances that are Ready and rotated"),
  creating: z.number().int().min(0).optional().describe("unclaimed instances still starting"),
  claimed: z.number().int().min(0).optional().describe("instances bound to a claim"),
  conditions,
});
export type EmulatorPoolStatus = z.infer<typeof EmulatorPoolStatus>;

export const EmulatorClaimSpec = z.object({
  poolName: objectName.describe("the EmulatorPool (in the claim's namespace) to take an instance from"),
});
export type EmulatorClaimSpec = z.infer<typeof EmulatorClaimSpec>;

export const CLAIM_SOURCES = ["pool", "on-demand"] as const;

export const EmulatorClaimStatus = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  conditions,
  emulatorName: z.string().optional().describe("the Emulator that serves this claim"),
  source: z
    .enum(CLAIM_SOURCES)
    .optional()
    .describe("pool: a ready instance; on-demand: the pool had none, an Emulator was started for it"),
  secretName: z.string().optional().describe("the Secret holding the live keys"),
  endpoints: z.array(Endpoint).max(8).optional(),
  boundAt: z.string().meta({ format: "date-time" }).optional(),
});
export type EmulatorClaimStatus = z.infer<typeof EmulatorClaimStatus>;

export interface EmulatorPool {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: EmulatorPoolSpecInput;
  status?: EmulatorPoolStatus;
}

export interface EmulatorClaim {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: EmulatorClaimSpec;
  status?: EmulatorClaimStatus;
}
