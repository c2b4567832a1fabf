/**
 * The engine against a guest that offers the guest contract and nothing more
 * (test/guest/build.sh --flavour contract: no hwclock or date, so the clock
 * cannot be set; a mount-host-fs that refuses --path). Capture, resume with
 * rotation, the host share and the fallback all work, and the result names
 * the optional steps the image did not offer.
 */
import { readdirSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { start, type StartResult } from "../../src/engine/lifecycle/start.js";
import { status } from "../../src/engine/lifecycle/status.js";
import { PLACEHOLDER_PCK } from "../../src/engine/guest/rotation.js";
import { readPck, sha256, testEmulator } from "../support/emulator.js";
import { testGuestImage, type QemuTarget } from "../support/tools.js";

/** Host ports 27800-27819: one block of ten per QEMU version. */
const PORT_BASE = 27800;

export function contractGuestScenario(target: QemuTarget): void {
  describe(`a contract-only guest on ${target.label}`, () => {
    const emu = testEmulator(
      target,
      `contract-${target.label}`,
      target.label === "qemu-7.2" ? 0 : 1,
      PORT_BASE,
    );
    const config = emu.config({ image: testGuestImage("contract") });
    afterAll(() => emu.cleanup());

    /** The first start of this home (it captures, then resumes): run once, by whichever test needs it first. */
    let first: Promise<StartResult> | undefined;
    const ensureCaptured = () => (first ??= start(config));
    /** A resumed emulator of the captured snapshot, running. */
    const ensureResumed = async () => {
      await ensureCaptured();
      const s = await status(config);
      if (!(s.vm.running && s.state?.bootMode === "resume")) {
        await emu.stop(config);
        expect((await start(config)).bootMode).toBe("resume");
      }
    };

    it("captures and resumes with rotated secrets, naming the optional steps it skipped", async () => {
      const r = await ensureCaptured();
      expect([r.bootMode, r.captured, r.placeholderSecrets]).toEqual(["resume", true, false]);
      expect(r.fallbackReason).toBeUndefined();
      expect(r.skipped?.map((s) => s.step).sort()).toEqual(["clock", "host-share-path"]);
      expect(r.skipped?.find((s) => s.step === "clock")?.reason).toMatch(
        /guest-set-time.*not currently supported/,
      );
      const pck = readPck(config);
      expect(pck).not.toBe(PLACEHOLDER_PCK);
      expect(await emu.fingerprint(config)).toBe(sha256(pck));
    });

    it("mounts the host share on /host, where the contract puts it", async () => {
      await ensureResumed();
      expect(await emu.agentExec(config, "/bin/cat", ["/host/hello.txt"])).toBe("from the host\n");
    });

    it("resumes again without a capture, with a new live key", async () => {
      await ensureCaptured();
      const before = readPck(config);
      await emu.stop(config);
      const r = await start(config);
      expect([r.bootMode, r.captured]).toEqual(["resume", false]);
      expect(readPck(config)).not.toBe(before);
      expect(await emu.fingerprint(config)).toBe(sha256(readPck(config)));
      expect((await status(config)).ok).toBe(true);
    });

    it("falls back to a cold boot, rotated and healthy, when the snapshot is damaged", async () => {
      const { snapshotKey } = await ensureCaptured();
      await emu.stop(config);
      truncateSync(join(config.snapshotDir, snapshotKey as string, "ram.bin"), 4096);
      const r = await start(config);
      expect(r.bootMode).toBe("cold");
      expect(r.fallbackReason).toMatch(/ram\.bin/);
      expect(
        readdirSync(join(config.snapshotDir, ".quarantine")).some((q) => q.startsWith(snapshotKey!)),
      ).toBe(true);
      expect((await status(config)).ok).toBe(true);
      expect(await emu.fingerprint(config)).toBe(sha256(readPck(config)));
      expect(await emu.agentExec(config, "/bin/cat", ["/host/hello.txt"])).toBe("from the host\n");
      await emu.stop(config);
    });
  });
}
