/**
 * The arm64 test guest (test/guest/build.sh --arch arm64: UEFI, GRUB, Debian's
 * arm64 kernel) on `virt` under TCG on this amd64 host: a cold boot, a
 * capture, resumes with rotation, and the 9p host share hot-plugged on virt's
 * PCIe root port. Emulating arm64 is slow: the deadlines are generous, and
 * the timings measured are printed for the report, never asserted.
 */
import { afterAll, describe, expect, it } from "vitest";
import { start, type StartResult } from "../../src/engine/lifecycle/start.js";
import { status } from "../../src/engine/lifecycle/status.js";
import { PLACEHOLDER_PCK } from "../../src/engine/guest/rotation.js";
import type { EmulatorConfig } from "../../src/engine/config/index.js";
import { readPck, sha256, testEmulator } from "../support/emulator.js";
import { testGuestImage, type QemuTarget } from "../support/tools.js";

/** Host ports 27900-27919: one block of ten per QEMU version. */
const PORT_BASE = 27900;
/** A failure deadline per test (a cold boot under TCG takes tens of seconds on a busy host). */
const TEST_TIMEOUT_MS = 15 * 60_000;

/** The phases of a start that `pick` chooses, and their sum, for the log. */
function phaseTimes(r: StartResult, pick: (phase: string) => boolean): string {
  const picked = Object.entries(r.timings).filter(([phase]) => pick(phase));
  const sum = picked.reduce((s, [, ms]) => s + ms, 0);
  return `${sum} ms (${picked.map(([p, ms]) => `${p} ${ms}`).join(", ")})`;
}

export function arm64Scenario(target: QemuTarget): void {
  describe(`the arm64 guest on ${target.label} (virt, UEFI, TCG)`, () => {
    const emu = testEmulator(target, `arm64-${target.label}`, target.label === "qemu-7.2" ? 0 : 1, PORT_BASE);
    const arm64 = {
      arch: "arm64",
      image: testGuestImage("full", "arm64"),
      qemuBinary: target.binary,
      readyTimeoutSec: 600,
      snapshotReadyTimeoutSec: 300,
    } as const;
    const cold = emu.config({ ...arm64, snapshot: "never" });
    const config = emu.config(arm64);
    afterAll(() => emu.cleanup());
    const log = (what: string) => console.log(`[arm64 ${target.label}] ${what}`);

    /** A cold boot of this home (snapshot: never): run once, by whichever test needs it first. */
    let coldBooted: Promise<StartResult> | undefined;
    const ensureColdBooted = () =>
      (coldBooted ??= (async () => {
        await emu.stop(config);
        return start(cold);
      })());
    /** The first start with snapshots (it captures, then resumes): run once. */
    let captured: Promise<{ result: StartResult; pck: string }> | undefined;
    const ensureCaptured = () =>
      (captured ??= (async () => {
        await emu.stop(cold); // the same run dir as the cold boot
        const result = await start(config);
        return { result, pck: readPck(config) };
      })());
    /** This home's emulator running, resumed from the snapshot with rotated secrets (started if not). */
    const ensureResumed = async (): Promise<EmulatorConfig> => {
      await ensureCaptured();
      const s = await status(config);
      if (!(s.vm.running && s.state?.bootMode === "resume" && !s.state.placeholderSecrets)) {
        await emu.stop(config);
        expect((await start(config)).bootMode).toBe("resume");
      }
      return config;
    };

    it(
      "cold-boots (snapshot: never) healthy, with rotated secrets and the host share mounted",
      async () => {
        const r = await ensureColdBooted();
        log(`cold boot to healthy: ${r.totalMs} ms; ${phaseTimes(r, () => true)}`);
        expect([r.bootMode, r.fallbackReason, r.placeholderSecrets]).toEqual(["cold", undefined, false]);
        expect(r.qemuVersion.startsWith(target.label === "qemu-7.2" ? "7.2." : "10.")).toBe(true);
        expect(r.accelerator).toBe("tcg");
        const report = await status(cold);
        expect(report.ok).toBe(true);
        expect(report.services.every((s) => s.ok)).toBe(true);
        const pck = readPck(cold);
        expect(pck).toMatch(/^[0-9a-f]{64}$/);
        expect(pck).not.toBe(PLACEHOLDER_PCK);
        expect(await emu.fingerprint(cold)).toBe(sha256(pck));
        expect(await emu.agentExec(cold, "/bin/cat", [`/host${emu.share}/hello.txt`])).toBe(
          "from the host\n",
        );
        expect((await emu.agentExec(cold, "/bin/uname", ["-m"])).trim()).toBe("aarch64");
      },
      TEST_TIMEOUT_MS,
    );

    it(
      "captures a snapshot, then resumes it with freshly rotated secrets",
      async () => {
        const { result: r, pck } = await ensureCaptured();
        log(`capture: ${phaseTimes(r, (p) => p.startsWith("capture-"))}`);
        log(
          `resume after capture: ${phaseTimes(r, (p) => !p.startsWith("capture-") && p !== "probe" && p !== "snapshot-key")}`,
        );
        expect([r.bootMode, r.captured, r.fallbackReason, r.placeholderSecrets]).toEqual([
          "resume",
          true,
          undefined,
          false,
        ]);
        expect(r.skipped ?? []).toEqual([]);
        expect(pck).toMatch(/^[0-9a-f]{64}$/);
        expect(pck).not.toBe(PLACEHOLDER_PCK);
        expect(await emu.fingerprint(config)).toBe(sha256(pck));
        expect((await status(config)).ok).toBe(true);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      "resumes the snapshot again with a live key of its own",
      async () => {
        const { result: first } = await ensureCaptured();
        await ensureResumed();
        const previous = readPck(config);
        await emu.stop(config);
        const r = await start(config);
        log(`resume to healthy: ${r.totalMs} ms; ${phaseTimes(r, () => true)}`);
        expect([r.bootMode, r.captured, r.fallbackReason, r.placeholderSecrets]).toEqual([
          "resume",
          false,
          undefined,
          false,
        ]);
        expect(r.snapshotKey).toBe(first.snapshotKey);
        const pck = readPck(config);
        expect(pck).not.toBe(previous);
        expect(pck).not.toBe(PLACEHOLDER_PCK);
        expect(await emu.fingerprint(config)).toBe(sha256(pck));
        expect((await status(config)).ok).toBe(true);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      "hot-plugs the host share after resume on virt's PCIe root port, readable in the guest",
      async () => {
        const c = await ensureResumed();
        expect(await emu.agentExec(c, "/bin/cat", [`/host${emu.share}/hello.txt`])).toBe("from the host\n");
        // The 9p device sits behind a bridge (the reserved root port), not on the root bus.
        const where = await emu.agentExec(c, "/bin/sh", [
          "-c",
          "for d in /sys/bus/virtio/devices/*; do [ -f $d/mount_tag ] && readlink -f $d; done",
        ]);
        expect(where.trim()).toMatch(
          /^\/sys\/devices\/pci0000:00\/0000:00:[0-9a-f.]+\/0000:0[1-9a-f]:00\.0\/virtio\d+$/,
        );
      },
      TEST_TIMEOUT_MS,
    );
  });
}
