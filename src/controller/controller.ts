/**
 * The controller: informers for Emulators and the Pods and Services they
 * own feed `namespace/name` keys into the work queue (an owned object's
 * add, update and delete wake its Emulator's reconcile); workers (only on the
 * leader) run the reconcile, one key at a time per key, retrying failures
 * with per-item exponential backoff. /healthz, /readyz and /metrics on one
 * HTTP port. EmulatorPools and EmulatorClaims have informers and keys of
 * their own in the same queue (`pool:ns/name`, `claim:ns/name`); an
 * Emulator's change also wakes the pool it belongs to and the claim it serves.
 */
import type {
  KubeConfig,
  KubernetesListObject,
  KubernetesObject,
  V1Pod,
  V1Secret,
  V1Service,
} from "@kubernetes/client-node";
import { realClock, type Clock } from "./clock.js";
import { GROUP, PLURAL, VERSION, type Emulator } from "./crd/types.js";
import {
  CLAIM_LABEL,
  CLAIM_PLURAL,
  POOL_LABEL,
  POOL_PLURAL,
  type EmulatorClaim,
  type EmulatorPool,
} from "./crd/pool-types.js";
import { ClaimReconciler } from "./pool/claim-reconciler.js";
import { PoolReconciler } from "./pool/pool-reconciler.js";
import { controllerApi, type ControllerApi } from "./kube/client.js";
import { KubeError } from "./kube/errors.js";
import { ResilientInformer } from "./kube/informer.js";
import type { WatchBounds } from "./kube/bounded-watch.js";
import { LeaderElector } from "./leader.js";
import { controllerMetrics, type ControllerMetrics } from "./metrics/controller-metrics.js";
import { OWNED_SELECTOR, ownerName } from "./objects/names.js";
import type { ControllerOptions } from "./options.js";
import { startProbeServer, type ProbeServer } from "./http/probe-server.js";
import { WorkQueue } from "./queue/work-queue.js";
import { defaultControllerRateLimiter, type RateLimiter } from "./queue/rate-limit.js";
import { eventRecorder } from "./reconcile/events.js";
import { Reconciler, splitKey } from "./reconcile/reconciler.js";
import { httpReportFetcher, type ReportFetcher } from "./reconcile/report.js";

export type Logger = (
  level: "info" | "warn" | "error",
  msg: string,
  fields?: Record<string, unknown>,
) => void;

export const jsonLogger: Logger = (level, msg, fields) => {
  process.stderr.write(`${JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields })}\n`);
};

/** What the controller did, for whoever wants to wait on it (tests, mostly). */
export interface ControllerHooks {
  /** This replica became the leader and started its workers. */
  startedLeading?(): void;
  /** The Lease names a (new) holder, as this replica saw it. */
  newLeader?(identity: string): void;
}

export interface ControllerDeps {
  api?: ControllerApi;
  fetchReport?: ReportFetcher;
  log?: Logger;
  rateLimiter?: RateLimiter<string>;
  /** Called when this replica loses the Lease; main exits so the Deployment restarts it cleanly. */
  onLostLeadership?: () => void;
  informerBackoffMs?: number;
  /** Watch bounds (bounded-watch.ts); 300 s server-side, ended here after 30 s more of silence. */
  watch?: WatchBounds;
  /** The work queue's and the reconcile's time (the wall clock by default). */
  clock?: Clock;
  hooks?: ControllerHooks;
}

/** A Lease call gives up in half the renew deadline, so a hung one leaves time for another try. */
export const leaseCallTimeoutMs = (renewDeadlineSec: number): number =>
  Math.max(500, (renewDeadlineSec * 1000) / 2);

export class EmulatorController {
  readonly metrics: ControllerMetrics;
  readonly queue: WorkQueue<string>;
  readonly emulators: ResilientInformer<KubernetesObject>;
  readonly pods: ResilientInformer<V1Pod>;
  readonly services: ResilientInformer<V1Service>;
  readonly secrets: ResilientInformer<V1Secret> | undefined;
  readonly pools: ResilientInformer<KubernetesObject>;
  readonly claims: ResilientInformer<KubernetesObject>;
  readonly api: ControllerApi;
  readonly reconciler: Reconciler;
  readonly poolReconciler: PoolReconciler;
  readonly claimReconciler: ClaimReconciler;
  private readonly elector: LeaderElector | undefined;
  private readonly log: Logger;
  private server: ProbeServer | undefined;
  private workers: Promise<void>[] = [];
  private leading = false;
  private electionRun: Promise<void> | undefined;
  private stopping = false;

  constructor(
    kc: KubeConfig,
    readonly options: ControllerOptions,
    private readonly deps: ControllerDeps = {},
  ) {
    this.log = deps.log ?? jsonLogger;
    this.metrics = controllerMetrics({
      leading: () => this.leading,
      phases: () => this.emulators.list().map((e) => (e as unknown as Emulator).status?.phase),
    });
    this.api = deps.api ?? controllerApi(kc);
    const m = this.metrics;
    const clock = deps.clock ?? realClock;
    this.queue = new WorkQueue<string>({
      clock,
      rateLimiter: deps.rateLimiter ?? defaultControllerRateLimiter<string>({ now: () => clock.now() }),
      hooks: {
        depth: (n) => m.queueDepth.set(n),
        added: () => m.queueAdds.inc(),
        retried: () => m.queueRetries.inc(),
      },
    });
    const ns = options.watchNamespace || undefined;
    const hooks = {
      onRestart: (resource: string, err: unknown, delayMs: number) => {
        m.informerRestarts.inc({ resource });
        this.log("warn", `the ${resource} informer failed; restarting`, {
          error: (err as Error)?.message ?? String(err),
          delayMs,
        });
      },
    };
    const backoff = { minBackoffMs: deps.informerBackoffMs ?? 500, hooks, watch: deps.watch };
    const emuPath = ns
      ? `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`
      : `/apis/${GROUP}/${VERSION}/${PLURAL}`;
    this.emulators = new ResilientInformer(
      PLURAL,
      kc,
      emuPath,
      () => this.api.listEmulators(ns) as unknown as Promise<KubernetesListObject<KubernetesObject>>,
      backoff,
    );
    this.pods = new ResilientInformer<V1Pod>(
      "pods",
      kc,
      ns ? `/api/v1/namespaces/${ns}/pods` : "/api/v1/pods",
      () => this.api.listPods(ns, OWNED_SELECTOR),
      { ...backoff, labelSelector: OWNED_SELECTOR },
    );
    this.services = new ResilientInformer<V1Service>(
      "services",
      kc,
      ns ? `/api/v1/namespaces/${ns}/services` : "/api/v1/services",
      () => this.api.listServices(ns, OWNED_SELECTOR),
      { ...backoff, labelSelector: OWNED_SELECTOR },
    );
    // Only the Secrets' metadata is kept: the list drops their data, and so does the watch.
    this.secrets = options.watchSecrets
      ? new ResilientInformer<V1Secret>(
          "secrets",
          kc,
          ns ? `/api/v1/namespaces/${ns}/secrets` : "/api/v1/secrets",
          () => this.api.listSecrets(ns, OWNED_SELECTOR),
          {
            ...backoff,
            labelSelector: OWNED_SELECTOR,
            transform: (x) => ({ ...x, data: undefined, stringData: undefined }),
          },
        )
      : undefined;
    const crdPath = (plural: string) =>
      ns ? `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${plural}` : `/apis/${GROUP}/${VERSION}/${plural}`;
    this.pools = new ResilientInformer(
      POOL_PLURAL,
      kc,
      crdPath(POOL_PLURAL),
      () => this.api.listPools(ns) as unknown as Promise<KubernetesListObject<KubernetesObject>>,
      backoff,
    );
    this.claims = new ResilientInformer(
      CLAIM_PLURAL,
      kc,
      crdPath(CLAIM_PLURAL),
      () => this.api.listClaims(ns) as unknown as Promise<KubernetesListObject<KubernetesObject>>,
      backoff,
    );
    const labels = (o: KubernetesObject) => o.metadata?.labels ?? {};
    /** The pool an Emulator is an instance of, and the claim it serves, hear of its changes. */
    const wakeRelated = (o: KubernetesObject) => {
      const n = o.metadata?.namespace;
      if (labels(o)[POOL_LABEL]) this.queue.add(poolKey(n, labels(o)[POOL_LABEL]!));
      if (labels(o)[CLAIM_LABEL]) this.queue.add(claimKey(n, labels(o)[CLAIM_LABEL]!));
    };
    this.emulators.onChange((_t, o) => {
      this.queue.add(`${o.metadata?.namespace}/${o.metadata?.name}`);
      wakeRelated(o);
    });
    const owned = [this.pods, this.services, ...(this.secrets ? [this.secrets] : [])];
    for (const inf of owned as ResilientInformer<V1Pod | V1Service | V1Secret>[]) {
      inf.onChange((_t, o) => {
        const owner = ownerName(o.metadata);
        if (owner) this.queue.add(`${o.metadata?.namespace}/${owner}`);
      });
    }
    // A pool hears of its instances' Pods (one that cannot be scheduled is in the pool's status).
    this.pods.onChange((_t, o) => {
      if (labels(o)[POOL_LABEL]) this.queue.add(poolKey(o.metadata?.namespace, labels(o)[POOL_LABEL]!));
    });
    this.pools.onChange((_t, o) => {
      const n = o.metadata?.namespace;
      this.queue.add(poolKey(n, o.metadata?.name ?? ""));
      // Claims waiting for this pool to exist.
      for (const c of this.claims.list(n) as unknown as EmulatorClaim[])
        if (c.spec?.poolName === o.metadata?.name && !c.status?.emulatorName)
          this.queue.add(claimKey(n, c.metadata.name ?? ""));
    });
    this.claims.onChange((_t, o) => {
      const c = o as unknown as EmulatorClaim;
      this.queue.add(claimKey(c.metadata.namespace, c.metadata.name ?? ""));
      if (c.spec?.poolName) this.queue.add(poolKey(c.metadata.namespace, c.spec.poolName));
    });
    const events = eventRecorder(this.api, options.identity ?? "controller", (msg) => this.log("warn", msg));
    this.reconciler = new Reconciler({
      api: this.api,
      caches: {
        emulator: (n, name) => this.emulators.get(name, n) as unknown as Emulator | undefined,
        pod: (n, name) => this.pods.get(name, n),
        service: (n, name) => this.services.get(name, n),
      },
      options,
      fetchReport: deps.fetchReport ?? httpReportFetcher(options.reportTimeoutMs),
      events,
      metrics: m,
      now: () => new Date(clock.now()),
      log: (msg) => this.log("info", msg),
    });
    const poolCaches = {
      pool: (n: string, name: string) => this.pools.get(name, n) as unknown as EmulatorPool | undefined,
      claim: (n: string, name: string) => this.claims.get(name, n) as unknown as EmulatorClaim | undefined,
      pod: (n: string, name: string) => this.pods.get(name, n),
      emulators: (n: string) => this.emulators.list(n) as unknown as Emulator[],
    };
    const now = () => new Date(clock.now());
    this.poolReconciler = new PoolReconciler({
      api: this.api,
      caches: poolCaches,
      events,
      now,
      log: (msg) => this.log("info", msg),
    });
    this.claimReconciler = new ClaimReconciler({
      api: this.api,
      caches: poolCaches,
      events,
      now,
      log: (msg) => this.log("info", msg),
    });
    const le = options.leaderElection;
    this.elector = le.enabled
      ? new LeaderElector(deps.api ?? controllerApi(kc, leaseCallTimeoutMs(le.renewDeadlineSec)), {
          namespace: options.namespace,
          name: le.leaseName,
          identity: options.identity ?? "controller",
          leaseDurationSec: le.leaseDurationSec,
          renewDeadlineSec: le.renewDeadlineSec,
          retryPeriodSec: le.retryPeriodSec,
          log: (msg) => this.log("info", msg),
        })
      : undefined;
  }

  isLeader(): boolean {
    return this.leading;
  }

  synced(): boolean {
    return (
      this.emulators.hasSynced() &&
      this.pools.hasSynced() &&
      this.claims.hasSynced() &&
      this.pods.hasSynced() &&
      this.services.hasSynced() &&
      (this.secrets?.hasSynced() ?? true)
    );
  }

  /** Starts the HTTP server and the informers, then campaigns (or runs at once without leader election). */
  async start(): Promise<void> {
    if (this.options.http.port >= 0) {
      this.server = await startProbeServer({
        host: this.options.http.host,
        port: this.options.http.port,
        healthz: () => undefined,
        readyz: () => (this.synced() ? undefined : "informers have not synced yet"),
        metrics: this.metrics,
        json: { "/leader": () => ({ leader: this.leading, identity: this.options.identity }) },
      });
    }
    const informers = [
      this.emulators,
      this.pools,
      this.claims,
      this.pods,
      this.services,
      ...(this.secrets ? [this.secrets] : []),
    ];
    await Promise.all(informers.map((i) => i.start()));
    await Promise.all(informers.map((i) => i.waitForSync(60_000)));
    if (!this.elector) {
      this.startWorkers();
      return;
    }
    this.electionRun = this.elector.run({
      onStartedLeading: () => this.startWorkers(),
      onStoppedLeading: () => {
        this.leading = false;
        this.metrics.leader.set(0);
        this.queue.shutDown();
        if (!this.stopping) this.deps.onLostLeadership?.();
      },
      onNewLeader: (id) => {
        this.log("info", `the leader is ${id}`);
        this.deps.hooks?.newLeader?.(id);
      },
    });
  }

  get httpPort(): number | undefined {
    return this.server?.port;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.elector?.stop();
    await this.electionRun;
    this.queue.shutDown();
    await Promise.all(this.workers);
    await Promise.all([
      this.emulators.stop(),
      this.pools.stop(),
      this.claims.stop(),
      this.pods.stop(),
      this.services.stop(),
      this.secrets?.stop(),
    ]);
    await this.server?.close();
  }

  private startWorkers(): void {
    this.leading = true;
    this.metrics.leader.set(1);
    // Everything known so far: the informers' adds may have come before we led.
    for (const e of this.emulators.list()) this.queue.add(`${e.metadata?.namespace}/${e.metadata?.name}`);
    for (const p of this.pools.list()) this.queue.add(poolKey(p.metadata?.namespace, p.metadata?.name ?? ""));
    for (const c of this.claims.list())
      this.queue.add(claimKey(c.metadata?.namespace, c.metadata?.name ?? ""));
    for (let i = 0; i < this.options.workers; i++) this.workers.push(this.worker());
    this.deps.hooks?.startedLeading?.();
  }

  private async worker(): Promise<void> {
    for (;;) {
      const { item: key, shutdown } = await this.queue.get();
      if (shutdown) return;
      try {
        await this.processOne(key);
      } finally {
        this.queue.done(key);
      }
    }
  }

  private reconcileKey(key: string) {
    const kind = /^(pool|claim):/.exec(key)?.[1];
    if (!kind) return this.reconciler.reconcile(key);
    const [namespace, name] = splitKey(key.slice(kind.length + 1));
    return kind === "pool"
      ? this.poolReconciler.reconcile(namespace, name)
      : this.claimReconciler.reconcile(namespace, name);
  }

  private async processOne(key: string): Promise<void> {
    const m = this.metrics;
    const t0 = performance.now();
    try {
      const result = await this.reconcileKey(key);
      if (result.requeue) {
        this.queue.addRateLimited(key);
      } else {
        this.queue.forget(key);
        if (result.requeueAfterMs !== undefined && Number.isFinite(result.requeueAfterMs)) {
          this.queue.addAfter(key, result.requeueAfterMs);
        }
      }
      m.reconcileTotal.inc({ result: "success" });
    } catch (err) {
      const code = err instanceof KubeError ? `${err.code}${err.reason ? `:${err.reason}` : ""}` : "internal";
      m.reconcileTotal.inc({ result: "error" });
      m.reconcileErrors.inc({ code });
      const retries = this.queue.numRequeues(key);
      this.log(retries > 3 ? "warn" : "info", `reconcile of ${key} failed; retrying with backoff`, {
        error: (err as Error).message,
        retries,
      });
      this.queue.addRateLimited(key);
    } finally {
      m.reconcileDuration.observe((performance.now() - t0) / 1000);
    }
  }
}

/** Work-queue keys of the pool kinds (an Emulator's key is plain `namespace/name`). */
export const poolKey = (namespace: string | undefined, name: string): string => `pool:${namespace}/${name}`;
export const claimKey = (namespace: string | undefined, name: string): string => `claim:${namespace}/${name}`;
