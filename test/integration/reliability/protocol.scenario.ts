/**
 * The channels misbehaving for real: a slow and a silent guest agent, a
 * frozen QEMU, the QMP socket closed mid-call, a migration that never
 * completes, QEMU killed while a snapshot loads, and host ports taken
 * before and during a launch.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { start } from "../../../src/engine/lifecycle/start.js";
import { realDeps, type EngineDeps } from "../../../src/engine/lifecycle/deps.js";
import { stopVm } from "../../../src/engine/lifecycle/stop.js";
import { status } from "../../../src/engine/lifecycle/status.js";
import { runPaths } from "../../../src/engine/lifecycle/run-dir.js";
import { captureState } from "../../../src/engine/lifecycle/migrate.js";
import { migrationSpec } from "../../../src/engine/lifecycle/strategies.js";
import { PortInUseError } from "../../../src/engine/lifecycle/launch.js";
import { GuestAgent } from "../../../src/engine/qemu/qga.js";
import { QmpClient } from "../../../src/engine/qemu/qmp.js";
import {
  GuestAgentTimeoutError,
  QmpClosedError,
  QmpTimeoutError,
} from "../../../src/engine/qemu/protocol-errors.js";
import { openSnapshotStore } from "../../../src/engine/snapshot/store.js";
import type { QemuTarget } from "../../support/tools.js";
import type { TestEmulator } from "../../support/emulator.js";
import type { reliabilityFigures } from "../../support/reliability.js";
import { ensureRunning, ensureSnapshot, portHolder, qemuOf, recorder, stopChild } from "./helpers.js";

type Figures = ReturnType<typeof reliabilityFigures>;
/** What a promise settles with: its value or its rejection. */
const settled = <T>(p: Promise<T>): Promise<T | unknown> =>
  p.then(
    (x) => x,
    (e: unknown) => e,
  );

/** A QEMU with no guest at all (SeaBIOS finds nothing to boot): enough for QMP and migration faults. */
async function bareQemu(target: QemuTarget) {
  const dir = mkdtempSync(join(tmpdir(), "hxe-bare-"));
  const sock = join(dir, "qmp.sock");
  const child = spawn(
    target.binary,
    [
      "-machine",
      "q35",
      "-nodefaults",
      "-display",
      "none",
      "-m",
      "256",
      "-qmp",
      `unix:${sock},server=on,wait=off`,
    ],
    { stdio: "ignore" },
  );
  const qmp = await QmpClient.connect(sock, { timeoutMs: 10_000 });
  return {
    child,
    qmp,
    dir,
    async dispose() {
      qmp.close();
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function protocolScenario(emu: TestEmulator, target: QemuTarget, rel: Figures): void {
  const config = emu.config();
  const paths = runPaths(config.runDir);

  it("bounds a slow guest command and a frozen QEMU by deadlines, with typed errors, then carries on", async () => {
    await rel.fault("guest agent slow, QEMU frozen (SIGSTOP)", async () => {
      await emu.stop(config);
      await start(config);
      const agent = await GuestAgent.connect(paths.qgaSocket, { timeoutMs: 5_000 });
      try {
        await agent.waitUntilReady({ timeoutMs: 20_000 });
        const pid = await agent.start("/bin/sleep", ["600"], { timeoutMs: 10_000 });
        expect(await settled(agent.wait(pid, { timeoutMs: 1_000 }))).toBeInstanceOf(GuestAgentTimeoutError);
        // The deadline ended the wait, not the command: it still runs (kill finds it).
        const kill = await agent.exec("/bin/sh", ["-c", `kill ${pid}`], { timeoutMs: 10_000 });
        expect([kill.exitCode, kill.stderr.toString()]).toEqual([0, ""]);
        expect((await agent.exec("/bin/echo", ["ok"], { timeoutMs: 10_000 })).stdout.toString()).toBe("ok\n");

        const qemu = qemuOf(config);
        const qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: 5_000 });
        process.kill(qemu.pid, "SIGSTOP");
        try {
          // A frozen QEMU answers nothing: only the calls' own deadlines can end them.
          expect(await settled(agent.ping({ timeoutMs: 800 }))).toBeInstanceOf(GuestAgentTimeoutError);
          expect(await settled(qmp.execute("query-status", undefined, { timeoutMs: 600 }))).toBeInstanceOf(
            QmpTimeoutError,
          );
        } finally {
          process.kill(qemu.pid, "SIGCONT");
        }
        expect((await qmp.queryStatus()).running).toBe(true);
        qmp.close();
        await agent.ping({ timeoutMs: 10_000 });
      } finally {
        agent.close();
      }
      expect((await status(config)).ok).toBe(true);
    });
  });

  it("stops a guest whose agent went silent through the fallbacks (ACPI, then signals)", async () => {
    await ensureRunning(emu, config);
    await rel.fault("guest agent silent during stop", async () => {
      const agent = await GuestAgent.connect(paths.qgaSocket, { timeoutMs: 5_000 });
      await agent.waitUntilReady({ timeoutMs: 20_000 });
      // qemu-ga stops itself (init does not respawn a stopped process): the exit
      // of this command is never reported, since reporting it needs qemu-ga.
      const freeze = await settled(
        agent.exec("/bin/sh", ["-c", "kill -STOP $(pidof qemu-ga)"], { timeoutMs: 3_000 }),
      );
      expect(freeze).toBeInstanceOf(GuestAgentTimeoutError);
      expect(await settled(agent.sync({ timeoutMs: 1_000 }))).toBeInstanceOf(GuestAgentTimeoutError);
      agent.close();
      const r = await stopVm(paths, 2);
      expect(r.wasRunning).toBe(true);
      expect(["acpi", "sigterm", "sigkill"]).toContain(r.via);
      expect((await status(config)).vm.running).toBe(false);
      return `stopped via ${r.via}`;
    });
  });

  it("keeps the snapshot and falls back to a cold boot when QEMU is killed while a snapshot loads", async () => {
    await ensureSnapshot(emu, config);
    await rel.fault("QEMU SIGKILL during resume-migrate", async () => {
      let killed = false;
      const rec = recorder((e) => {
        if (e.kind === "phase-start" && e.phase === "resume-migrate" && !killed) {
          killed = true;
          process.kill(qemuOf(config).pid, "SIGKILL");
        }
      });
      const r = await start(config, rec.sink);
      expect(killed).toBe(true);
      expect(r.bootMode).toBe("cold");
      expect(r.fallbackReason).toMatch(
        /^resume failed: QEMU was killed \(SIGKILL\) while the snapshot was loading/,
      );
      const listing = await openSnapshotStore(config.snapshotDir).list();
      expect(listing.snapshots.map((s) => s.state)).toEqual(["published"]);
      expect(listing.quarantined).toEqual([]);
      await emu.stop(config);
    });
  });

  it("rejects everything pending with QmpClosedError when the QMP socket closes mid-call", async () => {
    await rel.fault("QMP socket closed mid-call", async () => {
      const vm = await bareQemu(target);
      try {
        process.kill(vm.child.pid!, "SIGSTOP");
        // Both are pending once issued (the command is written at once; a stopped QEMU cannot answer).
        const pending = settled(vm.qmp.execute("query-status"));
        const waiting = settled(vm.qmp.waitForEvent("SHUTDOWN"));
        process.kill(vm.child.pid!, "SIGKILL");
        // Their own deadlines (30 s) would end them with QmpTimeoutError: the close must come first.
        for (const err of await Promise.all([pending, waiting])) expect(err).toBeInstanceOf(QmpClosedError);
        await expect(vm.qmp.queryStatus()).rejects.toBeInstanceOf(QmpClosedError);
      } finally {
        await vm.dispose();
      }
    });
  });

  it("cancels a migration whose destination never reads, at its deadline, with MIGRATION_TIMEOUT", async () => {
    await rel.fault("migration that never completes", async () => {
      const vm = await bareQemu(target);
      try {
        const spec = {
          ...migrationSpec(
            "stream",
            { version: { major: 7, minor: 2, micro: 0 }, migrationCapabilities: [] },
            vm.dir,
            1,
          ),
        };
        // A destination that never reads, and goes when QEMU goes ($PPID: QEMU, which runs it under sh -c).
        spec.outgoingUri = "exec:exec tail -f /dev/null --pid=$PPID";
        const err = await settled(captureState(vm.qmp, spec, 3_000));
        expect(err).toMatchObject({ code: "MIGRATION_TIMEOUT", hint: expect.stringContaining("cancelled") });
        const info = await vm.qmp.queryMigrate();
        expect(["cancelling", "cancelled"]).toContain(info.status);
        expect((await vm.qmp.queryStatus()).status).toBeDefined(); // QEMU still answers
      } finally {
        await vm.dispose();
      }
    });
  });

  it("names the port and the process holding it when a port is taken before launch", async () => {
    await emu.stop(config);
    await rel.fault("host port taken before launch", async () => {
      const cold = emu.config({ snapshot: "never" });
      const holder = await portHolder(cold.ports.minio);
      try {
        const err = (await start(cold).catch((e: unknown) => e)) as PortInUseError;
        expect(err).toBeInstanceOf(PortInUseError);
        expect(err.port).toBe(cold.ports.minio);
        expect(err.message).toBe(
          `host port 127.0.0.1:${cold.ports.minio} is already in use by pid ${holder.pid} (node)`,
        );
        expect(err.hint).toContain(`stop what listens on port ${cold.ports.minio}`);
        return err.message;
      } finally {
        await stopChild(holder);
      }
    });
  });

  it("names the port and the process when it is taken between the check and QEMU's bind", async () => {
    await emu.stop(config);
    await rel.fault("host port taken racing with launch", async () => {
      const cold = emu.config({ snapshot: "never" });
      let holder: Awaited<ReturnType<typeof portHolder>> | undefined;
      // The race, made certain: the port is taken right after the engine found it free.
      const checkPorts: EngineDeps["checkPorts"] = async (bind, ports) => {
        await realDeps.checkPorts(bind, ports);
        holder ??= await portHolder(cold.ports.inbucket);
      };
      try {
        const err = (await start(cold, undefined, { deps: { checkPorts } }).catch(
          (e: unknown) => e,
        )) as PortInUseError;
        expect(holder).toBeDefined();
        expect(err).toBeInstanceOf(PortInUseError);
        expect(err.message).toBe(
          `host port 127.0.0.1:${cold.ports.inbucket} is already in use by pid ${holder!.pid} (node)`,
        );
        expect((await status(cold)).vm.running).toBe(false);
        return err.message;
      } finally {
        if (holder) await stopChild(holder);
      }
    });
  });
}
