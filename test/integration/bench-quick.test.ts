/**
 * The benchmark itself still runs: `--smoke` (the quick bench on one QEMU,
 * a 512 MiB guest, 1-3 minutes) produces a result with every section and
 * every target evaluated. It asserts shape, never speed: a slow or loaded
 * machine must not fail this test.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseBenchArgs } from "../../bench/args.js";
import { runBench } from "../../bench/run.js";
import { SECTIONS, type BenchResult } from "../../bench/results.js";
import { REPO_ROOT } from "../support/tools.js";

describe("npm run bench -- --smoke", () => {
  const out = mkdtempSync(join(tmpdir(), "hxe-bench-test-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it(
    "writes a JSON result with every section and a Markdown table with the targets",
    { timeout: 600_000 },
    async () => {
      // Ports 27700-27799: the upper half of the bench's range, so a full bench may run beside this test.
      const opts = parseBenchArgs(["--smoke", "--quiet", "--port-base", "27700", "--out", out], REPO_ROOT);
      if (opts === "help") throw new Error("unexpected help");
      const { json, md } = await runBench(opts);
      const r = JSON.parse(readFileSync(json, "utf8")) as BenchResult;

      expect(r.mode).toBe("smoke");
      expect(r.machine.cores).toBeGreaterThan(0);
      expect(r.machine.cpuModel).not.toBe("");
      expect(r.guest.image).toMatch(/\.qcow2$/);
      expect(r.load.start.loadavg).toHaveLength(3);
      expect(r.qemus).toHaveLength(1);
      const q = r.qemus[0]!;
      expect(q.version).toMatch(/^\d+\.\d+/);
      expect(q.accelerator).toMatch(/^(kvm|tcg|hvf)$/);
      // A section that could not run says why; none may be missing silently.
      expect(q.errors).toEqual([]);
      for (const s of SECTIONS) expect(q.load[s], s).toBeDefined();

      expect(q.floor?.bare.greetingMs.median).toBeGreaterThan(0);
      expect(q.floor?.bare.readyMs.median).toBeGreaterThan(0);
      expect(q.cold?.totalMs.median).toBeGreaterThan(0);
      expect(q.capture.map((c) => c.strategy).sort()).toEqual([...q.strategies].sort());
      for (const c of q.capture) {
        expect(c.size.apparentBytes).toBeGreaterThan(0);
        expect(c.size.allocatedBytes).toBeGreaterThan(0);
        expect(c.transport.compressedBytes).toBeGreaterThan(0);
        expect(c.transport.plainZstd1Ms?.median).toBeGreaterThan(0);
        expect(c.transport.unpackMs.median).toBeGreaterThan(0);
      }
      for (const s of q.strategies) {
        for (const rotation of [true, false]) {
          const res = q.resume.find((x) => x.strategy === s && x.rotation === rotation);
          expect(res?.toRunning.median, `${s} ${rotation}`).toBeGreaterThan(0);
          expect(res?.toHealthy.median).toBeGreaterThan(0);
          expect(Object.keys(res?.phases ?? {})).toEqual(
            expect.arrayContaining(["resume-launch", "resume-migrate", "agent", "health"]),
          );
        }
      }
      expect(q.overhead?.fullFloor.greetingMs.median).toBeGreaterThan(0);
      expect(q.overhead?.fullFloor.readyMs.median).toBeGreaterThan(0);
      expect(q.overhead?.bareFloor.greetingMs.median).toBeGreaterThan(0);
      expect(q.overhead?.toRunningMs.median).toBeGreaterThan(0);
      expect(q.overhead?.qmpRoundTripMs.n).toBeGreaterThan(0);
      expect(q.overhead?.agentRoundTripMs.n).toBeGreaterThan(0);
      expect(q.overhead?.resumeNoticeMs.n).toBeGreaterThan(0);
      const engineTb = q.sharing?.runs.filter((x) => x.tcgTbSizeMiB === undefined);
      expect(engineTb?.map((x) => x.guests)).toEqual(opts.guests);
      expect(q.sharing?.extraPerGuest.length).toBeGreaterThan(0);
      expect(q.ramScaling.map((p) => p.ramMiB)).toEqual(opts.sizesMiB);
      for (const p of q.ramScaling)
        expect(p.floor?.readyMs.median, `floor at ${p.ramMiB}`).toBeGreaterThan(0);

      const ids = r.targets.map((t) => t.id);
      expect(ids).toEqual(
        expect.arrayContaining([
          "resume-vs-cold",
          "running-vs-floor",
          "ram-flat",
          "sharing",
          "transport",
          "qmp-rtt",
        ]),
      );
      // The seed side by side and the command's start-up: measured, or a reason why not (the
      // seed needs QEMU 9+ and ../shared; the command needs npm run build:lib).
      expect(q.seed).toBeDefined();
      expect(q.seed?.unavailable ?? q.seed?.ratios).toBeDefined();
      expect(q.command?.unavailable ?? q.command?.overheadMs).toBeDefined();
      expect(ids).toEqual(
        expect.arrayContaining([
          "seed-rotated",
          "seed-unrotated",
          "capture-overhead",
          "command-overhead",
          "action-cache-hit",
        ]),
      );
      // The Action's cache-hit job: the bundle restored the miss job's entry and resumed it.
      expect(q.action?.miss.entryBytes).toBeGreaterThan(0);
      expect(q.action?.hit.startupMs.median).toBeGreaterThan(0);
      expect(q.action?.hit.restoreMs.median).toBeGreaterThan(0);
      expect(Object.keys(q.action?.phases ?? {})).toEqual(expect.arrayContaining(["cache-restore"]));
      const unavailable = new Set([
        ...(q.seed?.unavailable ? ["seed-rotated", "seed-unrotated", "capture-overhead"] : []),
        ...(q.command?.unavailable ? ["command-overhead"] : []),
      ]);
      // Every other target is measured and carries its figure; whether it passes is the report's business.
      for (const t of r.targets.filter((x) => !unavailable.has(x.id))) expect(t.ratio, t.id).not.toBeNull();

      const table = readFileSync(md, "utf8");
      expect(table).toContain("## Targets");
      expect(table).toContain(q.label);
    },
  );
});
