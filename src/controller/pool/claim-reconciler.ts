/**
 * One reconcile of one EmulatorClaim. Unbound, it takes the oldest ready,
 * unclaimed instance of its pool: an update of that Emulator (its claim label
 * and an owner reference to the claim) with the resourceVersion the cache
 * has, so of two claims racing for one instance the API server lets one
 * through and the other gets a Conflict and tries the next instance. With no
 * ready instance it starts an on-demand Emulator from the pool's template
 * (owned by the claim) and says so. The claim's status copies the Emulator's
 * name, Secret and endpoints; Ready is True as soon as a ready instance is
 * bound. Which Emulator serves a claim is read live (a label selector), so a
 * bind whose status write was lost is found again, never repeated.
 */
import { parseSpec, type Emulator } from "../crd/types.js";
import {
  CLAIM_LABEL,
  POOL_LABEL,
  type EmulatorClaim,
  type EmulatorClaimStatus,
  type EmulatorPool,
} from "../crd/pool-types.js";
import type { EmulatorApi, PoolApi } from "../kube/client.js";
import { isConflict, isNotFound } from "../kube/errors.js";
import { getCondition, setCondition } from "../reconcile/conditions.js";
import type { EventRecorder } from "../reconcile/events.js";
import { sameStatus } from "../reconcile/observe.js";
import type { ReconcileResult } from "../reconcile/reconciler.js";
import {
  bindInstance,
  buildOnDemand,
  claimOf,
  isServing,
  oldestFirst,
  poolUidOf,
  randomSuffix,
} from "./instances.js";
import { POOL_SAFETY_NET_MS } from "./pool-reconciler.js";

export interface ClaimCaches {
  claim(namespace: string, name: string): EmulatorClaim | undefined;
  pool(namespace: string, name: string): EmulatorPool | undefined;
  emulators(namespace: string): Emulator[];
}

export interface ClaimDeps {
  api: Pick<EmulatorApi, "listEmulators" | "replaceEmulator" | "deleteEmulator"> &
    Pick<PoolApi, "createEmulator" | "replaceClaimStatus">;
  caches: ClaimCaches;
  events: EventRecorder;
  now?: () => Date;
  suffix?: () => string;
  log?: (msg: string) => void;
}

type ReadyCondition = { status: "True" | "False"; reason: string; message: string };

export class ClaimReconciler {
  private readonly now: () => Date;
  private readonly suffix: () => string;

  constructor(private readonly d: ClaimDeps) {
    this.now = d.now ?? (() => new Date());
    this.suffix = d.suffix ?? (() => randomSuffix());
  }

  async reconcile(namespace: string, name: string): Promise<ReconcileResult> {
    const claim = this.d.caches.claim(namespace, name);
    const live = (await this.d.api.listEmulators(namespace, `${CLAIM_LABEL}=${name}`)).items;
    // Emulators of an earlier claim of this name (or of this one, deleted): never handed on.
    for (const e of live)
      if (claimOf(e)?.uid !== claim?.metadata.uid && !e.metadata.deletionTimestamp) await this.release(e);
    if (!claim || claim.metadata.deletionTimestamp) return {};

    let mine = live.find((e) => claimOf(e)?.uid === claim.metadata.uid && !e.metadata.deletionTimestamp);
    const poolName = claim.spec.poolName;
    if (!mine && claim.status?.emulatorName) {
      return this.writeStatus(claim, undefined, {
        status: "False",
        reason: "EmulatorLost",
        message: `Emulator ${claim.status.emulatorName} that served this claim is gone; delete the claim and make a new one`,
      });
    }
    if (!mine) {
      const pool = this.d.caches.pool(namespace, poolName);
      if (!pool)
        return this.writeStatus(claim, undefined, {
          status: "False",
          reason: "PoolNotFound",
          message: `there is no EmulatorPool ${poolName} in ${namespace}`,
        });
      mine = await this.bind(claim, pool);
      if (mine) {
        this.d.events.normal(
          claim,
          "Bound",
          `bound to ${mine.metadata.name}, a ready instance of pool ${poolName}`,
        );
      } else {
        const started = await this.startOnDemand(claim, pool);
        if ("problem" in started) return this.writeStatus(claim, undefined, started.problem);
        mine = started.emulator;
      }
    }
    return this.writeStatus(claim, mine, readyOf(mine, poolName));
  }

  /** The oldest ready, unclaimed instance, taken with its resourceVersion; on a Conflict, the next one. */
  private async bind(claim: EmulatorClaim, pool: EmulatorPool): Promise<Emulator | undefined> {
    const ns = claim.metadata.namespace ?? "";
    const candidates = this.d.caches
      .emulators(ns)
      .filter(
        (e) =>
          e.metadata.labels?.[POOL_LABEL] === pool.metadata.name &&
          poolUidOf(e) === pool.metadata.uid &&
          !claimOf(e) &&
          isServing(e),
      )
      .sort(oldestFirst);
    for (const c of candidates) {
      try {
        return await this.d.api.replaceEmulator(bindInstance(c, claim));
      } catch (err) {
        if (isConflict(err) || isNotFound(err)) {
          this.d.log?.(
            `instance ${c.metadata.name} changed or went before claim ${claim.metadata.name} took it: trying the next`,
          );
          continue;
        }
        throw err;
      }
    }
    return undefined;
  }

  private async startOnDemand(
    claim: EmulatorClaim,
    pool: EmulatorPool,
  ): Promise<{ emulator: Emulator } | { problem: ReadyCondition }> {
    const template = parseSpec(pool.spec.template);
    if (!template.ok)
      return {
        problem: {
          status: "False",
          reason: "InvalidPoolTemplate",
          message: `pool ${pool.metadata.name} has no ready instance and its template is invalid: ${template.problems.join("; ")}`,
        },
      };
    const emulator = await this.d.api.createEmulator(buildOnDemand(claim, pool.spec.template, this.suffix()));
    this.d.events.normal(
      claim,
      "OnDemand",
      `pool ${pool.metadata.name} has no ready instance: started Emulator ${emulator.metadata.name} on demand (a resume, not a bind)`,
    );
    return { emulator };
  }

  private async release(e: Emulator): Promise<void> {
    const { namespace = "", name = "", uid = "" } = e.metadata;
    await this.d.api.deleteEmulator(namespace, name, uid).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }

  private async writeStatus(
    claim: EmulatorClaim,
    emu: Emulator | undefined,
    ready: ReadyCondition,
  ): Promise<ReconcileResult> {
    const prev = claim.status;
    const gen = claim.metadata.generation;
    const now = this.now();
    const status: EmulatorClaimStatus = {
      ...prev,
      observedGeneration: gen,
      conditions: setCondition(prev?.conditions, { type: "Ready", ...ready }, gen, now),
    };
    if (emu) {
      status.emulatorName = emu.metadata.name;
      status.source = emu.metadata.labels?.[POOL_LABEL] ? "pool" : "on-demand";
      if (emu.status?.secretName) status.secretName = emu.status.secretName;
      if (emu.status?.endpoints) status.endpoints = emu.status.endpoints;
      status.boundAt ??= now.toISOString().replace(/\.\d{3}Z$/, "Z");
    }
    if (!sameStatus(prev, status)) {
      await this.d.api.replaceClaimStatus({ ...claim, status });
      const was = getCondition(prev?.conditions, "Ready");
      if (ready.status === "False" && ready.reason !== "OnDemandStarting" && was?.reason !== ready.reason)
        this.d.events.warning(claim, ready.reason, ready.message);
    }
    // Its Emulator's events (mapped by the claim label) wake the next step; a pool's, an unbound claim.
    return ready.status === "True" ? {} : { requeueAfterMs: POOL_SAFETY_NET_MS };
  }
}

/** The claim's Ready, from the Emulator that serves it. */
export function readyOf(emu: Emulator, poolName: string): ReadyCondition {
  const name = emu.metadata.name ?? "";
  const fromPool = Boolean(emu.metadata.labels?.[POOL_LABEL]);
  if (isServing(emu))
    return fromPool
      ? { status: "True", reason: "Bound", message: `bound to ${name}, a ready instance of pool ${poolName}` }
      : {
          status: "True",
          reason: "OnDemand",
          message: `pool ${poolName} had no ready instance: Emulator ${name} was started on demand and is Ready`,
        };
  const why = getCondition(emu.status?.conditions, "Ready")?.message ?? "starting";
  return fromPool
    ? { status: "False", reason: "EmulatorNotReady", message: `Emulator ${name}: ${why}` }
    : {
        status: "False",
        reason: "OnDemandStarting",
        message: `pool ${poolName} had no ready instance: starting Emulator ${name} on demand (${why})`,
      };
}
