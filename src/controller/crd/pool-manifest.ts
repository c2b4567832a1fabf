/**
 * The EmulatorPool and EmulatorClaim CustomResourceDefinitions, generated from
 * the zod types (crd/pool-types.ts) as the Emulator's is (manifest.ts).
 */
import { customResourceDefinition, schemaOf } from "./manifest.js";
import {
  CLAIM_KIND,
  CLAIM_PLURAL,
  CLAIM_SHORT_NAMES,
  CLAIM_SINGULAR,
  EmulatorClaimSpec,
  EmulatorClaimStatus,
  EmulatorPoolSpec,
  EmulatorPoolStatus,
  MAX_POOL_NAME_LENGTH,
  POOL_KIND,
  POOL_PLURAL,
  POOL_SHORT_NAMES,
  POOL_SINGULAR,
} from "./pool-types.js";
import type { JsonSchema } from "./structural.js";
import type { z } from "zod";

function rootSchema(description: string, spec: z.ZodType, status: z.ZodType, what: string): JsonSchema {
  return {
    type: "object",
    description,
    required: ["spec"],
    properties: {
      apiVersion: { type: "string" },
      kind: { type: "string" },
      metadata: { type: "object" },
      spec: schemaOf(spec),
      status: schemaOf(status),
    },
    "x-kubernetes-validations": [
      {
        rule: `self.metadata.name.size() <= ${MAX_POOL_NAME_LENGTH} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')`,
        message: `the name must be a DNS label of at most ${MAX_POOL_NAME_LENGTH} characters starting with a letter (${what})`,
      },
    ],
  };
}

const ready = { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' };
const age = { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" };

export function poolCrd(): JsonSchema {
  return customResourceDefinition(
    { kind: POOL_KIND, plural: POOL_PLURAL, singular: POOL_SINGULAR, shortNames: POOL_SHORT_NAMES },
    [
      {
        name: "Desired",
        type: "integer",
        jsonPath: ".spec.replicas",
        description: "ready instances to keep",
      },
      { name: "Ready", type: "integer", jsonPath: ".status.ready", description: "ready, unclaimed" },
      { name: "Creating", type: "integer", jsonPath: ".status.creating" },
      { name: "Claimed", type: "integer", jsonPath: ".status.claimed" },
      age,
      {
        name: "Schedulable",
        type: "string",
        jsonPath: '.status.conditions[?(@.type=="Schedulable")].status',
        priority: 1,
      },
    ],
    rootSchema(
      "Emulators kept resumed and rotated, ready for an EmulatorClaim to take (each instance serves one claim).",
      EmulatorPoolSpec,
      EmulatorPoolStatus,
      "its instances are named <pool>-<5 characters>",
    ),
  );
}

export function claimCrd(): JsonSchema {
  return customResourceDefinition(
    { kind: CLAIM_KIND, plural: CLAIM_PLURAL, singular: CLAIM_SINGULAR, shortNames: CLAIM_SHORT_NAMES },
    [
      ready,
      { name: "Pool", type: "string", jsonPath: ".spec.poolName" },
      { name: "Emulator", type: "string", jsonPath: ".status.emulatorName" },
      { name: "Source", type: "string", jsonPath: ".status.source", description: "pool or on-demand" },
      age,
      {
        name: "Reason",
        type: "string",
        jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
        priority: 1,
      },
    ],
    rootSchema(
      "One emulator taken from an EmulatorPool: Ready as soon as it is bound to a ready instance.",
      EmulatorClaimSpec,
      EmulatorClaimStatus,
      "an on-demand Emulator is named <claim>-<5 characters>",
    ),
  );
}
