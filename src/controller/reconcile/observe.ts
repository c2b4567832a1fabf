/**
 * From what the controller sees (the Pod, the agent's report) to the
 * Emulator's status. Pure: given the previous status and an observation it
 * returns the next status; the reconcile writes it only when it changed.
 */
import type { V1Pod } from "@kubernetes/client-node";
import type { AgentReport } from "../agent/contract.js";
import type { EmulatorStatus, Endpoint } from "../crd/types.js";
import { setCondition } from "./conditions.js";

export interface PodView {
  name: string;
  uid: string;
  phase: string;
  ready: boolean;
  ip?: string | undefined;
  node?: string | undefined;
  deleting: boolean;
  restarts: number;
  /** The last termination of the agent container, with its message (the agent writes why it failed). */
  terminated?: { exitCode: number; reason: string; message: string } | undefined;
  /** Why the container is waiting (CrashLoopBackOff, ImagePullBackOff…). */
  waiting?: { reason: string; message: string } | undefined;
  unschedulable?: string | undefined;
}

export function viewPod(pod: V1Pod): PodView {
  const cs = pod.status?.containerStatuses?.[0];
  const term = cs?.state?.terminated ?? cs?.lastState?.terminated;
  const sched = pod.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
  return {
    name: pod.metadata?.name ?? "",
    uid: pod.metadata?.uid ?? "",
    phase: pod.status?.phase ?? "Pending",
    ready: pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
    ip: pod.status?.podIP,
    node: pod.spec?.nodeName,
    deleting: Boolean(pod.metadata?.deletionTimestamp),
    restarts: cs?.restartCount ?? 0,
    terminated: term
      ? {
          exitCode: term.exitCode,
          reason: term.reason ?? "",
          message: (term.message ?? "").trim().slice(0, 2048),
        }
      : undefined,
    waiting: cs?.state?.waiting?.reason
      ? { reason: cs.state.waiting.reason, message: cs.state.waiting.message ?? "" }
      : undefined,
    unschedulable: sched ? (sched.message ?? sched.reason ?? "unschedulable") : undefined,
  };
}

export interface Observation {
  generation: number | undefined;
  now: Date;
  pod?: PodView | undefined;
  report?: AgentReport | undefined;
  endpoints: Endpoint[];
  secretName?: string | undefined;
  rotation: boolean;
  /** A problem found before the Pod (invalid spec, a Secret that is not ours…). */
  problem?: { reason: string; message: string } | undefined;
  expiresAt?: string | undefined;
  /** The Secret was replaced since the Pod's guest was rotated: the live keys are not the Secret's. */
  keysReplaced?: boolean | undefined;
}

const POD_FIELDS = [
  "bootMode",
  "fallbackReason",
  "startupSeconds",
  "timings",
  "snapshotKey",
  "strategy",
  "qemuVersion",
  "accelerator",
] as const;

export function nextStatus(prev: EmulatorStatus | undefined, o: Observation): EmulatorStatus {
  const g = o.generation;
  let conditions = prev?.conditions ?? [];
  const set = (
    type: Parameters<typeof setCondition>[1]["type"],
    status: "True" | "False" | "Unknown",
    reason: string,
    message: string,
  ) => {
    conditions = setCondition(conditions, { type, status, reason, message }, g, o.now);
  };
  const s: EmulatorStatus = {
    observedGeneration: g,
    endpoints: o.endpoints,
    ...(o.secretName ? { secretName: o.secretName } : {}),
    ...(o.expiresAt ? { expiresAt: o.expiresAt } : {}),
  };
  // Boot facts belong to one Pod: keep them while it lives, drop them with it.
  const pod = o.pod;
  const report = o.report;
  if (pod) {
    s.podName = pod.name;
    s.podUID = pod.uid;
    if (pod.node) s.node = pod.node;
    if (prev?.podUID === pod.uid)
      for (const f of POD_FIELDS) if (prev[f] !== undefined) (s as Record<string, unknown>)[f] = prev[f];
  }
  if (pod && report && report.state === "ready") {
    if (report.bootMode) s.bootMode = report.bootMode;
    if (report.fallbackReason) s.fallbackReason = report.fallbackReason;
    else delete s.fallbackReason;
    if (report.startupSeconds !== undefined)
      s.startupSeconds = Math.round(report.startupSeconds * 1000) / 1000;
    if (report.timings) s.timings = report.timings;
    for (const f of ["snapshotKey", "strategy", "qemuVersion", "accelerator"] as const)
      if (report[f]) s[f] = report[f];
  }

  const failure =
    o.problem ??
    (report?.state === "failed"
      ? { reason: "AgentFailed", message: report.error?.message ?? "the agent failed" }
      : undefined) ??
    (pod && !pod.ready && pod.terminated && pod.terminated.exitCode !== 0
      ? {
          reason: "AgentFailed",
          message:
            pod.terminated.message ||
            `the agent exited with ${pod.terminated.exitCode} (${pod.terminated.reason})`,
        }
      : undefined) ??
    (pod?.waiting && /BackOff|Err|Invalid/.test(pod.waiting.reason)
      ? { reason: pod.waiting.reason, message: pod.waiting.message || pod.waiting.reason }
      : undefined);

  if (failure) {
    s.phase = "Degraded";
    set("Ready", "False", failure.reason, failure.message);
    set("Degraded", "True", failure.reason, failure.message);
  } else if (pod && pod.ready && !pod.deleting) {
    s.phase = "Ready";
    const mode = s.bootMode;
    const why = mode === "resume" ? "Resumed" : mode === "cold" ? "ColdBooted" : "Healthy";
    set(
      "Ready",
      "True",
      why,
      `the emulator is healthy on ${pod.node ?? "its node"}${s.startupSeconds !== undefined ? ` (${s.startupSeconds} s to healthy)` : ""}`,
    );
    if (s.fallbackReason) set("Degraded", "True", "SnapshotFallback", s.fallbackReason);
    else set("Degraded", "False", "AsExpected", "no fallback, no failure");
  } else {
    s.phase = pod && (pod.phase === "Running" || report?.state === "starting") ? "Starting" : "Pending";
    const reason = pod?.deleting
      ? "PodTerminating"
      : pod?.unschedulable
        ? "Unschedulable"
        : s.phase === "Starting"
          ? "Starting"
          : "PodPending";
    const message = pod?.deleting
      ? "the previous Pod is stopping its VM"
      : pod?.unschedulable
        ? pod.unschedulable
        : s.phase === "Starting"
          ? "the agent is resuming or booting the emulator"
          : "waiting for the Pod to be scheduled and started";
    set("Ready", "False", reason, message);
    set("Degraded", "False", "AsExpected", "no failure so far");
  }

  if (s.bootMode === "resume")
    set(
      "SnapshotResumed",
      "True",
      "Resumed",
      s.strategy ? `resumed with the ${s.strategy} strategy` : "resumed from the node's snapshot store",
    );
  else if (s.bootMode === "cold")
    set(
      "SnapshotResumed",
      "False",
      "ColdBoot",
      s.fallbackReason ?? "snapshots are off (spec.snapshot: never)",
    );
  else set("SnapshotResumed", "Unknown", "NotBooted", "the emulator has not reported a boot yet");

  if (o.rotation && o.keysReplaced)
    set(
      "SecretsRotated",
      "False",
      "KeysReplaced",
      `Secret ${o.secretName ?? ""} was replaced with new keys; the Pod is being replaced to run them`,
    );
  else if (!o.rotation)
    set(
      "SecretsRotated",
      "False",
      "RotationOff",
      "spec.rotation is false: the image's public placeholder secrets are live",
    );
  else if (report?.state === "ready" && report.rotatedToSecret)
    set(
      "SecretsRotated",
      "True",
      "Rotated",
      `the guest runs the keys in Secret ${o.secretName ?? ""}`.trim(),
    );
  else if (report?.state === "ready")
    set("SecretsRotated", "False", "NotRotated", "the agent did not rotate to the Secret's keys");
  else if (prev?.podUID !== pod?.uid || !conditions.some((c) => c.type === "SecretsRotated"))
    set("SecretsRotated", "Unknown", "NotBooted", "the emulator has not reported a boot yet");

  s.conditions = conditions;
  return s;
}

/** Compares statuses as the API would store them (undefined fields dropped). */
export function sameStatus<T extends object = EmulatorStatus>(a: T | undefined, b: T): boolean {
  return JSON.stringify(normalise(a ?? {})) === JSON.stringify(normalise(b));
}

function normalise(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalise);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, normalise((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}
