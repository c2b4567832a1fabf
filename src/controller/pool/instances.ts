/**
 * What a pool's instances are, and how one is bound to a claim. Pure: the
 * reconciles (pool-reconciler.ts, claim-reconciler.ts) make the calls.
 * An instance is an Emulator owned (as controller) by its EmulatorPool and
 * labelled with it; bound, it also carries the claim's label and an owner
 * reference to the claim. A claim's on-demand Emulator is owned (as
 * controller) by the claim and has no pool label, so no pool counts it.
 */
import { createHash, randomBytes } from "node:crypto";
import type { V1OwnerReference } from "@kubernetes/client-node";
import { API_VERSION, KIND, type Emulator, type EmulatorSpecInput } from "../crd/types.js";
import {
  CLAIM_KIND,
  CLAIM_LABEL,
  TEMPLATE_HASH_ANNOTATION,
  POOL_KIND,
  POOL_LABEL,
  type EmulatorClaim,
  type EmulatorPool,
} from "../crd/pool-types.js";
import { isTrue } from "../reconcile/conditions.js";

const ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

/** Five random characters, as the ReplicaSet controller names Pods. */
export function randomSuffix(random: (n: number) => Buffer = randomBytes): string {
  return [...random(5)].map((b) => ALPHABET[b % ALPHABET.length]).join("");
}

type Named = { metadata: { name?: string; namespace?: string; uid?: string } };

function refTo(kind: string, o: Named, controller: boolean): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind,
    name: o.metadata.name ?? "",
    uid: o.metadata.uid ?? "",
    controller,
    blockOwnerDeletion: controller,
  };
}

/** A digest of a pool's template: an unclaimed instance made from another template is replaced. */
export function templateHash(template: EmulatorSpecInput): string {
  const canonical = (v: unknown): string =>
    Array.isArray(v)
      ? `[${v.map(canonical).join(",")}]`
      : v && typeof v === "object"
        ? `{${Object.keys(v)
            .sort()
            .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
            .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
            .join(",")}}`
        : JSON.stringify(v);
  return createHash("sha256").update(canonical(template)).digest("hex").slice(0, 16);
}

/** Whether an instance was made from this template (one made before the annotation counts as current). */
export function isCurrent(emu: Emulator, template: EmulatorSpecInput): boolean {
  const made = emu.metadata.annotations?.[TEMPLATE_HASH_ANNOTATION];
  return made === undefined || made === templateHash(template);
}

/** A new instance of the pool: its template as the spec, the pool as its controller. */
export function buildInstance(pool: EmulatorPool, template: EmulatorSpecInput, suffix: string): Emulator {
  const name = pool.metadata.name ?? "";
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name: `${name}-${suffix}`,
      namespace: pool.metadata.namespace,
      labels: { [POOL_LABEL]: name },
      annotations: { [TEMPLATE_HASH_ANNOTATION]: templateHash(template) },
      ownerReferences: [refTo(POOL_KIND, pool, true)],
    },
    spec: template,
  };
}

/** A claim's own Emulator, from its pool's template, when the pool had no ready instance. */
export function buildOnDemand(claim: EmulatorClaim, template: EmulatorSpecInput, suffix: string): Emulator {
  const name = claim.metadata.name ?? "";
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name: `${name}-${suffix}`,
      namespace: claim.metadata.namespace,
      labels: { [CLAIM_LABEL]: name },
      ownerReferences: [refTo(CLAIM_KIND, claim, true)],
    },
    spec: template,
  };
}

/** The instance as bound to the claim (written with its resourceVersion: a Conflict means someone was first). */
export function bindInstance(instance: Emulator, claim: EmulatorClaim): Emulator {
  return {
    ...instance,
    metadata: {
      ...instance.metadata,
      labels: { ...instance.metadata.labels, [CLAIM_LABEL]: claim.metadata.name ?? "" },
      ownerReferences: [...(instance.metadata.ownerReferences ?? []), refTo(CLAIM_KIND, claim, false)],
    },
  };
}

/** The pool an Emulator is an instance of (its controller reference), if it is one. */
export function poolUidOf(emu: Emulator): string | undefined {
  if (!emu.metadata.labels?.[POOL_LABEL]) return undefined;
  return emu.metadata.ownerReferences?.find((r) => r.controller && r.kind === POOL_KIND)?.uid;
}

/** The claim an Emulator serves: its label and the claim's owner reference must agree. */
export function claimOf(emu: Emulator): { name: string; uid: string } | undefined {
  const name = emu.metadata.labels?.[CLAIM_LABEL];
  if (!name) return undefined;
  const ref = emu.metadata.ownerReferences?.find((r) => r.kind === CLAIM_KIND && r.name === name);
  return { name, uid: ref?.uid ?? "" };
}

/** Ready to be handed out: Ready, rotated to its own Secret (unless rotation is off), not going away. */
export function isServing(emu: Emulator): boolean {
  if (emu.metadata.deletionTimestamp) return false;
  const conditions = emu.status?.conditions;
  const rotated = emu.spec.rotation === false || isTrue(conditions, "SecretsRotated");
  return isTrue(conditions, "Ready") && rotated;
}

const created = (e: Emulator) => new Date(e.metadata.creationTimestamp ?? 0).getTime();
export const oldestFirst = (a: Emulator, b: Emulator): number =>
  created(a) - created(b) || (a.metadata.name ?? "").localeCompare(b.metadata.name ?? "");
