/**
 * What the step reports: outputs for later steps, and the job summary (which
 * path ran and why, the cache, the key, QEMU and accelerator, phase timings).
 * The publishable key is masked before anything could print it.
 */
import * as core from "@actions/core";
import type { StartResult } from "../engine/index.js";
import type { KvmReport } from "./kvm.js";

export interface CacheReport {
  mode: "actions" | "local" | "none";
  /** A snapshot for the key was found (restored from the Actions cache, or already in the store). */
  hit: boolean;
  /** One phrase for the summary. */
  note: string;
  cacheKey?: string | undefined;
}

export interface MainReport {
  result: StartResult;
  publishableKey: string;
  /** The snapshot key of this runner (also when this start did not use a snapshot). */
  snapshotKey?: string | undefined;
  fallbackReason?: string | undefined;
  cache: CacheReport;
  kvm: KvmReport;
  qemuNote: string;
  imageNote: string;
  startupMs: number;
  timings: ReadonlyArray<{ phase: string; ms: number; depth: number }>;
}

export const OUTPUT_NAMES = [
  "dashboard-url",
  "backend-url",
  "minio-url",
  "inbucket-url",
  "mock-oauth-url",
  "publishable-client-key",
  "boot-mode",
  "fallback-reason",
  "startup-seconds",
  "cache-hit",
  "snapshot-key",
  "qemu-version",
  "accelerator",
  "accelerator-reason",
] as const;

export const startupSeconds = (ms: number): string => (ms / 1000).toFixed(2);

/** Masks the key first: setOutput may print (when GITHUB_OUTPUT is unset it is a workflow command). */
export function setOutputs(r: MainReport): void {
  if (r.publishableKey) core.setSecret(r.publishableKey);
  const { urls } = r.result;
  const outputs: Record<(typeof OUTPUT_NAMES)[number], string> = {
    "dashboard-url": urls.dashboard,
    "backend-url": urls.backend,
    "minio-url": urls.minio,
    "inbucket-url": urls.inbucket,
    "mock-oauth-url": urls.mockOauth,
    "publishable-client-key": r.publishableKey,
    "boot-mode": r.result.bootMode,
    "fallback-reason": r.fallbackReason ?? "",
    "startup-seconds": startupSeconds(r.startupMs),
    "cache-hit": String(r.cache.hit),
    "snapshot-key": r.result.snapshotKey ?? r.snapshotKey ?? "",
    "qemu-version": r.result.qemuVersion,
    accelerator: r.result.accelerator,
    "accelerator-reason": r.result.acceleratorReason,
  };
  for (const [name, value] of Object.entries(outputs)) core.setOutput(name, value);
}

const code = (s: string) => `<code>${escape(s)}</code>`;
function escape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export async function writeSummary(r: MainReport): Promise<void> {
  const res = r.result;
  const boot =
    res.bootMode === "resume"
      ? `resumed from a snapshot (${res.strategy ?? "?"} strategy${res.captured ? ", captured in this job" : ""})`
      : "cold boot";
  const rows: string[][] = [
    ["Boot", boot],
    ["Fallback reason", r.fallbackReason ? escape(r.fallbackReason) : "—"],
    ["Snapshot cache", `${r.cache.mode}: ${escape(r.cache.note)}`],
    ["Snapshot key", (res.snapshotKey ?? r.snapshotKey) ? code(res.snapshotKey ?? r.snapshotKey ?? "") : "—"],
    ["Cache key", r.cache.cacheKey ? code(r.cache.cacheKey) : "—"],
    ["QEMU", `${escape(res.qemuVersion)} (${escape(r.qemuNote)})`],
    [
      "Accelerator",
      `<b>${escape(res.accelerator)}</b>: ${escape(res.acceleratorReason)}. ${escape(r.kvm.message)}`,
    ],
    ["Image", escape(r.imageNote)],
    ["Startup", `${startupSeconds(r.startupMs)} s (engine ${(res.totalMs / 1000).toFixed(2)} s)`],
  ];
  if (res.placeholderSecrets)
    rows.push(["Warning", "the snapshot's placeholder secrets are live (rotation is off or failed)"]);
  const timing = r.timings.map((t) => [
    `${"&nbsp;&nbsp;".repeat(t.depth)}${escape(t.phase)}`,
    (t.ms / 1000).toFixed(2),
  ]);
  await core.summary
    .addHeading("Hexclave emulator", 2)
    .addTable([
      [
        { data: "", header: true },
        { data: "", header: true },
      ],
      ...rows,
    ])
    .addHeading("Phase timings", 3)
    .addTable([
      [
        { data: "Phase", header: true },
        { data: "Seconds", header: true },
      ],
      ...timing,
    ])
    .write();
}

export async function writeFailureSummary(message: string, timings: MainReport["timings"]): Promise<void> {
  const timing = timings.map((t) => [
    `${"&nbsp;&nbsp;".repeat(t.depth)}${escape(t.phase)}`,
    (t.ms / 1000).toFixed(2),
  ]);
  const s = core.summary.addHeading("Hexclave emulator: failed to start", 2).addCodeBlock(message);
  if (timing.length > 0) {
    s.addHeading("Phase timings", 3).addTable([
      [
        { data: "Phase", header: true },
        { data: "Seconds", header: true },
      ],
      ...timing,
    ]);
  }
  await s.write();
}
