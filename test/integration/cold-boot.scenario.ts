import { existsSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { start, type StartResult } from "../../src/engine/lifecycle/start.js";
import { status } from "../../src/engine/lifecycle/status.js";
import { stopVm } from "../../src/engine/lifecycle/stop.js";
import { runPaths } from "../../src/engine/lifecycle/run-dir.js";
import { isAlive, readPidFile } from "../../src/engine/qemu/process.js";
import { testEmulator } from "../support/emulator.js";
import type { QemuTarget } from "../support/tools.js";

/** Issue 2's bar: the test guest cold-boots on this QEMU and honours the contract. */
export function coldBootScenario(target: QemuTarget): void {
  describe(`cold boot of the test guest on ${target.label}`, () => {
    const emu = testEmulator(target, `cold-${target.label}`, 5);
    const config = emu.config({ snapshot: "never" });
    const paths = runPaths(config.runDir);
    afterAll(() => emu.cleanup());

    /** This home's first cold boot: run once, by whichever test needs it first. */
    let booted: Promise<StartResult> | undefined;
    const ensureBooted = () => (booted ??= start(config));
    /** The guest up (cold-booted again if a test stopped it). */
    const ensureRunning = async () => {
      await ensureBooted();
      if (!(await status(config)).vm.running) expect((await start(config)).bootMode).toBe("cold");
    };

    it("answers every contract health check with 200 after a cold boot", async () => {
      const result = await ensureBooted();
      expect(result.bootMode).toBe("cold");
      expect(result.fallbackReason).toBeUndefined();
      const report = await status(config);
      expect(report.vm.running).toBe(true);
      expect(report.services.map((s) => [s.name, s.ok])).toEqual([
        ["dashboard", true],
        ["backend", true],
        ["minio", true],
        ["inbucket", true],
        ["mockOauth", true],
      ]);
      for (const path of ["/handler/sign-in", "/health?db=1"]) {
        const port = path === "/health?db=1" ? config.ports.backend : config.ports.dashboard;
        expect((await fetch(`http://127.0.0.1:${port}${path}`)).status).toBe(200);
      }
    });

    it("runs commands through the guest agent with stdin", async () => {
      await ensureRunning();
      expect(await emu.agentExec(config, "/bin/cat", [], "piped through guest-exec")).toBe(
        "piped through guest-exec",
      );
      expect(await emu.agentExec(config, "/bin/cat", ["/host" + emu.share + "/hello.txt"])).toBe(
        "from the host\n",
      );
    });

    it("reads its runtime config from the STACKCFG disk the engine wrote", async () => {
      await ensureRunning();
      const env = await emu.agentExec(config, "/bin/cat", ["/mnt/stackcfg/runtime.env"]);
      expect(env).toContain(`STACK_EMULATOR_BACKEND_HOST_PORT=${config.ports.backend}`);
      expect(env).toContain("STACK_EMULATOR_PORT_PREFIX=81");
    });

    it("stops through the agent and leaves no process or socket behind", async () => {
      await ensureRunning();
      const qemu = readPidFile(paths.pidFile);
      expect(qemu && isAlive(qemu)).toBe(true);
      expect(await stopVm(paths, config.stopGraceSec)).toEqual({ wasRunning: true, via: "agent" });
      expect(isAlive(qemu!)).toBe(false);
      expect([paths.pidFile, paths.qmpSocket, paths.qgaSocket].filter((f) => existsSync(f))).toEqual([]);
      const report = await status(config);
      expect(report.vm.running).toBe(false);
      expect(report.ok).toBe(false);
    });
  });
}
