/**
 * One reconcile of one EmulatorPool: its instances are read live from the API
 * (a label selector: an instance created or bound a moment ago counts, though
 * the cache may not have it yet), then made to match the spec one step at a
 * time: instances whose claim is gone are deleted (each instance serves one
 * claim, never a second: this does not wait for the garbage collector);
 * unclaimed ones past spec.replicas are deleted (never claimed ones), only as
 * the version seen (a bind in between wins); missing ones are created, at most
 * spec.maxCreating starting at once. Status counts them and says when
 * instances cannot be scheduled.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { parseSpec, type Emulator } from "../crd/types.js";
import {
  EmulatorPoolSpec,
  POOL_LABEL,
  type EmulatorClaim,
  type EmulatorPool,
  type EmulatorPoolStatus,
} from "../crd/pool-types.js";
import type { EmulatorApi, PoolApi } from "../kube/client.js";
import { isConflict, isNotFound } from "../kube/errors.js";
import { podName } from "../objects/names.js";
import { setCondition } from "../reconcile/conditions.js";
import type { EventRecorder } from "../reconcile/events.js";
import { sameStatus, viewPod } from "../reconcile/observe.js";
import type { ReconcileResult } from "../reconcile/reconciler.js";
import {
  buildInstance,
  claimOf,
  isCurrent,
  isServing,
  oldestFirst,
  poolUidOf,
  randomSuffix,
} from "./instances.js";

export interface PoolCaches {
  pool(namespace: string, name: string): EmulatorPool | undefined;
  claim(namespace: string, name: string): EmulatorClaim | undefined;
  pod(namespace: string, name: string): V1Pod | undefined;
}

export interface PoolDeps {
  api: Pick<EmulatorApi, "listEmulators" | "deleteEmulator"> &
    Pick<PoolApi, "createEmulator" | "replacePoolStatus">;
  caches: PoolCaches;
  events: EventRecorder;
  now?: () => Date;
  suffix?: () => string;
  log?: (msg: string) => void;
}

/** Nothing watched will change: a look anyway after this, should an event be lost. */
export const POOL_SAFETY_NET_MS = 30_000;

export class PoolReconciler {
  private readonly now: () => Date;
  private readonly suffix: () => string;

  constructor(private readonly d: PoolDeps) {
    this.now = d.now ?? (() => new Date());
    this.suffix = d.suffix ?? (() => randomSuffix());
  }

  async reconcile(namespace: string, name: string): Promise<ReconcileResult> {
    const pool = this.d.caches.pool(namespace, name);
    const live = (await this.d.api.listEmulators(namespace, `${POOL_LABEL}=${name}`)).items;
    if (!pool || pool.metadata.deletionTimestamp) {
      // The pool is going or gone: its unclaimed instances go with it (claimed ones serve their
      // claims on), without waiting for the garbage collector.
      for (const e of live) if (!claimOf(e) && !e.metadata.deletionTimestamp) await this.delete(e, false);
      return {};
    }
    const spec = EmulatorPoolSpec.safeParse(pool.spec);
    const template = parseSpec(pool.spec.template);
    if (!spec.success || !template.ok) {
      const problems = spec.success
        ? template.ok
          ? []
          : template.problems.map((p) => p.replace(/^spec\./, "spec.template."))
        : spec.error.issues.map((i) => `spec.${i.path.join(".")}: ${i.message}`);
      return this.writeStatus(
        pool,
        {},
        { status: "False", reason: "InvalidSpec", message: problems.join("; ") },
      );
    }
    const { replicas, maxCreating } = spec.data;
    const mine = live.filter((e) => poolUidOf(e) === pool.metadata.uid && !e.metadata.deletionTimestamp);
    const claimed: Emulator[] = [];
    const unclaimed: Emulator[] = [];
    let outdated = 0;
    for (const e of mine) {
      const c = claimOf(e);
      if (!c && !isCurrent(e, pool.spec.template)) {
        // Made from an earlier template: replaced (a claim that binds it meanwhile keeps it).
        if (await this.delete(e, true)) outdated++;
      } else if (!c) unclaimed.push(e);
      else if (this.d.caches.claim(namespace, c.name)?.metadata.uid === c.uid) claimed.push(e);
      else {
        await this.delete(e, false);
        this.d.events.normal(
          pool,
          "InstanceReleased",
          `claim ${c.name} is gone: deleting its instance ${e.metadata.name} (an instance serves one claim)`,
        );
      }
    }
    const ready = unclaimed.filter(isServing).sort(oldestFirst);
    const starting = unclaimed.filter((e) => !isServing(e)).sort(oldestFirst);

    let deleted = 0;
    let deletedStarting = 0;
    if (unclaimed.length > replicas) {
      // Scale down: the ones still starting first (newest first), then the newest ready ones.
      const victims = [...starting.slice().reverse(), ...ready.slice().reverse()].slice(
        0,
        unclaimed.length - replicas,
      );
      for (const e of victims)
        if (await this.delete(e, true)) {
          deleted++;
          if (!isServing(e)) deletedStarting++;
        }
      if (deleted > 0)
        this.d.events.normal(
          pool,
          "ScaledDown",
          `deleted ${deleted} unclaimed instance(s) to keep ${replicas}`,
        );
    }
    const left = unclaimed.length - deleted;
    const startingLeft = starting.length - deletedStarting;
    const create = Math.max(0, Math.min(replicas - left, maxCreating - startingLeft));
    const createdNames: string[] = [];
    for (let i = 0; i < create; i++) {
      const emu = buildInstance(pool, pool.spec.template, this.suffix());
      try {
        await this.d.api.createEmulator(emu);
        createdNames.push(emu.metadata.name ?? "");
      } catch (err) {
        // A name taken (five random characters): another one on the next reconcile.
        if (!isConflict(err)) throw err;
      }
    }
    if (createdNames.length > 0)
      this.d.events.normal(pool, "InstancesCreated", `created ${createdNames.join(", ")}`);
    if (outdated > 0)
      this.d.events.normal(
        pool,
        "TemplateChanged",
        `deleted ${outdated} unclaimed instance(s) made from an earlier template`,
      );

    const counts = {
      ready: ready.length - (deleted - deletedStarting),
      creating: startingLeft + createdNames.length,
      claimed: claimed.length,
    };
    const unschedulable = starting
      .map((e) => {
        const pod = this.d.caches.pod(namespace, podName(e.metadata.name ?? ""));
        const why = pod ? viewPod(pod).unschedulable : undefined;
        return why ? `${e.metadata.name}: ${why}` : undefined;
      })
      .filter((m): m is string => m !== undefined);
    const readyCond =
      counts.ready >= replicas
        ? { status: "True" as const, reason: "Filled", message: `${counts.ready} of ${replicas} ready` }
        : {
            status: "False" as const,
            reason: "Filling",
            message: `${counts.ready} of ${replicas} ready, ${counts.creating} starting (at most ${maxCreating} at once)`,
          };
    const result = await this.writeStatus(pool, counts, readyCond, unschedulable);
    return counts.creating > 0 || unschedulable.length > 0 ? { requeueAfterMs: POOL_SAFETY_NET_MS } : result;
  }

  /** Deletes an instance; `asSeen`: only the version read (false when it changed: a claim bound it). */
  private async delete(e: Emulator, asSeen: boolean): Promise<boolean> {
    const { namespace = "", name = "", uid = "", resourceVersion } = e.metadata;
    try {
      await this.d.api.deleteEmulator(namespace, name, uid, asSeen ? resourceVersion : undefined);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      if (asSeen && isConflict(err)) {
        this.d.log?.(`instance ${namespace}/${name} changed before its delete (bound?): kept`);
        return false;
      }
      throw err;
    }
  }

  private async writeStatus(
    pool: EmulatorPool,
    counts: Pick<EmulatorPoolStatus, "ready" | "creating" | "claimed">,
    ready: { status: "True" | "False"; reason: string; message: string },
    unschedulable: string[] = [],
  ): Promise<ReconcileResult> {
    const gen = pool.metadata.generation;
    const now = this.now();
    let conditions = setCondition(pool.status?.conditions, { type: "Ready", ...ready }, gen, now);
    conditions = setCondition(
      conditions,
      unschedulable.length > 0
        ? {
            type: "Schedulable",
            status: "False",
            reason: "Unschedulable",
            message: `instances cannot be scheduled: ${unschedulable.join("; ")}`,
          }
        : {
            type: "Schedulable",
            status: "True",
            reason: "Scheduled",
            message: "no instance is waiting for a node",
          },
      gen,
      now,
    );
    const status: EmulatorPoolStatus = { observedGeneration: gen, ...counts, conditions };
    const prev = pool.status;
    if (sameStatus(prev, status)) return {};
    await this.d.api.replacePoolStatus({ ...pool, status });
    const was = prev?.conditions?.find((c) => c.type === "Schedulable");
    const is = conditions.find((c) => c.type === "Schedulable")!;
    if (is.status === "False" && (was?.status !== "False" || was.message !== is.message))
      this.d.events.warning(pool, "Unschedulable", is.message);
    return {};
  }
}
