import { describe, expect, it } from "vitest";
import {
  afterSnapshotFailure,
  planBoot,
  type BootInput,
  type Found,
} from "../../src/engine/lifecycle/boot-plan.js";

const modes = ["auto", "never", "required"] as const;
const founds: (Found | undefined)[] = [
  undefined,
  { state: "absent" },
  { state: "unusable", reason: "snapshot k is damaged: ram.bin" },
  { state: "usable" },
];

/** The expected plan, stated once per rule so the table below checks every combination against it. */
function expected(i: BootInput): string {
  if (i.mode === "never") return "cold";
  const state = i.forceCapture ? "absent" : (i.found?.state ?? "absent");
  if (state === "usable") return "resume";
  if (state === "unusable") return i.mode === "required" ? "refuse:SNAPSHOT_UNUSABLE" : "cold:damaged";
  if (i.allowCapture) return "capture-then-resume";
  return i.mode === "required" ? "refuse:SNAPSHOT_REQUIRED" : "cold:may not capture";
}

function describePlan(i: BootInput): string {
  const p = planBoot(i);
  if (p.kind === "refuse") return `refuse:${p.code}`;
  if (p.kind === "cold" && p.reason)
    return p.reason.includes("damaged") ? "cold:damaged" : "cold:may not capture";
  return p.kind;
}

describe("the boot decision", () => {
  const all: BootInput[] = [];
  for (const mode of modes)
    for (const forceCapture of [false, true])
      for (const allowCapture of [true, false])
        for (const found of founds) all.push({ mode, forceCapture, allowCapture, found });

  it.each(all.map((i) => [JSON.stringify(i), i] as const))("%s", (_name, input) => {
    expect(describePlan(input)).toBe(expected(input));
  });

  it("resumes a usable snapshot in auto and required mode", () => {
    for (const mode of ["auto", "required"] as const)
      expect(planBoot({ mode, forceCapture: false, allowCapture: true, found: { state: "usable" } })).toEqual(
        {
          kind: "resume",
        },
      );
  });

  it("cold-boots an unusable snapshot in auto mode, carrying the store's reason", () => {
    const found: Found = { state: "unusable", reason: "snapshot k is damaged: ram.bin" };
    expect(planBoot({ mode: "auto", forceCapture: false, allowCapture: true, found })).toEqual({
      kind: "cold",
      reason: "snapshot k is damaged: ram.bin",
    });
  });

  it("refuses with a hint when a required snapshot is missing and capture is not allowed", () => {
    expect(
      planBoot({ mode: "required", forceCapture: false, allowCapture: false, found: { state: "absent" } }),
    ).toMatchObject({
      kind: "refuse",
      code: "SNAPSHOT_REQUIRED",
      hint: expect.stringContaining("capture"),
    });
  });

  it("captures again when forced, even over a usable snapshot", () => {
    expect(
      planBoot({ mode: "auto", forceCapture: true, allowCapture: true, found: { state: "usable" } }),
    ).toEqual({
      kind: "capture-then-resume",
    });
  });
});

describe("after a failed snapshot step", () => {
  it("falls back to a cold boot with the step and detail in auto mode", () => {
    expect(afterSnapshotFailure("auto", "resume", "guest agent silent")).toEqual({
      kind: "cold",
      reason: "resume failed: guest agent silent",
    });
    expect(afterSnapshotFailure("auto", "capture", "health timeout")).toEqual({
      kind: "cold",
      reason: "capture failed: health timeout",
    });
  });

  it("gives the error to the caller in required mode", () => {
    expect(afterSnapshotFailure("required", "resume", "x")).toEqual({ kind: "fail" });
  });
});
