import { afterAll, describe, expect, it } from "vitest";
import { start } from "../../src/engine/lifecycle/start.js";
import { status } from "../../src/engine/lifecycle/status.js";
import { testEmulator } from "../support/emulator.js";
import type { QemuTarget } from "../support/tools.js";

/** Issue 2's bar: the test guest cold-boots on this QEMU and honours the contract. */
export function coldBootScenario(target: QemuTarget): void {
  describe(`cold boot of the test guest on ${target.label}`, () => {
    const emu = testEmulator(target, `cold-${target.label}`, 5);
    const config = emu.config({ snapshot: "never" });
    afterAll(() => emu.cleanup());

    it("answers every contract health check with 200 after a cold boot", async () => {
      const result = await start(config);
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
      expect(await emu.agentExec(config, "/bin/cat", [], "piped through guest-exec")).toBe(
        "piped through guest-exec",
      );
      expect(await emu.agentExec(config, "/bin/cat", ["/host" + emu.share + "/hello.txt"])).toBe(
        "from the host\n",
      );
    });

    it("reads its runtime config from the STACKCFG disk the engine wrote", async () => {
      const env = await emu.agentExec(config, "/bin/cat", ["/mnt/stackcfg/runtime.env"]);
      expect(env).toContain(`STACK_EMULATOR_BACKEND_HOST_PORT=${config.ports.backend}`);
      expect(env).toContain("STACK_EMULATOR_PORT_PREFIX=81");
    });

    it("stops through the agent and leaves no process or socket behind", async () => {
      await emu.stop(config);
      const report = await status(config);
      expect(report.vm.running).toBe(false);
      expect(report.ok).toBe(false);
    });
  });
}
