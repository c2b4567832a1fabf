/** The controller's metrics, one registry per controller process. */
import { Registry, type Counter, type Gauge, type Histogram } from "./registry.js";

const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STARTUP_BUCKETS = [0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 240, 480];

export interface ControllerMetrics {
  registry: Registry;
  reconcileTotal: Counter;
  reconcileErrors: Counter;
  reconcileDuration: Histogram;
  queueDepth: Gauge;
  queueAdds: Counter;
  queueRetries: Counter;
  bootTotal: Counter;
  startupSeconds: Histogram;
  phaseSeconds: Histogram;
  emulators: Gauge;
  leader: Gauge;
  informerRestarts: Counter;
}

export function controllerMetrics(): ControllerMetrics {
  const r = new Registry();
  return {
    registry: r,
    reconcileTotal: r.counter(
      "hexclave_emulator_reconcile_total",
      "Reconciles of Emulators by result (success, requeue, error).",
      ["result"],
    ),
    reconcileErrors: r.counter(
      "hexclave_emulator_reconcile_errors_total",
      "Reconciles that failed, by error code.",
      ["code"],
    ),
    reconcileDuration: r.histogram(
      "hexclave_emulator_reconcile_duration_seconds",
      "Time one reconcile of an Emulator took.",
      [],
      RECONCILE_BUCKETS,
    ),
    queueDepth: r.gauge("hexclave_emulator_workqueue_depth", "Emulator keys waiting in the work queue."),
    queueAdds: r.counter("hexclave_emulator_workqueue_adds_total", "Keys queued (after de-duplication)."),
    queueRetries: r.counter(
      "hexclave_emulator_workqueue_retries_total",
      "Keys re-queued with backoff after an error.",
    ),
    bootTotal: r.counter(
      "hexclave_emulator_boots_total",
      "Emulator boots reported by agents, by boot mode (resume, cold).",
      ["mode"],
    ),
    startupSeconds: r.histogram(
      "hexclave_emulator_startup_seconds",
      "From the agent's start to a healthy emulator, by boot mode.",
      ["mode"],
      STARTUP_BUCKETS,
    ),
    phaseSeconds: r.histogram(
      "hexclave_emulator_phase_seconds",
      "Engine phase durations reported by agents.",
      ["phase"],
      STARTUP_BUCKETS,
    ),
    emulators: r.gauge("hexclave_emulator_emulators", "Emulators known to the controller, by phase.", [
      "phase",
    ]),
    leader: r.gauge("hexclave_emulator_leader", "1 while this replica holds the leader Lease."),
    informerRestarts: r.counter(
      "hexclave_emulator_informer_restarts_total",
      "Informers restarted after their list or watch failed, by resource.",
      ["resource"],
    ),
  };
}
