/**
 * The controller's metrics on prom-client, one registry per controller
 * process (not prom-client's global one, so tests can build several).
 * Cluster totals (Emulators by phase) come from the leader only: a standby
 * replica's cache sees the same objects, and Prometheus summing both would
 * count every Emulator twice. Counters of work done (reconciles, boots) are
 * per replica by nature: only the leader reconciles, and a boot is counted
 * by the reconcile that first writes it to status, so a failover does not
 * count it again.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STARTUP_BUCKETS = [0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 240, 480];

export const PHASES = ["Pending", "Starting", "Ready", "Degraded", "Terminating"] as const;

export interface ClusterView {
  /** Whether this replica leads (only the leader reports cluster totals). */
  leading(): boolean;
  /** The phase of each Emulator in the cache. */
  phases(): Iterable<string | undefined>;
}

export interface ControllerMetrics {
  registry: Registry;
  reconcileTotal: Counter<"result">;
  reconcileErrors: Counter<"code">;
  reconcileDuration: Histogram;
  queueDepth: Gauge;
  queueAdds: Counter;
  queueRetries: Counter;
  bootTotal: Counter<"mode">;
  startupSeconds: Histogram<"mode">;
  phaseSeconds: Histogram<"phase">;
  emulators: Gauge<"phase">;
  leader: Gauge;
  informerRestarts: Counter<"resource">;
  apiRejections: Counter<"kind" | "reason">;
  /** The exposition text and its content type, for /metrics. */
  render(): Promise<string>;
  contentType: string;
}

export function controllerMetrics(view?: ClusterView): ControllerMetrics {
  const registers = [new Registry()];
  const registry = registers[0]!;
  const emulators = new Gauge({
    name: "hexclave_emulator_emulators",
    help: "Emulators in the cluster by phase, reported by the leader only.",
    labelNames: ["phase"],
    registers,
    collect() {
      this.reset();
      if (!view?.leading()) return;
      const counts = new Map<string, number>(PHASES.map((p) => [p, 0]));
      for (const p of view.phases()) counts.set(p ?? "Pending", (counts.get(p ?? "Pending") ?? 0) + 1);
      for (const [phase, n] of counts) this.set({ phase }, n);
    },
  });
  return {
    registry,
    reconcileTotal: new Counter({
      name: "hexclave_emulator_reconcile_total",
      help: "Reconciles of Emulators by result (success, error).",
      labelNames: ["result"],
      registers,
    }),
    reconcileErrors: new Counter({
      name: "hexclave_emulator_reconcile_errors_total",
      help: "Reconciles that failed, by error code.",
      labelNames: ["code"],
      registers,
    }),
    reconcileDuration: new Histogram({
      name: "hexclave_emulator_reconcile_duration_seconds",
      help: "Time one reconcile of an Emulator took.",
      buckets: RECONCILE_BUCKETS,
      registers,
    }),
    queueDepth: new Gauge({
      name: "hexclave_emulator_workqueue_depth",
      help: "Emulator keys waiting in the work queue.",
      registers,
    }),
    queueAdds: new Counter({
      name: "hexclave_emulator_workqueue_adds_total",
      help: "Keys queued (after de-duplication).",
      registers,
    }),
    queueRetries: new Counter({
      name: "hexclave_emulator_workqueue_retries_total",
      help: "Keys re-queued with backoff after an error.",
      registers,
    }),
    bootTotal: new Counter({
      name: "hexclave_emulator_boots_total",
      help: "Emulator boots reported by agents, by boot mode (resume, cold).",
      labelNames: ["mode"],
      registers,
    }),
    startupSeconds: new Histogram({
      name: "hexclave_emulator_startup_seconds",
      help: "From the agent's start to a healthy emulator, by boot mode.",
      labelNames: ["mode"],
      buckets: STARTUP_BUCKETS,
      registers,
    }),
    phaseSeconds: new Histogram({
      name: "hexclave_emulator_phase_seconds",
      help: "Engine phase durations reported by agents.",
      labelNames: ["phase"],
      buckets: STARTUP_BUCKETS,
      registers,
    }),
    emulators,
    leader: new Gauge({
      name: "hexclave_emulator_leader",
      help: "1 while this replica holds the leader Lease.",
      registers,
    }),
    informerRestarts: new Counter({
      name: "hexclave_emulator_informer_restarts_total",
      help: "Informers restarted after their list or watch failed, by resource.",
      labelNames: ["resource"],
      registers,
    }),
    apiRejections: new Counter({
      name: "hexclave_emulator_api_rejections_total",
      help: "Creates or updates the API server refused (admission, validation, quota), by object kind and reason.",
      labelNames: ["kind", "reason"],
      registers,
    }),
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
}
