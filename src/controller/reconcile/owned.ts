/**
 * Create-or-adopt for the objects an Emulator owns (its Secret, Service and
 * Pod): what the cache has, else a create; a create that says AlreadyExists
 * is settled by reading the object by name, and its controller owner
 * reference decides whose it is. A create the API server refuses (admission,
 * validation, quota) is a problem for the Emulator's status, with the
 * server's own words.
 */
import type { V1ObjectMeta } from "@kubernetes/client-node";
import { isAlreadyExists } from "../kube/errors.js";
import { isOwnedBy, type Owned } from "../objects/names.js";
import { rejectionOf, type Problem } from "./rejection.js";

/** Why an ensure step cannot go on in this reconcile. */
export type Blocked =
  /** Somebody else's object has the name, or the API refused ours: reported in status, looked at again later. */
  | { problem: Problem; backoff?: boolean }
  /** An object of that name is being deleted: if the informers watch it, its delete event wakes the reconcile. */
  | { going: string; watched: boolean }
  /** The create said AlreadyExists and the read found nothing (deleted in between): again at once. */
  | { retry: string };

export interface OwnedObject<T> {
  kind: "Secret" | "Service" | "Pod";
  name: string;
  owner: Owned;
  /** What the informer cache (or, for what is not watched, a read) has; undefined when nothing. */
  known: T | undefined;
  create(): Promise<T | undefined>;
  read(): Promise<T | undefined>;
  meta(o: T): V1ObjectMeta | undefined;
  /** Whether the informers see this object and map its events to the Emulator. */
  watched(o: T): boolean;
}

export type Adopted<T> =
  /** Created by this reconcile (the create's answer, when the API returns one). */
  | { created: T | undefined }
  /** Ours already; it may be being deleted, which the caller decides about. */
  | { live: T }
  | { blocked: Blocked };

export async function createOrAdopt<T>(o: OwnedObject<T>): Promise<Adopted<T>> {
  let live = o.known;
  if (live === undefined) {
    try {
      return { created: await o.create() };
    } catch (err) {
      const rejected = rejectionOf(err, o.kind, o.name);
      if (rejected) return { blocked: { problem: rejected, backoff: true } };
      if (!isAlreadyExists(err)) throw err;
    }
    live = await o.read();
    if (live === undefined) return { blocked: { retry: `${o.kind} ${o.name}` } };
  }
  const meta = o.meta(live);
  if (isOwnedBy(meta, o.owner.uid)) return { live };
  // Somebody else's, or an earlier Emulator's of this name: if it is going away, wait for that.
  if (meta?.deletionTimestamp) return { blocked: { going: `${o.kind} ${o.name}`, watched: o.watched(live) } };
  const article = o.kind === "Secret" ? "a Secret" : `a ${o.kind}`;
  return {
    blocked: {
      problem: {
        reason: `${o.kind}Conflict`,
        message: `${article} named ${o.name} exists and is not owned by this Emulator; rename the Emulator or delete it`,
      },
    },
  };
}
