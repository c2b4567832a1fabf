/**
 * Which way a start boots, decided from facts alone (pure, so every
 * combination is tested): the snapshot mode, whether this start may
 * capture, and what the store said about the key. start.ts executes it.
 */
import type { EmulatorConfig } from "../config/index.js";

type SnapshotMode = EmulatorConfig["snapshot"];

export type Found = { state: "absent" } | { state: "unusable"; reason: string } | { state: "usable" };

export interface BootInput {
  mode: SnapshotMode;
  /** Capture even when a usable snapshot exists (it is replaced). */
  forceCapture: boolean;
  /**
   * Whether this start may pay for a capture. The Action forbids one after a
   * cache entry turned out unusable: that job cold-boots and says so.
   */
  allowCapture: boolean;
  /** The store's verdict on the key; not asked when mode is "never". */
  found?: Found | undefined;
}

export type BootPlan =
  | { kind: "resume" }
  | { kind: "capture-then-resume" }
  | { kind: "cold"; reason?: string | undefined }
  | { kind: "refuse"; code: "SNAPSHOT_UNUSABLE" | "SNAPSHOT_REQUIRED"; message: string; hint: string };

/** Whether the plan depends on the store at all. */
export const needsLookup = (mode: SnapshotMode): boolean => mode !== "never";

export function planBoot(i: BootInput): BootPlan {
  if (i.mode === "never") return { kind: "cold" };
  const found: Found = i.forceCapture ? { state: "absent" } : (i.found ?? { state: "absent" });
  if (found.state === "usable") return { kind: "resume" };
  if (found.state === "unusable") {
    // Nothing of a bad snapshot is trusted, and this start does not pay for a
    // new capture: it cold-boots; the next start captures afresh.
    if (i.mode === "required") {
      return {
        kind: "refuse",
        code: "SNAPSHOT_UNUSABLE",
        message: found.reason,
        hint: "run hexclave-emulator capture, or use snapshot=auto",
      };
    }
    return { kind: "cold", reason: found.reason };
  }
  if (i.allowCapture) return { kind: "capture-then-resume" };
  if (i.mode === "required") {
    return {
      kind: "refuse",
      code: "SNAPSHOT_REQUIRED",
      message: "snapshot is required, there is none, and this start may not capture one",
      hint: "run hexclave-emulator capture first, or use snapshot=auto",
    };
  }
  return { kind: "cold", reason: "no snapshot, and this start may not capture one" };
}

/**
 * A step of the snapshot path failed (the capture, or the resume and the
 * guest steps after it): auto falls back to a cold boot with the reason;
 * required gives the error to the caller.
 */
export function afterSnapshotFailure(
  mode: SnapshotMode,
  step: "capture" | "resume",
  detail: string,
): { kind: "cold"; reason: string } | { kind: "fail" } {
  return mode === "required" ? { kind: "fail" } : { kind: "cold", reason: `${step} failed: ${detail}` };
}
