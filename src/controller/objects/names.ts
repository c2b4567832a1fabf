/** Names, labels and owner references of the objects an Emulator owns. */
import type { V1OwnerReference } from "@kubernetes/client-node";
import { API_VERSION, GROUP, KIND, type Emulator } from "../crd/types.js";
import { POOL_LABEL } from "../crd/pool-types.js";

export const MANAGED_BY = "hexclave-emulator-controller";
export const NAME_LABEL = `${GROUP}/name`;
export const SPEC_HASH_ANNOTATION = `${GROUP}/spec-hash`;
/** The Emulator generation a Pod was built for: a spec change replaces it at once, a template change in turn. */
export const GENERATION_ANNOTATION = `${GROUP}/generation`;
/** The uid of the Secret whose keys the Pod's guest was rotated to: a new Secret means new keys. */
export const KEYS_UID_ANNOTATION = `${GROUP}/keys-uid`;
/** On a warm-up Pod whose node store holds its snapshot: emulator Pods prefer such nodes. */
export const WARMED_LABEL = `${GROUP}/warmed`;

export interface Owned {
  name: string;
  namespace: string;
  uid: string;
  /** The EmulatorPool the Emulator is an instance of: its Pod spreads away from the pool's others. */
  pool?: string | undefined;
}

export function ownerOf(emu: Emulator): Owned {
  const { name, namespace, uid } = emu.metadata;
  if (!name || !namespace || !uid) throw new Error("an Emulator without name, namespace or uid");
  const pool = emu.metadata.labels?.[POOL_LABEL];
  return pool ? { name, namespace, uid, pool } : { name, namespace, uid };
}

export const podName = (emulator: string): string => `${emulator}-emulator`;
export const serviceName = (emulator: string): string => emulator;
export const secretName = (emulator: string): string => `${emulator}-emulator-keys`;

/** Labels on every owned object; the selector uses the last two. */
export function labelsFor(emulator: string): Record<string, string> {
  return {
    "app.kubernetes.io/name": "hexclave-emulator",
    "app.kubernetes.io/instance": emulator,
    "app.kubernetes.io/component": "emulator",
    "app.kubernetes.io/managed-by": MANAGED_BY,
    [NAME_LABEL]: emulator,
  };
}

export function selectorFor(emulator: string): Record<string, string> {
  return { "app.kubernetes.io/managed-by": MANAGED_BY, [NAME_LABEL]: emulator };
}

/** The label selector the owned-object informers watch. */
export const OWNED_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY}`;

export function ownerReference(o: Owned): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: o.name,
    uid: o.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The Emulator that owns an object, if the controller made it. */
export function ownerName(
  meta: { ownerReferences?: V1OwnerReference[] | undefined } | undefined,
): string | undefined {
  const ref = meta?.ownerReferences?.find(
    (r) => r.controller && r.kind === KIND && r.apiVersion.startsWith(`${GROUP}/`),
  );
  return ref?.name;
}

export function isOwnedBy(
  meta: { ownerReferences?: V1OwnerReference[] | undefined } | undefined,
  uid: string,
): boolean {
  return meta?.ownerReferences?.some((r) => r.controller && r.uid === uid) ?? false;
}
