/**
 * One reconcile of one Emulator: re-read the world (informer caches), make
 * it match the spec one step at a time, write status only when it changed.
 * Idempotent: running it twice in a row changes nothing the second time.
 * Whose an object is, is read, never guessed (owned.ts); deletion is
 * finalize.ts; Pods replaced for a new controller template go a few at a
 * time (rollout.ts). Waits on a watched object end with its event; requeues
 * are only a safety net, or a re-check of what is not watched.
 */
import type { V1Pod, V1Service } from "@kubernetes/client-node";
import { parseSpec, FINALIZER, type Emulator, type EmulatorSpec } from "../crd/types.js";
import type { EmulatorApi, OwnedApi } from "../kube/client.js";
import { isNotFound, orNotFound } from "../kube/errors.js";
import {
  GENERATION_ANNOTATION,
  KEYS_UID_ANNOTATION,
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
import { awaitPodGone, deletePodOf, finalize, SAFETY_NET_MS } from "./finalize.js";
import { nextStatus, sameStatus, viewPod, type Observation } from "./observe.js";
import { createOrAdopt, type Blocked } from "./owned.js";
import { rejectionOf } from "./rejection.js";
import type { ReportFetcher } from "./report.js";
import { TemplateRollout } from "./rollout.js";

export { SAFETY_NET_MS } from "./finalize.js";

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
/** A stale Pod waiting for a rollout slot: how often it asks again (slots free on other Emulators' events). */
export const ROLLOUT_RECHECK_MS = 5_000;

export class Reconciler {
  private readonly now: () => Date;
  readonly rollout: TemplateRollout;

  constructor(private readonly d: ReconcileDeps) {
    this.now = d.now ?? (() => new Date());
    this.rollout = new TemplateRollout(d.options.rollout.maxUnavailable);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = splitKey(key);
    let emu = this.d.caches.emulator(namespace, name);
    if (!emu) {
      this.rollout.settle(key);
      return {};
    }
    if (emu.metadata.deletionTimestamp) {
      this.rollout.settle(key);
      return finalize(this.d, emu, this.now());
    }

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

    let keysUid: string | undefined;
    if (spec.rotation) {
      const keys = await this.ensureSecret(emu, owner);
      if ("blocked" in keys) return this.blocked(emu, owner, spec, keys.blocked);
      keysUid = keys.uid;
    }
    const svcBlocked = await this.ensureService(emu, owner, spec);
    if (svcBlocked) return this.blocked(emu, owner, spec, svcBlocked);
    const ensured = await this.ensurePod(key, emu, owner, spec, keysUid);
    if ("blocked" in ensured) return this.blocked(emu, owner, spec, ensured.blocked);

    let report: AgentReport | undefined;
    const view = viewPod(ensured.pod);
    const known = emu.status?.podUID === view.uid && emu.status.bootMode !== undefined;
    if (view.ip && view.phase === "Running" && !view.deleting && (!known || !view.ready)) {
      report = await this.d.fetchReport(view.ip, this.d.options.agent.port);
    }
    const result = await this.writeStatus(emu, owner, spec, {
      pod: view,
      report,
      keysReplaced: ensured.keysReplaced,
    });
    // A boot is counted by the reconcile that first writes it to status: once, whichever replica leads.
    if (!known && report?.state === "ready" && report.bootMode) this.countBoot(report, report.bootMode);
    const ready = view.ready && !view.deleting;
    if (ready && !ensured.stale) this.rollout.settle(key);
    let requeue = ready && (known || report?.state === "ready") ? this.d.options.resyncSec * 1000 : POLL_MS;
    if (ensured.waiting) requeue = Math.min(requeue, ROLLOUT_RECHECK_MS);
    // Ours and going away (replaced, or deleted by someone): its delete event brings the next
    // reconcile, unless no kubelet is left to confirm it.
    if (view.deleting)
      requeue = Math.min(
        requeue,
        (await awaitPodGone(this.d, emu, ensured.pod, this.now())).requeueAfterMs ?? requeue,
      );
    if (expiry !== undefined) requeue = Math.min(requeue, Math.max(expiry - this.now().getTime(), 0) + 50);
    return { requeueAfterMs: Math.min(requeue, result.requeueAfterMs ?? Infinity) };
  }

  private countBoot(report: AgentReport, mode: string): void {
    const m = this.d.metrics;
    if (!m) return;
    m.bootTotal.inc({ mode });
    if (report.startupSeconds !== undefined) m.startupSeconds.observe({ mode }, report.startupSeconds);
    for (const [phase, ms] of Object.entries(report.timings ?? {}))
      m.phaseSeconds.observe({ phase }, ms / 1000);
  }

  private expiry(emu: Emulator, spec: EmulatorSpec): number | undefined {
    if (spec.ttlSeconds === undefined || !emu.metadata.creationTimestamp) return undefined;
    return new Date(emu.metadata.creationTimestamp).getTime() + spec.ttlSeconds * 1000;
  }

  /**
   * The Secret, created when there is none. Read first (Secrets are not watched): ours is
   * used as it is, one that is not ours is a conflict and is never overwritten.
   */
  private async ensureSecret(emu: Emulator, owner: Owned): Promise<{ blocked: Blocked } | { uid?: string }> {
    const name = secretName(owner.name);
    const read = () => orNotFound(this.d.api.readSecretMeta(owner.namespace, name));
    const got = await createOrAdopt({
      kind: "Secret",
      name,
      owner,
      known: await read(),
      create: () => this.d.api.createSecret(buildSecret(owner)),
      read,
      meta: (m) => m,
      watched: (m) => this.d.options.watchSecrets && watched({ metadata: m }, owner),
    });
    if ("created" in got) {
      this.d.events.normal(emu, "SecretCreated", `generated fresh keys into Secret ${name}`);
      return { uid: got.created?.uid };
    }
    if ("blocked" in got) return got;
    if (got.live.deletionTimestamp)
      return { blocked: { going: `Secret ${name}`, watched: this.d.options.watchSecrets } };
    return { uid: got.live.uid };
  }

  /** What a blocked step means for this reconcile: a problem in status, a wait for an event, or a retry. */
  private async blocked(
    emu: Emulator,
    owner: Owned,
    spec: EmulatorSpec,
    b: Blocked,
  ): Promise<ReconcileResult> {
    if ("problem" in b) {
      await this.writeStatus(emu, owner, spec, { problem: b.problem });
      if (b.backoff) {
        // Refused by the API server: the queue's growing per-key backoff, as for an error.
        this.d.metrics?.apiRejections.inc({
          kind: b.problem.reason.replace(/(Rejected|QuotaExceeded)$/, ""),
          reason: b.problem.reason,
        });
        return { requeue: true };
      }
      return { requeueAfterMs: CONFLICT_RECHECK_MS };
    }
    if ("retry" in b) {
      this.d.log?.(`${b.retry} was deleted between a create and a read: reconciling again`);
      return { requeue: true };
    }
    return { requeueAfterMs: b.watched ? SAFETY_NET_MS : CONFLICT_RECHECK_MS };
  }

  /**
   * The Service as it should be: created or adopted (owned.ts); ours without our labels (so the
   * cache never sees it) or with other ports is updated.
   */
  private async ensureService(emu: Emulator, owner: Owned, spec: EmulatorSpec): Promise<Blocked | undefined> {
    const name = serviceName(owner.name);
    const desired = buildService(owner, spec);
    const got = await createOrAdopt<V1Service>({
      kind: "Service",
      name,
      owner,
      known: this.d.caches.service(owner.namespace, name),
      create: () => this.d.api.createService(desired),
      read: () => this.d.api.readService(owner.namespace, name),
      meta: (o) => o.metadata,
      watched: (o) => watched(o, owner),
    });
    if ("created" in got) {
      this.d.events.normal(emu, "ServiceCreated", `created Service ${name}`);
      return undefined;
    }
    if ("blocked" in got) return got.blocked;
    const live = got.live;
    if (live.metadata?.deletionTimestamp) return { going: `Service ${name}`, watched: watched(live, owner) };
    const drift = serviceDrift(live, desired) ?? labelDrift(live.metadata?.labels, desired.metadata?.labels);
    if (!drift) return undefined;
    try {
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
    } catch (err) {
      const rejected = rejectionOf(err, "Service", name);
      if (rejected) return { problem: rejected, backoff: true };
      throw err;
    }
    this.d.events.normal(emu, "ServiceUpdated", `updated Service ${name} (${drift})`);
    return undefined;
  }

  /**
   * The Pod as it should be: created or adopted (owned.ts); replaced (deleted, then re-created on
   * its delete event) when it ended, or when its spec hash differs: at once for a change of the
   * Emulator's spec, in turn (rollout.ts) for a change of the controller's template.
   */
  private async ensurePod(
    key: string,
    emu: Emulator,
    owner: Owned,
    spec: EmulatorSpec,
    keysUid: string | undefined,
  ): Promise<
    { pod: V1Pod; stale: boolean; waiting: boolean; keysReplaced?: boolean } | { blocked: Blocked }
  > {
    const name = podName(owner.name);
    const desired = buildPod(owner, spec, this.d.options.agent);
    const generation = String(emu.metadata.generation ?? 0);
    desired.metadata!.annotations![GENERATION_ANNOTATION] = generation;
    if (keysUid) desired.metadata!.annotations![KEYS_UID_ANNOTATION] = keysUid;
    const got = await createOrAdopt<V1Pod>({
      kind: "Pod",
      name,
      owner,
      known: this.d.caches.pod(owner.namespace, name),
      create: () => this.d.api.createPod(desired),
      read: () => this.d.api.readPod(owner.namespace, name),
      meta: (o) => o.metadata,
      watched: (o) => watched(o, owner),
    });
    if ("blocked" in got) return got;
    if ("created" in got) {
      this.d.events.normal(emu, "PodCreated", `created Pod ${name} for generation ${generation}`);
      return { pod: got.created ?? desired, stale: false, waiting: false };
    }
    const live = got.live;
    const annotations = live.metadata?.annotations ?? {};
    const stale = annotations[SPEC_HASH_ANNOTATION] !== desired.metadata?.annotations?.[SPEC_HASH_ANNOTATION];
    const finished = live.status?.phase === "Failed" || live.status?.phase === "Succeeded";
    // Pods made before the generation annotation count as a template change: the careful side.
    const built = annotations[GENERATION_ANNOTATION];
    const specChanged = built !== undefined && built !== generation;
    // The Secret was replaced (deleted, then made anew with new keys): the guest runs the old ones.
    const rotatedTo = annotations[KEYS_UID_ANNOTATION];
    const keysReplaced = keysUid !== undefined && rotatedTo !== undefined && rotatedTo !== keysUid;
    if (keysReplaced && !live.metadata?.deletionTimestamp) {
      await deletePodOf(this.d, live.metadata ?? {});
      this.d.events.normal(
        emu,
        "PodReplaced",
        `Secret ${secretName(owner.name)} was replaced, with new keys: replacing the Pod so the guest runs them`,
      );
    }
    if (keysReplaced || live.metadata?.deletionTimestamp || !(stale || finished))
      return { pod: live, stale, waiting: false, keysReplaced };
    if (finished || specChanged) {
      await deletePodOf(this.d, live.metadata ?? {});
      this.d.events.normal(
        emu,
        "PodReplaced",
        finished
          ? `the Pod ended (${live.status?.phase}): replacing it`
          : "the spec changed: stopping the VM and replacing the Pod",
      );
      return { pod: live, stale, waiting: false };
    }
    if (!this.rollout.admit(key)) return { pod: live, stale, waiting: true };
    await deletePodOf(this.d, live.metadata ?? {});
    this.d.events.normal(
      emu,
      "PodReplaced",
      `the controller's Pod template changed (helm upgrade): stopping the VM and replacing the Pod, at most ${this.d.options.rollout.maxUnavailable} at a time`,
    );
    // Ours and going away: status says so; its delete event brings the next reconcile.
    return { pod: live, stale, waiting: false };
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

/** Whether the informers see an object and map its events to this Emulator (controller.ts). */
function watched(o: { metadata?: V1Pod["metadata"] }, owner: Owned): boolean {
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
