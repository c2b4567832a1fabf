import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
  closeSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { start, type StartResult } from "../../src/engine/lifecycle/start.js";
import { status } from "../../src/engine/lifecycle/status.js";
import { main } from "../../src/engine/cli/main.js";
import { runPaths } from "../../src/engine/lifecycle/run-dir.js";
import { launchVm } from "../../src/engine/lifecycle/launch.js";
import { connectedAt } from "../support/unix-sockets.js";
import { PLACEHOLDER_PCK } from "../../src/engine/guest/rotation.js";
import { readPck, sha256, testEmulator } from "../support/emulator.js";
import type { QemuTarget } from "../support/tools.js";
import type { EmulatorConfig } from "../../src/engine/config/index.js";

/** The engine's lifecycle end to end on one QEMU: capture, resume, rotation, disk consistency, damage. */
export function lifecycleScenario(target: QemuTarget): void {
  describe(`lifecycle on ${target.label}`, () => {
    const emu = testEmulator(target, `life-${target.label}`);
    const config = emu.config();
    afterAll(() => emu.cleanup());

    const snapshotDir = (c: EmulatorConfig, key: string) => join(c.snapshotDir, key);

    /**
     * The first start of this home, which captures the template snapshot and
     * resumes it: run once, by whichever test needs it first.
     */
    let captured: Promise<{ result: StartResult; pck: string; key: string }> | undefined;
    const ensureCaptured = () =>
      (captured ??= start(config).then((result) => ({
        result,
        pck: readPck(config),
        key: result.snapshotKey as string,
      })));
    /** The emulator running, resumed from that snapshot with rotated secrets (started if not). */
    const ensureResumed = async () => {
      const first = await ensureCaptured();
      const s = await status(config);
      const resumed = s.vm.running && s.state?.bootMode === "resume" && s.state.snapshotKey === first.key;
      if (!resumed || s.state?.placeholderSecrets) {
        await emu.stop(config);
        expect((await start(config)).bootMode).toBe("resume");
      }
      return first;
    };
    /** The snapshot captured and the emulator stopped. */
    const ensureCapturedAndStopped = async () => {
      const first = await ensureCaptured();
      await emu.stop(config);
      return first;
    };

    it("captures on the first start, then resumes with freshly rotated secrets", async () => {
      const { result: first, pck } = await ensureCaptured();
      expect(first.bootMode).toBe("resume");
      expect(first.captured).toBe(true);
      expect(first.strategy).toBe("template");
      expect(first.placeholderSecrets).toBe(false);
      expect(pck).toMatch(/^[0-9a-f]{64}$/);
      expect(pck).not.toBe(PLACEHOLDER_PCK);
      expect(statSync(runPaths(config.runDir).internalPck).mode & 0o777).toBe(0o600);
      expect(statSync(config.runDir).mode & 0o777).toBe(0o700);
      expect(await emu.fingerprint(config)).toBe(sha256(pck));
    });

    it("keeps the capture boot's disk writes: the boot marker reads back after resume", async () => {
      await ensureResumed();
      const marker = await emu.agentExec(config, "/bin/cat", ["/data/boot-marker"]);
      expect(marker.trim().split("\n")).toHaveLength(1);
      expect(marker).toMatch(/^boot 1 id=[0-9a-f]{16}/);
      expect(await emu.agentExec(config, "/bin/cat", ["/data/boot-count"])).toBe("1\n");
    });

    it("hot-plugs the host share at the same absolute path", async () => {
      await ensureResumed();
      expect(await emu.agentExec(config, "/bin/cat", [`/host${emu.share}/hello.txt`])).toBe(
        "from the host\n",
      );
    });

    it("gives every resume its own live key", async () => {
      const first = await ensureResumed();
      const previous = readPck(config);
      await emu.stop(config);
      const second = await start(config);
      expect(second.bootMode).toBe("resume");
      expect(second.captured).toBe(false);
      expect(second.snapshotKey).toBe(first.key);
      const pck = readPck(config);
      expect(pck).not.toBe(previous);
      expect(pck).not.toBe(first.pck);
      expect(await emu.fingerprint(config)).toBe(sha256(pck));
      expect((await status(config)).ok).toBe(true);
    });

    it("leaves a clean guest filesystem after resume and stop", async () => {
      await ensureResumed();
      await emu.agentExec(config, "/bin/sh", ["-c", "echo after-resume >> /data/boot-marker && sync"]);
      await emu.stop(config);
      const raw = join(emu.home, "flat.raw");
      execFileSync(target.img, ["convert", "-O", "raw", runPaths(config.runDir).session, raw]);
      const part = join(emu.home, "data.ext4");
      // Partition 2 of the test guest starts at 33 MiB (see test/guest/build.sh).
      execFileSync("dd", [`if=${raw}`, `of=${part}`, "bs=1M", "skip=33", "status=none"]);
      const fsck = execFileSync("e2fsck", ["-fn", part], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
      expect(fsck).toContain("GUESTDATA");
      const contents = execFileSync("debugfs", ["-R", "cat /boot-marker", part], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
      expect(contents).toMatch(/^boot 1 id=.*\nafter-resume\n$/);
      rmSync(raw);
      rmSync(part);
    });

    const damages: [string, (dir: string) => void, RegExp][] = [
      ["a truncated RAM file", (d) => truncateSync(join(d, "ram.bin"), 4096), /ram\.bin/],
      [
        "a corrupted device state",
        (d) => {
          const fd = openSync(join(d, "device-state.bin"), "r+");
          writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 2048);
          closeSync(fd);
        },
        /device-state\.bin/,
      ],
      [
        "a manifest from another QEMU version",
        (d) => {
          const m = JSON.parse(readFileSync(join(d, "manifest.json"), "utf8"));
          m.qemuVersion = m.keyParts.qemuVersion = "6.2.0";
          writeFileSync(join(d, "manifest.json"), JSON.stringify(m));
        },
        /invalid/,
      ],
      ["a missing disk layer", (d) => rmSync(join(d, "disk-layer.qcow2")), /disk-layer\.qcow2/],
    ];
    for (const [what, damage, reason] of damages) {
      it(`cold-boots, reports why and quarantines the snapshot on ${what}`, async () => {
        const { key } = await ensureCapturedAndStopped();
        const dir = snapshotDir(config, key);
        const keep = join(emu.home, "good-snapshot");
        cpSync(dir, keep, { recursive: true });
        try {
          damage(dir);
          const r = await start(config);
          expect(r.bootMode).toBe("cold");
          expect(r.fallbackReason).toMatch(reason);
          expect(existsSync(dir)).toBe(false);
          const quarantined = readdirSync(join(config.snapshotDir, ".quarantine"));
          expect(quarantined.some((q) => q.startsWith(key))).toBe(true);
          expect((await status(config)).ok).toBe(true);
          expect(await emu.fingerprint(config)).toBe(sha256(readPck(config)));
        } finally {
          await emu.stop(config);
          rmSync(dir, { recursive: true, force: true });
          cpSync(keep, dir, { recursive: true });
          rmSync(keep, { recursive: true, force: true });
        }
      });
    }

    const strategies = target.label === "qemu-7.2" ? ["stream"] : ["stream", "mapped-ram"];
    for (const strategy of strategies) {
      it(`captures and resumes with the ${strategy} strategy`, async () => {
        const c = emu.config({ strategy: strategy as EmulatorConfig["strategy"] });
        await emu.stop(c); // the same run dir as the template tests
        const r1 = await start(c);
        expect([r1.bootMode, r1.captured, r1.strategy]).toEqual(["resume", true, strategy]);
        expect(await emu.agentExec(c, "/bin/cat", ["/data/boot-count"])).toBe("1\n");
        await emu.stop(c);
        const r2 = await start(c);
        expect([r2.bootMode, r2.captured]).toEqual(["resume", false]);
        expect(await emu.fingerprint(c)).toBe(sha256(readPck(c)));
        await emu.stop(c);
      });
    }

    it("captures with the guest agent still connected, so no resume finds qemu-ga sleeping on EOF", async () => {
      // qemu-ga on virtio-serial reads EOF and sleeps 100 ms in a loop while
      // no host client is connected: a snapshot taken then wakes into that sleep.
      const c = emu.config({ strategy: "stream", forceCapture: true });
      await emu.stop(c);
      const seen: { status: string; connected: number }[] = [];
      const launch: typeof launchVm = async (binary, plan, paths, timeoutMs) => {
        const vm = await launchVm(binary, plan, paths, timeoutMs);
        if (plan.layout === "capture") {
          // Read synchronously as the event is dispatched: before the engine's
          // continuation after the migration (which closes its agent) can run.
          vm.qmp.on("MIGRATION", (e) => {
            const status = String((e.data as { status?: unknown } | undefined)?.status);
            if (status === "completed") seen.push({ status, connected: connectedAt(paths.qgaSocket) });
          });
        }
        return vm;
      };
      const r = await start(c, undefined, { deps: { launch } });
      expect([r.bootMode, r.captured]).toEqual(["resume", true]);
      expect(seen).toEqual([{ status: "completed", connected: 1 }]);
      await emu.stop(c);
    });

    it("keeps the placeholders when rotation is off, and says so in the result and status", async () => {
      await ensureCapturedAndStopped(); // rotation is not part of the key: the template snapshot resumes
      const c = emu.config({ rotation: false });
      const r = await start(c);
      expect([r.bootMode, r.captured, r.placeholderSecrets]).toEqual(["resume", false, true]);
      expect(readPck(c)).toBe(PLACEHOLDER_PCK);
      expect(await emu.fingerprint(c)).toBe(sha256(PLACEHOLDER_PCK));
      const s = await status(c);
      expect(s.state?.placeholderSecrets).toBe(true);
      expect(s.human).toContain("placeholder secrets are live");
      await emu.stop(c);
    });

    it("reset stops the emulator and deletes its run directory, keeping the snapshots", async () => {
      const { key } = await ensureCapturedAndStopped();
      await start(config);
      const code = await main(["reset", "--run-dir", config.runDir], { HEXCLAVE_EMULATOR_HOME: config.home });
      expect(code).toBe(0);
      expect(existsSync(config.runDir)).toBe(false);
      expect((await status(config)).vm.running).toBe(false);
      expect(existsSync(snapshotDir(config, key))).toBe(true);
    });

    // QEMU 10 can do every strategy: there is nothing to refuse there.
    if (target.label === "qemu-7.2")
      it("refuses the mapped-ram strategy on QEMU 7.2, naming the fix", async () => {
        await expect(start(emu.config({ strategy: "mapped-ram" }))).rejects.toMatchObject({
          code: "STRATEGY_UNSUPPORTED",
          message: expect.stringMatching(/not supported by QEMU 7\.2/),
          hint: expect.stringMatching(/mapped-ram needs QEMU 9\.0/),
        });
      });
  });
}
