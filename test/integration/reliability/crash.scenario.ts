/**
 * Crashes around a capture and a run: QEMU and the engine killed mid-capture,
 * stale pid and socket files, two starts on one run dir, two emulators at once.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import type { EmulatorConfig } from "../../../src/engine/config/index.js";
import { start } from "../../../src/engine/lifecycle/start.js";
import { status } from "../../../src/engine/lifecycle/status.js";
import { runPaths } from "../../../src/engine/lifecycle/run-dir.js";
import { acquireRunLock } from "../../../src/engine/lifecycle/run-lock.js";
import { isAlive, readPidFile } from "../../../src/engine/qemu/process.js";
import { openSnapshotStore } from "../../../src/engine/snapshot/store.js";
import { readPck, sha256, type TestEmulator } from "../../support/emulator.js";
import type { reliabilityFigures } from "../../support/reliability.js";
import { engineChild, ensureNoSnapshot, ensureRunning, qemuOf, recorder, sigkill } from "./helpers.js";

type Figures = ReturnType<typeof reliabilityFigures>;

/** Nothing published, nothing in progress, no lock left: the store as if the capture never began. */
async function expectNothingPublished(config: EmulatorConfig): Promise<void> {
  const store = openSnapshotStore(config.snapshotDir);
  await store.sweep();
  const listing = await store.list();
  expect(listing.snapshots).toEqual([]);
  expect(listing.inProgress).toEqual([]);
  const locks = join(config.snapshotDir, ".locks");
  expect(existsSync(locks) ? readdirSync(locks) : []).toEqual([]);
}

export function crashScenario(emu: TestEmulator, second: TestEmulator, rel: Figures): void {
  const config = emu.config();
  const paths = runPaths(config.runDir);

  it("survives QEMU SIGKILLed during a capture: nothing published, an immediate cold-boot fallback", async () => {
    await ensureNoSnapshot(emu, config);
    await rel.fault("QEMU SIGKILL during capture", async () => {
      let killed = false;
      const rec = recorder((e) => {
        if (e.kind === "phase-start" && e.phase === "capture-ready" && !killed) {
          killed = true;
          // The capture VM is launched and booting; the engine now waits for its health.
          process.kill(qemuOf(config).pid, "SIGKILL");
        }
      });
      const r = await start(config, rec.sink);
      expect(killed).toBe(true);
      expect(r.bootMode).toBe("cold");
      // The exit itself ended the wait: a health timeout would read differently, and be retried.
      expect(r.fallbackReason).toMatch(/^capture failed: QEMU exited \(SIGKILL\) during the capture boot/);
      expect(rec.warnings().join("\n")).not.toContain("did not become ready");
      await expectNothingPublished(config);
      expect((await status(config)).ok).toBe(true);
      await emu.stop(config);
      return r.fallbackReason;
    });
  });

  it("survives the engine killed during a capture: the next start reclaims the run dir and captures", async () => {
    await ensureNoSnapshot(emu, config);
    await rel.fault("engine SIGKILL during capture", async () => {
      // Killed once its capture VM is launched, while it waits for the VM's health
      // (the child holds itself in that phase until killed).
      const { exited } = engineChild(
        config,
        (e, child) => {
          if (e.kind === "phase-start" && e.phase === "capture-ready") child.kill("SIGKILL");
        },
        "capture-ready",
      );
      expect((await exited).signal).toBe("SIGKILL");
      // What a dead engine leaves: its capture QEMU (holding the ports), a
      // half-written temporary dir, a store lock and a run lock of a dead pid.
      const orphan = qemuOf(config);
      expect(isAlive(orphan)).toBe(true);
      const before = await openSnapshotStore(config.snapshotDir).list();
      expect(before.snapshots).toEqual([]);
      expect(before.inProgress.map((p) => p.live)).toEqual([false]);
      expect(existsSync(paths.lock)).toBe(true);

      const rec = recorder();
      const r = await start(config, rec.sink);
      expect(rec.warnings().join("\n")).toContain(
        `killed QEMU pid ${orphan.pid}, left running by an interrupted start`,
      );
      expect(isAlive(orphan)).toBe(false);
      expect([r.bootMode, r.captured, r.fallbackReason]).toEqual(["resume", true, undefined]);
      const after = await openSnapshotStore(config.snapshotDir).list();
      expect(after.snapshots.map((s) => [s.key, s.state])).toEqual([[r.snapshotKey, "published"]]);
      expect(after.inProgress).toEqual([]);
      expect(readdirSync(join(config.snapshotDir, ".locks"))).toEqual([]);
      expect(await emu.fingerprint(config)).toBe(sha256(readPck(config)));
    });
  });

  it("refuses a second start on the same run dir: RUN_DIR_BUSY while one runs, ALREADY_RUNNING after", async () => {
    await ensureRunning(emu, config);
    await rel.fault("two starts on one run dir", async () => {
      await expect(start(config)).rejects.toMatchObject({
        code: "ALREADY_RUNNING",
        message: expect.stringContaining(config.runDir),
        hint: expect.stringContaining("stop it first"),
      });
      const held = acquireRunLock(paths.lock, paths.dir);
      try {
        await expect(start(config)).rejects.toMatchObject({
          code: "RUN_DIR_BUSY",
          message: `another start (pid ${process.pid}) is using ${config.runDir}`,
        });
      } finally {
        held.release();
      }
    });
  });

  it("recovers from stale pid and socket files of a crashed QEMU, and serializes two racing starts", async () => {
    await ensureRunning(emu, config);
    await rel.fault("stale pid and socket files", async () => {
      const qemu = qemuOf(config);
      await sigkill(qemu);
      expect(existsSync(paths.pidFile) && existsSync(paths.qmpSocket) && existsSync(paths.qgaSocket)).toBe(
        true,
      );
      const s = await status(config);
      expect(s.vm.running).toBe(false);
      expect(s.human).toContain("✗ emulator");
      const [a, b] = await Promise.allSettled([start(config), start(config)]);
      const ok = [a, b].filter((x) => x.status === "fulfilled");
      const refused = [a, b].flatMap((x) => (x.status === "rejected" ? [x.reason as { code: string }] : []));
      expect(ok).toHaveLength(1);
      expect(refused.map((e) => e.code)).toEqual(["RUN_DIR_BUSY"]);
      expect((ok[0] as PromiseFulfilledResult<{ bootMode: string }>).value.bootMode).toBe("resume");
      expect(readPidFile(paths.pidFile)?.pid).not.toBe(qemu.pid);
      expect((await status(config)).ok).toBe(true);
    });
  });

  it("runs two emulators side by side with their own run dirs and ports", async () => {
    await rel.fault("two emulators on one host", async () => {
      const other = second.config({ snapshot: "never" });
      await emu.stop(config);
      const [ra, rb] = await Promise.all([start(config), start(other)]);
      expect(rb.bootMode).toBe("cold");
      // Two boots at once on two cores: a resume that misses its deadline falls back, and says why.
      expect(ra.bootMode === "resume" || /^resume failed: /.test(ra.fallbackReason ?? "")).toBe(true);
      const [sa, sb] = await Promise.all([status(config), status(other)]);
      expect([sa.ok, sb.ok]).toEqual([true, true]);
      expect(sa.vm.pid).not.toBe(sb.vm.pid);
      expect(await emu.fingerprint(config)).toBe(sha256(readPck(config)));
      expect(await second.fingerprint(other)).toBe(sha256(readPck(other)));
      expect(readPck(config)).not.toBe(readPck(other));
      await Promise.all([emu.stop(config), second.stop(other)]);
      return `first ${ra.bootMode}${ra.fallbackReason ? ` (${ra.fallbackReason})` : ""}, second cold`;
    });
  });
}
