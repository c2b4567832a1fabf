/**
 * One reconcile of one Emulator: re-read the world (informer caches), make
 * it match the spec one step at a time, write status only when it changed.
 * Idempotent: running it twice in a row changes nothing the second time.
 * Deletion: the finalizer holds the Emulator until its Pod (and with it the
 * VM, stopped cleanly by the agent on SIGTERM) is gone, then removes the
 * Service and the Secret and lets go.
 */
import type { V1Pod, V1Service } from "@kubernetes/client-node";
import { FINALIZER, parseSpec, type Emulator, type EmulatorSpec } from "../crd/types.js";
import type { EmulatorApi, OwnedApi } from "../kube/client.js";
import { isAlreadyExists, isNotFound } from "../kube/errors.js";
import {
  isOwnedBy,
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
}

const POLL_MS = 5_000;
const FOREIGN_GRACE_MS = 10_000;

type Problem = { reason: string; message: string };

export class Reconciler {
  private readonly now: () => Date;
  /** Pod UIDs whose boot was already counted in the metrics. */
  private readonly counted = new Set<string>();
  /** When a create first said AlreadyExists for an object the cache does not have. */
  private readonly alreadyExists = new Map<string, number>();

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
      const problem = await this.ensureSecret(emu, owner);
      if (problem) return this.writeStatus(emu, owner, spec, { problem });
    }
    const svcProblem = await this.ensureService(emu, owner, spec);
    // Not yet known whether a same-named Service is ours: no Pod until it is.
    if (svcProblem === "settling") return { requeueAfterMs: 500 };
    if (svcProblem) return this.conflict(emu, owner, spec, svcProblem);
    const { pod, settling, problem: podProblem } = await this.ensurePod(emu, owner, spec);
    if (podProblem) return this.conflict(emu, owner, spec, podProblem);
    // Our own create is not in the cache yet: wait for its event rather than report a Pod-less status.
    if (settling) return { requeueAfterMs: 500 };

    let report: AgentReport | undefined;
    const view = pod ? viewPod(pod) : undefined;
    const known = view && emu.status?.podUID === view.uid && emu.status.bootMode !== undefined;
    if (view?.ip && view.phase === "Running" && !view.deleting && (!known || !view.ready)) {
      report = await this.d.fetchReport(view.ip, this.d.options.agent.port);
    }
    if (view && report?.state === "ready" && report.bootMode && !this.counted.has(view.uid)) {
      this.counted.add(view.uid);
      this.d.metrics?.bootTotal.inc({ mode: report.bootMode });
      if (report.startupSeconds !== undefined)
        this.d.metrics?.startupSeconds.observe(report.startupSeconds, { mode: report.bootMode });
      for (const [phase, ms] of Object.entries(report.timings ?? {}))
        this.d.metrics?.phaseSeconds.observe(ms / 1000, { phase });
    }
    const result = await this.writeStatus(emu, owner, spec, { pod: view, report });
    const ready = view?.ready && !view.deleting;
    let requeue = ready && (known || report?.state === "ready") ? this.d.options.resyncSec * 1000 : POLL_MS;
    if (expiry !== undefined) requeue = Math.min(requeue, Math.max(expiry - this.now().getTime(), 0) + 50);
    return { requeueAfterMs: Math.min(requeue, result.requeueAfterMs ?? Infinity) };
  }

  private expiry(emu: Emulator, spec: EmulatorSpec): number | undefined {
    if (spec.ttlSeconds === undefined || !emu.metadata.creationTimestamp) return undefined;
    return new Date(emu.metadata.creationTimestamp).getTime() + spec.ttlSeconds * 1000;
  }

  /** Creates the Secret once; a Secret of that name that is not ours is a problem, never overwritten. */
  private async ensureSecret(
    emu: Emulator,
    owner: Owned,
  ): Promise<{ reason: string; message: string } | undefined> {
    const name = secretName(owner.name);
    try {
      await this.d.api.createSecret(buildSecret(owner));
      this.d.events.normal(emu, "SecretCreated", `generated fresh keys into Secret ${name}`);
      return undefined;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    const meta = await this.d.api.readSecretMeta(owner.namespace, name);
    if (isOwnedBy(meta, owner.uid)) return undefined;
    return {
      reason: "SecretConflict",
      message: `Secret ${name} exists and is not owned by this Emulator; rename or delete it`,
    };
  }

  /** An object in the way that is not ours: say so in status and look again later. */
  private async conflict(
    emu: Emulator,
    owner: Owned,
    spec: EmulatorSpec,
    problem: Problem,
  ): Promise<ReconcileResult> {
    await this.writeStatus(emu, owner, spec, { problem });
    return { requeueAfterMs: 10_000 };
  }

  /**
   * A create that says AlreadyExists while the cache (which sees only our
   * labelled objects) has nothing: our own create not yet seen, or somebody
   * else's object of that name. Past a grace period it is the latter.
   */
  private foreignAfterGrace(what: string): boolean {
    const first = this.alreadyExists.get(what) ?? Date.now();
    this.alreadyExists.set(what, first);
    return Date.now() - first > FOREIGN_GRACE_MS;
  }

  private async ensureService(
    emu: Emulator,
    owner: Owned,
    spec: EmulatorSpec,
  ): Promise<Problem | "settling" | undefined> {
    const desired = buildService(owner, spec);
    const live = this.d.caches.service(owner.namespace, serviceName(owner.name));
    if (!live) {
      try {
        await this.d.api.createService(desired);
        this.d.events.normal(emu, "ServiceCreated", `created Service ${serviceName(owner.name)}`);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        if (this.foreignAfterGrace(`service/${owner.namespace}/${serviceName(owner.name)}`)) {
          return {
            reason: "ServiceConflict",
            message: `a Service named ${serviceName(owner.name)} exists and is not this controller's; rename the Emulator or delete it`,
          };
        }
        return "settling";
      }
      return undefined;
    }
    this.alreadyExists.delete(`service/${owner.namespace}/${serviceName(owner.name)}`);
    if (!isOwnedBy(live.metadata, owner.uid)) {
      return {
        reason: "ServiceConflict",
        message: `Service ${serviceName(owner.name)} belongs to another owner`,
      };
    }
    const drift = serviceDrift(live, desired);
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
      this.d.events.normal(emu, "ServiceUpdated", `updated Service ${serviceName(owner.name)} (${drift})`);
    }
    return undefined;
  }

  /** The Pod as it should be: created when missing, replaced (deleted, then re-created) when its spec hash differs. */
  private async ensurePod(
    emu: Emulator,
    owner: Owned,
    spec: EmulatorSpec,
  ): Promise<{ pod?: V1Pod | undefined; settling?: boolean; problem?: Problem }> {
    const desired = buildPod(owner, spec, this.d.options.agent);
    const live = this.d.caches.pod(owner.namespace, podName(owner.name));
    if (!live) {
      try {
        const created = await this.d.api.createPod(desired);
        this.d.events.normal(
          emu,
          "PodCreated",
          `created Pod ${podName(owner.name)} for generation ${emu.metadata.generation ?? 0}`,
        );
        return { pod: created };
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        if (this.foreignAfterGrace(`pod/${owner.namespace}/${podName(owner.name)}`)) {
          return {
            problem: {
              reason: "PodConflict",
              message: `a Pod named ${podName(owner.name)} exists and is not this controller's; rename the Emulator or delete it`,
            },
          };
        }
        return { settling: true };
      }
    }
    this.alreadyExists.delete(`pod/${owner.namespace}/${podName(owner.name)}`);
    if (!isOwnedBy(live.metadata, owner.uid)) {
      // A Pod of an earlier Emulator of this name, still going away, or one somebody else labelled as ours.
      if (live.metadata?.deletionTimestamp) return { settling: true };
      return {
        problem: { reason: "PodConflict", message: `Pod ${podName(owner.name)} belongs to another owner` },
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
    const pod = this.d.caches.pod(owner.namespace, podName(owner.name));
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
      return { requeueAfterMs: 2_000 };
    }
    const svc = this.d.caches.service(owner.namespace, serviceName(owner.name));
    if (svc && isOwnedBy(svc.metadata, owner.uid)) {
      await this.d.api
        .deleteService(owner.namespace, serviceName(owner.name), svc.metadata?.uid ?? "")
        .catch(ignoreNotFound);
    }
    const secretMeta = await this.d.api
      .readSecretMeta(owner.namespace, secretName(owner.name))
      .catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
    if (secretMeta && isOwnedBy(secretMeta, owner.uid)) {
      await this.d.api
        .deleteSecret(owner.namespace, secretName(owner.name), secretMeta.uid ?? "")
        .catch(ignoreNotFound);
    }
    this.d.events.normal(emu, "Stopped", "the VM is stopped and the Pod, Service and Secret are gone");
    await this.d.api
      .replaceEmulator({
        ...emu,
        metadata: {
          ...emu.metadata,
          finalizers: (emu.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
        },
      })
      .catch(ignoreNotFound);
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

export function splitKey(key: string): [string, string] {
  const i = key.indexOf("/");
  return i < 0 ? ["", key] : [key.slice(0, i), key.slice(i + 1)];
}
