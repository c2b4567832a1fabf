/**
 * One reconcile of one Emulator: re-read the world (informer caches), make
 * it match the spec one step at a time, write status only when it changed.
 * Idempotent: running it twice in a row changes nothing the second time.
 * Deletion: the finalizer holds the Emulator until its Pod (and with it the
 * VM, stopped cleanly by the agent on SIGTERM) is gone, then removes the
 * Service and the Secret and lets go.
 * Whose an object is, is read, never guessed: a create that says
 * AlreadyExists is followed by a read by name, and the object's controller
 * owner reference decides (ours: used; not ours: a conflict in status at
 * once). Waits on a watched object end with its event; requeues are only
 * a safety net, or a re-check of what is not watched.
 */
import type { V1Pod, V1Service } from "@kubernetes/client-node";
import { FINALIZER, parseSpec, type Emulator, type EmulatorSpec } from "../crd/types.js";
import type { EmulatorApi, OwnedApi } from "../kube/client.js";
import { isAlreadyExists, isNotFound, orNotFound } from "../kube/errors.js";
import {
  isOwnedBy,
  MANAGED_BY,
  ownerName,
  ownerOf,
  podName,
  secretName,
  serviceName,
  SPEC_HASH_ANNOTATION,
  type Owned,
} from "../objects/names.js";
import { buildPod } from "../objects/pod.js";
import { buildSecret } from "../objects/secret.js";
import { buildService, endpointsOf, serviceDrift } from "../objects/service.js";
import type { ControllerOptions } from "../options.js";
import type { ControllerMetrics } from "../metrics/controller-metrics.js";
import type { AgentReport } from "../agent/contract.js";
import { isTrue } from "./conditions.js";
import type { EventRecorder } from "./events.js";
import { nextStatus, sameStatus, viewPod, type Observation } from "./observe.js";
import type { ReportFetcher } from "./report.js";

export interface Caches {
  emulator(namespace: string, name: string): Emulator | undefined;
  pod(namespace: string, name: string): V1Pod | undefined;
  service(namespace: string, name: string): V1Service | undefined;
}

export interface ReconcileDeps {
  api: EmulatorApi & OwnedApi;
  caches: Caches;
  options: ControllerOptions;
  fetchReport: ReportFetcher;
  events: EventRecorder;
  metrics?: ControllerMetrics | undefined;
  now?: () => Date;
  log?: (msg: string) => void;
}

export interface ReconcileResult {
  requeueAfterMs?: number | undefined;
  /** Run again at once, with the queue's per-key backoff (controller-runtime's Requeue: true). */
  requeue?: boolean | undefined;
}

/** While a Pod starts: how often the agent's /status (which nothing watches) is read again. */
const POLL_MS = 5_000;
/** An object in the way that is not ours is not watched: how often it is looked at again. */
export const CONFLICT_RECHECK_MS = 10_000;
/** Waiting for a watched object's event: a reconcile anyway after this, should the event be lost. */
export const SAFETY_NET_MS = 30_000;

type Problem = { reason: string; message: string };

/** Why an ensure step cannot go on in this reconcile. */
type Blocked =
  /** Somebody else's object has the name: reported in status, looked at again later. */
  | { problem: Problem }
  /** An object of that name is being deleted: if the informers watch it, its delete event wakes the reconcile. */
  | { going: string; watched: boolean }
  /** The create said AlreadyExists and the read found nothing (deleted in between): again at once. */
  | { retry: string };

export class Reconciler {
  private readonly now: () => Date;
  /** Pod UIDs whose boot was already counted in the metrics. */
  private readonly counted = new Set<string>();

  constructor(private readonly d: ReconcileDeps) {
    this.now = d.now ?? (() => new Date());
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = splitKey(key);
    let emu = this.d.caches.emulator(namespace, name);
    if (!emu) return {};
    if (emu.metadata.deletionTimestamp) return this.finalize(emu);

    if (!(emu.metadata.finalizers ?? []).includes(FINALIZER)) {
      emu = await this.d.api.replaceEmulator({
        ...emu,
        metadata: { ...emu.metadata, finalizers: [...(emu.metadata.finalizers ?? []), FINALIZER] },
      });
    }
    const owner = ownerOf(emu);
    const checked = parseSpec(emu.spec);
    if (!checked.ok) {
      return this.writeStatus(emu, owner, undefined, {
        problem: { reason: "InvalidSpec", message: checked.problems.join("; ") },
      });
    }
    const spec = checked.spec;

    const expiry = this.expiry(emu, spec);
    if (expiry !== undefined && expiry <= this.now().getTime()) {
      this.d.events.normal(
        emu,
        "Expired",
        `spec.ttlSeconds (${spec.ttlSeconds}) has passed: deleting the Emulator`,
      );
      await this.d.api.deleteEmulator(namespace, name, owner.uid).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
      return {};
    }

    if (spec.rotation) {
      const blocked = await this.ensureSecret(emu, owner);
      if (blocked) return this.blocked(emu, owner, spec, blocked);
    }
    const svcBlocked = await this.ensureService(emu, owner, spec);
    if (svcBlocked) return this.blocked(emu, owner, spec, svcBlocked);
    const ensured = await this.ensurePod(emu, owner, spec);
    if ("blocked" in ensured) return this.blocked(emu, owner, spec, ensured.blocked);

    let report: AgentReport | undefined;
    const view = viewPod(ensured.pod);
    const known = emu.status?.podUID === view.uid && emu.status.bootMode !== undefined;
    if (view.ip && view.phase === "Running" && !view.deleting && (!known || !view.ready)) {
      report = await this.d.fetchReport(view.ip, this.d.options.agent.port);
    }
    if (report?.state === "ready" && report.bootMode && !this.counted.has(view.uid)) {
      this.counted.add(view.uid);
      this.d.metrics?.bootTotal.inc({ mode: report.bootMode });
      if (report.startupSeconds !== undefined)
        this.d.metrics?.startupSeconds.observe(report.startupSeconds, { mode: report.bootMode });
      for (const [phase, ms] of Object.entries(report.timings ?? {}))
        this.d.metrics?.phaseSeconds.observe(ms / 1000, { phase });
    }
    const result = await this.writeStatus(emu, owner, spec, { pod: view, report });
    const ready = view.ready && !view.deleting;
    let requeue = ready && (known || report?.state === "ready") ? this.d.options.resyncSec * 1000 : POLL_MS;
    if (expiry !== undefined) requeue = Math.min(requeue, Math.max(expiry - this.now().getTime(), 0) + 50);
    return { requeueAfterMs: Math.min(requeue, result.requeueAfterMs ?? Infinity) };
  }

  private expiry(emu: Emulator, spec: EmulatorSpec): number | undefined {
    if (spec.ttlSeconds === undefined || !emu.metadata.creationTimestamp) return undefined;
    return new Date(emu.metadata.creationTimestamp).getTime() + spec.ttlSeconds * 1000;
  }

  /**
   * The Secret, created when there is none. Read first (Secrets are not watched): ours is
   * used as it is, one that is not ours is a conflict and is never overwritten.
   */
  private async ensureSecret(emu: Emulator, owner: Owned): Promise<Blocked | undefined> {
    const name = secretName(owner.name);
    let meta = await orNotFound(this.d.api.readSecretMeta(owner.namespace, name));
    if (!meta) {
      try {
        await this.d.api.createSecret(buildSecret(owner));
        this.d.events.normal(emu, "SecretCreated", `generated fresh keys into Secret ${name}`);
        return undefined;
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
      meta = await orNotFound(this.d.api.readSecretMeta(owner.namespace, name));
      if (!meta) return { retry: `Secret ${name}` };
    }
    if (!isOwnedBy(meta, owner.uid)) {
      return {
        problem: {
          reason: "SecretConflict",
          message: `Secret ${name} exists and is not owned by this Emulator; rename or delete it`,
        },
      };
    }
    if (meta.deletionTimestamp) return { going: `Secret ${name}`, watched: false };
    return undefined;
  }

  /** What a blocked step means for this reconcile: a conflict in status, a wait for an event, or a retry. */
  private async blocked(
    emu: Emulator,
    owner: Owned,
    spec: EmulatorSpec,
    b: Blocked,
  ): Promise<ReconcileResult> {
    if ("problem" in b) {
      await this.writeStatus(emu, owner, spec, { problem: b.problem });
      return { requeueAfterMs: CONFLICT_RECHECK_MS };
    }
    if ("retry" in b) {
      this.d.log?.(`${b.retry} was deleted between a create and a read: reconciling again`);
      return { requeue: true };
    }
    return { requeueAfterMs: b.watched ? SAFETY_NET_MS : CONFLICT_RECHECK_MS };
  }

  /**
   * The Service as it should be. Not in the cache (which holds only objects with our labels):
   * created; if the create says AlreadyExists, the API's object decides: ours (a create of ours
   * the cache has not seen yet, or ours without our labels) is used and updated, one that is not
   * ours is a conflict.
   */
  private async ensureService(emu: Emulator, owner: Owned, spec: EmulatorSpec): Promise<Blocked | undefined> {
    const name = serviceName(owner.name);
    const desired = buildService(owner, spec);
    let live = this.d.caches.service(owner.namespace, name);
    if (!live) {
      try {
        await this.d.api.createService(desired);
        this.d.events.normal(emu, "ServiceCreated", `created Service ${name}`);
        return undefined;
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
      live = await this.d.api.readService(owner.namespace, name);
      if (!live) return { retry: `Service ${name}` };
    }
    if (live.metadata?.deletionTimestamp) return { going: `Service ${name}`, watched: watched(live, owner) };
    if (!isOwnedBy(live.metadata, owner.uid)) {
      return {
        problem: {
          reason: "ServiceConflict",
          message: `a Service named ${name} exists and is not owned by this Emulator; rename the Emulator or delete it`,
        },
      };
    }
    const drift = serviceDrift(live, desired) ?? labelDrift(live.metadata?.labels, desired.metadata?.labels);
    if (drift) {
      await this.d.api.replaceService({
        ...live,
        metadata: { ...live.metadata, labels: desired.metadata?.labels },
        spec: {
          ...live.spec,
          type: desired.spec?.type,
          selector: desired.spec?.selector,
          ports: desired.spec?.ports,
        },
      });
      this.d.events.normal(emu, "ServiceUpdated", `updated Service ${name} (${drift})`);
    }
    return undefined;
  }

  /**
   * The Pod as it should be: created when missing, replaced (deleted, then re-created) when its
   * spec hash differs or it ended. A create that says AlreadyExists is settled by the API's
   * object, as for the Service.
   */
  private async ensurePod(
    emu: Emulator,
    owner: Owned,
    spec: EmulatorSpec,
  ): Promise<{ pod: V1Pod } | { blocked: Blocked }> {
    const name = podName(owner.name);
    const desired = buildPod(owner, spec, this.d.options.agent);
    let live = this.d.caches.pod(owner.namespace, name);
    if (!live) {
      try {
        const created = await this.d.api.createPod(desired);
        this.d.events.normal(
          emu,
          "PodCreated",
          `created Pod ${name} for generation ${emu.metadata.generation ?? 0}`,
        );
        return { pod: created };
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
      live = await this.d.api.readPod(owner.namespace, name);
      if (!live) return { blocked: { retry: `Pod ${name}` } };
    }
    if (!isOwnedBy(live.metadata, owner.uid)) {
      // Somebody else's, or an earlier Emulator's of this name: if it is going away, wait for that.
      if (live.metadata?.deletionTimestamp)
        return { blocked: { going: `Pod ${name}`, watched: watched(live, owner) } };
      return {
        blocked: {
          problem: {
            reason: "PodConflict",
            message: `a Pod named ${name} exists and is not owned by this Emulator; rename the Emulator or delete it`,
          },
        },
      };
    }
    const hash = desired.metadata?.annotations?.[SPEC_HASH_ANNOTATION];
    const stale = live.metadata?.annotations?.[SPEC_HASH_ANNOTATION] !== hash;
    const finished = live.status?.phase === "Failed" || live.status?.phase === "Succeeded";
    if ((stale || finished) && !live.metadata?.deletionTimestamp) {
      await this.deletePod(live);
      this.d.events.normal(
        emu,
        "PodReplaced",
        stale
          ? "the spec changed: stopping the VM and replacing the Pod"
          : `the Pod ended (${live.status?.phase}): replacing it`,
      );
    }
    // Ours and going away (replaced, or deleted by someone): status says so; its delete event brings the next one.
    return { pod: live };
  }

  private async deletePod(pod: V1Pod): Promise<void> {
    const m = pod.metadata ?? {};
    await this.d.api
      .deletePod(m.namespace ?? "", m.name ?? "", m.uid ?? "", this.d.options.agent.stopGraceSec + 15)
      .catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
  }

  private async finalize(emu: Emulator): Promise<ReconcileResult> {
    if (!(emu.metadata.finalizers ?? []).includes(FINALIZER)) return {};
    const owner = ownerOf(emu);
    // The cache may not have seen a Pod created just now: without one there, ask the API.
    const pod =
      this.d.caches.pod(owner.namespace, podName(owner.name)) ??
      (await this.d.api.readPod(owner.namespace, podName(owner.name)));
    if (pod && isOwnedBy(pod.metadata, owner.uid)) {
      if (!pod.metadata?.deletionTimestamp) {
        await this.deletePod(pod);
        this.d.events.normal(
          emu,
          "Stopping",
          `deleting Pod ${podName(owner.name)}: the agent stops the VM cleanly`,
        );
      }
      if (emu.status?.phase !== "Terminating") {
        const status = { ...(emu.status ?? {}), phase: "Terminating" as const };
        await this.d.api.replaceEmulatorStatus({ ...emu, status }).catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
      }
      // The Pod's delete event (the informer maps it to this Emulator) wakes the next step.
      return { requeueAfterMs: SAFETY_NET_MS };
    }
    const svc =
      this.d.caches.service(owner.namespace, serviceName(owner.name)) ??
      (await this.d.api.readService(owner.namespace, serviceName(owner.name)));
    if (svc && isOwnedBy(svc.metadata, owner.uid)) {
      await this.d.api
        .deleteService(owner.namespace, serviceName(owner.name), svc.metadata?.uid ?? "")
        .catch(ignoreNotFound);
    }
    const secretMeta = await orNotFound(this.d.api.readSecretMeta(owner.namespace, secretName(owner.name)));
    if (secretMeta && isOwnedBy(secretMeta, owner.uid)) {
      await this.d.api
        .deleteSecret(owner.namespace, secretName(owner.name), secretMeta.uid ?? "")
        .catch(ignoreNotFound);
    }
    const released = await this.d.api
      .replaceEmulator({
        ...emu,
        metadata: {
          ...emu.metadata,
          finalizers: (emu.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
        },
      })
      .then(
        () => true,
        (err: unknown) => {
          ignoreNotFound(err);
          return false;
        },
      );
    if (released)
      this.d.events.normal(emu, "Stopped", "the VM is stopped and the Pod, Service and Secret are gone");
    return {};
  }

  private async writeStatus(
    emu: Emulator,
    owner: Owned,
    spec: EmulatorSpec | undefined,
    partial: Partial<Observation>,
  ): Promise<ReconcileResult> {
    const expiry = spec ? this.expiry(emu, spec) : undefined;
    const obs: Observation = {
      generation: emu.metadata.generation,
      now: this.now(),
      endpoints: spec ? endpointsOf(owner, spec, this.d.options.clusterDomain) : [],
      secretName: spec?.rotation ? secretName(owner.name) : undefined,
      rotation: spec?.rotation ?? true,
      expiresAt: expiry === undefined ? undefined : new Date(expiry).toISOString().replace(/\.\d{3}Z$/, "Z"),
      ...partial,
    };
    const prev = emu.status;
    const status = nextStatus(prev, obs);
    if (sameStatus(prev, status)) return {};
    await this.d.api.replaceEmulatorStatus({ ...emu, status });
    this.transitionEvents(emu, prev, status);
    return {};
  }

  private transitionEvents(
    emu: Emulator,
    prev: Emulator["status"],
    next: NonNullable<Emulator["status"]>,
  ): void {
    const was = (t: "Ready" | "Degraded") => isTrue(prev?.conditions, t);
    const is = (t: "Ready" | "Degraded") => isTrue(next.conditions, t);
    if (!was("Ready") && is("Ready")) {
      const how =
        next.bootMode === "resume"
          ? `resumed (${next.strategy ?? "snapshot"})`
          : next.bootMode === "cold"
            ? "cold-booted"
            : "healthy";
      const secs = next.startupSeconds === undefined ? "" : ` in ${next.startupSeconds} s`;
      this.d.events.normal(emu, "Ready", `${how}${secs} on ${next.node ?? "its node"}`);
    }
    if (was("Ready") && !is("Ready") && !is("Degraded")) {
      this.d.events.normal(
        emu,
        "NotReady",
        next.conditions?.find((c) => c.type === "Ready")?.message ?? "not ready",
      );
    }
    const degraded = next.conditions?.find((c) => c.type === "Degraded");
    const before = prev?.conditions?.find((c) => c.type === "Degraded");
    if (degraded?.status === "True" && (before?.status !== "True" || before.message !== degraded.message)) {
      this.d.events.warning(emu, degraded.reason, degraded.message);
    }
  }
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}

/** Whether the informers see an object and map its events to this Emulator (controller.ts). */
function watched(o: V1Pod | V1Service, owner: Owned): boolean {
  return (
    o.metadata?.labels?.["app.kubernetes.io/managed-by"] === MANAGED_BY &&
    ownerName(o.metadata) === owner.name
  );
}

/** Which of our labels an object lacks or has with another value (one without them is not in the cache). */
function labelDrift(
  live: Record<string, string> | undefined,
  desired: Record<string, string> | undefined,
): string | undefined {
  const off = Object.entries(desired ?? {}).filter(([k, v]) => live?.[k] !== v);
  return off.length ? `labels ${off.map(([k]) => k).join(", ")}` : undefined;
}

export function splitKey(key: string): [string, string] {
  const i = key.indexOf("/");
  return i < 0 ? ["", key] : [key.slice(0, i), key.slice(i + 1)];
}
