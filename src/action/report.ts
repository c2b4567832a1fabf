/**
 * What the step reports: outputs for later steps, and the job summary (which
 * path ran and why, the cache, the key, QEMU and accelerator, environment
 * overrides, phase timings). The secrets were masked when they were made
 * (secrets.ts); they are masked again here before any output is set.
 */
import * as core from "@actions/core";
import type { RotatedSecrets, StartResult } from "../engine/index.js";
import type { KvmReport } from "./kvm.js";
import { describeOverride, type EnvOverride } from "./env-overrides.js";
import { SECRET_OUTPUTS } from "./secrets.js";

/**
 * hit: a snapshot for this key was found and resumed; unusable: one was
 * found (restored, or in cache-dir) but could not be used; miss: none;
 * unavailable: the cache service is not there or failed (an outage, not a
 * miss); off: cache none, or snapshot never.
 */
export type CacheState = "hit" | "unusable" | "miss" | "unavailable" | "off";

export interface CacheReport {
  mode: "actions" | "local" | "none";
  /** Before the start: what the cache lookup found ("hit" = a snapshot is in the store). */
  state: CacheState;
  /** One phrase for the summary. */
  note: string;
  /** The key a save of this job would use. */
  cacheKey?: string | undefined;
}

export interface MainReport {
  result: StartResult;
  /** The live secrets (the publishable key read back from the engine). */
  secrets: RotatedSecrets;
  /** The snapshot key of this runner (also when this start did not use a snapshot). */
  snapshotKey?: string | undefined;
  fallbackReason?: string | undefined;
  cache: CacheReport;
  /** What the post step will do with the snapshot: "pending" (it saves one) or "false", and why. */
  saved: { value: "pending" | "false"; why: string };
  envOverrides: readonly EnvOverride[];
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
  "secret-server-key",
  "super-secret-admin-key",
  "cron-secret",
  "boot-mode",
  "fallback-reason",
  "startup-seconds",
  "cache-hit",
  "cache-state",
  "cache-key",
  "saved",
  "snapshot-key",
  "qemu-version",
  "accelerator",
  "accelerator-reason",
] as const;

export const startupSeconds = (ms: number): string => (ms / 1000).toFixed(2);

/** The cache state after the start: a found snapshot that did not resume is "unusable". */
export function finalCacheState(cache: CacheReport, result: StartResult): CacheState {
  if (cache.state !== "hit") return cache.state;
  return result.bootMode === "resume" && !result.captured ? "hit" : "unusable";
}

/** Masks every secret first: setOutput may print (when GITHUB_OUTPUT is unset it is a workflow command). */
export function setOutputs(r: MainReport): void {
  for (const v of Object.values(r.secrets)) if (v) core.setSecret(v);
  const { urls } = r.result;
  const state = finalCacheState(r.cache, r.result);
  const outputs: Record<(typeof OUTPUT_NAMES)[number], string> = {
    "dashboard-url": urls.dashboard,
    "backend-url": urls.backend,
    "minio-url": urls.minio,
    "inbucket-url": urls.inbucket,
    "mock-oauth-url": urls.mockOauth,
    [SECRET_OUTPUTS.publishableClientKey]: r.secrets.publishableClientKey,
    [SECRET_OUTPUTS.secretServerKey]: r.secrets.secretServerKey,
    [SECRET_OUTPUTS.superSecretAdminKey]: r.secrets.superSecretAdminKey,
    [SECRET_OUTPUTS.cronSecret]: r.secrets.cronSecret,
    "boot-mode": r.result.bootMode,
    "fallback-reason": r.fallbackReason ?? "",
    "startup-seconds": startupSeconds(r.startupMs),
    "cache-hit": String(state === "hit"),
    "cache-state": state,
    "cache-key": r.cache.cacheKey ?? "",
    saved: r.saved.value,
    "snapshot-key": r.result.snapshotKey ?? r.snapshotKey ?? "",
    "qemu-version": r.result.qemuVersion,
    accelerator: r.result.accelerator,
    "accelerator-reason": r.result.acceleratorReason,
  } as Record<(typeof OUTPUT_NAMES)[number], string>;
  for (const [name, value] of Object.entries(outputs)) core.setOutput(name, value);
}

const code = (s: string) => `<code>${escape(s)}</code>`;
function escape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const timingRows = (timings: MainReport["timings"]) =>
  timings.map((t) => [`${"&nbsp;&nbsp;".repeat(t.depth)}${escape(t.phase)}`, (t.ms / 1000).toFixed(2)]);

export async function writeSummary(r: MainReport): Promise<void> {
  const res = r.result;
  const boot =
    res.bootMode === "resume"
      ? `resumed from a snapshot (${res.strategy ?? "?"} strategy${res.captured ? ", captured in this job" : ""})`
      : "cold boot";
  const state = finalCacheState(r.cache, res);
  const overrides = r.envOverrides.map((o) => escape(describeOverride(o)));
  const rows: string[][] = [
    ["Boot", boot],
    ["Fallback reason", r.fallbackReason ? escape(r.fallbackReason) : "—"],
    ["Snapshot cache", `${r.cache.mode}, <b>${state}</b>: ${escape(r.cache.note)}`],
    [
      "Snapshot saved",
      r.saved.value === "pending" ? `by the post step: ${escape(r.saved.why)}` : `no: ${escape(r.saved.why)}`,
    ],
    ["Snapshot key", (res.snapshotKey ?? r.snapshotKey) ? code(res.snapshotKey ?? r.snapshotKey ?? "") : "—"],
    ["Cache key", r.cache.cacheKey ? code(r.cache.cacheKey) : "—"],
    ["QEMU", `${escape(res.qemuVersion)} (${escape(r.qemuNote)})`],
    [
      "Accelerator",
      `<b>${escape(res.accelerator)}</b>: ${escape(res.acceleratorReason)}. ${escape(r.kvm.message)}`,
    ],
    ["Image", escape(r.imageNote)],
    ["Environment overrides", overrides.length > 0 ? overrides.join("<br>") : "none"],
    ["Startup", `${startupSeconds(r.startupMs)} s (engine ${(res.totalMs / 1000).toFixed(2)} s)`],
  ];
  if (res.placeholderSecrets)
    rows.push(["Warning", "the snapshot's placeholder secrets are live (rotation is off or failed)"]);
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
      ...timingRows(r.timings),
    ])
    .write();
}

export async function writeFailureSummary(message: string, timings: MainReport["timings"]): Promise<void> {
  const timing = timingRows(timings);
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

/** The post step's word on the snapshot: saved or not, and why (a cache outage says so). */
export async function writeSaveSummary(saved: boolean, why: string): Promise<void> {
  await core.summary
    .addHeading("Hexclave emulator: snapshot", 3)
    .addRaw(`<p>Snapshot saved: <b>${saved ? "yes" : "no"}</b> (${escape(why)})</p>`)
    .write();
}
