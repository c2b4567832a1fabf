import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tail } from "../../src/action/diagnostics.js";
import { PhaseLog, type LogOut } from "../../src/action/log.js";

function recorder(): { out: LogOut; lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    out: {
      info: (m) => lines.push(m),
      warning: (m) => lines.push(`WARN ${m}`),
      startGroup: (n) => lines.push(`::group::${n}`),
      endGroup: () => lines.push("::endgroup::"),
    },
  };
}

describe("the job log", () => {
  it("folds each top-level phase into a group, nested phases into lines of it, and times all", async () => {
    const { out, lines } = recorder();
    const log = new PhaseLog(out);
    await log.step("capture", async () => {
      log.sink({ kind: "phase-start", phase: "capture-boot" });
      log.sink({ kind: "info", message: "booting" });
      log.sink({ kind: "phase-end", phase: "capture-boot", ms: 1234 });
    });
    log.sink({ kind: "warn", message: "careful" });
    expect(lines[0]).toBe("::group::capture");
    expect(lines.slice(1, 4)).toEqual(["capture-boot…", "booting", "capture-boot: 1.23 s"]);
    expect(lines[4]).toMatch(/^capture: \d+\.\d\d s$/);
    expect(lines.slice(5)).toEqual(["::endgroup::", "WARN careful"]);
    expect(log.timings.map((t) => [t.phase, t.depth])).toEqual([
      ["capture", 0],
      ["capture-boot", 1],
    ]);
    expect(log.timings[1]?.ms).toBe(1234);
  });

  it("times phases that overlap by their names, whichever ends first, and ends the group with the last", () => {
    const { out, lines } = recorder();
    const log = new PhaseLog(out);
    log.sink({ kind: "phase-start", phase: "rotation" });
    log.sink({ kind: "phase-start", phase: "host-share" });
    log.sink({ kind: "phase-end", phase: "rotation", ms: 900 });
    log.sink({ kind: "phase-end", phase: "host-share", ms: 1500 });
    expect(lines).toEqual([
      "::group::rotation",
      "host-share…",
      "rotation: 0.90 s",
      "host-share: 1.50 s",
      "::endgroup::",
    ]);
    expect(log.timings).toEqual([
      { phase: "rotation", ms: 900, depth: 0 },
      { phase: "host-share", ms: 1500, depth: 1 },
    ]);
  });

  it("tails a log file, and says when it is missing or empty", () => {
    const dir = mkdtempSync(join(tmpdir(), "hxe-tail-"));
    const file = join(dir, "serial.log");
    writeFileSync(file, Array.from({ length: 300 }, (_, i) => `line ${i}`).join("\r\n") + "\n");
    expect(tail(file, 3)).toBe("line 297\nline 298\nline 299");
    expect(tail(join(dir, "nope.log"), 3)).toContain("does not exist");
    writeFileSync(file, "");
    expect(tail(file, 3)).toContain("is empty");
    rmSync(dir, { recursive: true, force: true });
  });
});
