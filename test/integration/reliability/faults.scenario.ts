/**
 * Fault injection against real QEMU and the test guest (one file per QEMU
 * version: faults.qemu72.test.ts and faults.qemu10.test.ts run this):
 * crashes, snapshot damage, misbehaving channels, a full disk, exposure.
 * The scenarios share one emulator home; each test first brings it to the
 * state it needs (the fixtures in helpers.ts), so any test can run alone.
 * Host ports: 20 from `portBase` (27500 for QEMU 10, 27560 for 7.2).
 */
import { afterAll, describe } from "vitest";
import { testEmulator } from "../../support/emulator.js";
import { reliabilityFigures } from "../../support/reliability.js";
import type { QemuTarget } from "../../support/tools.js";
import { crashScenario } from "./crash.scenario.js";
import { damageScenario } from "./damage.scenario.js";
import { diskFullScenario } from "./disk-full.scenario.js";
import { protocolScenario } from "./protocol.scenario.js";
import { securityScenario } from "./security.scenario.js";

export function faultsSuite(target: QemuTarget, portBase: number): void {
  describe(`reliability under faults on ${target.label}`, () => {
    const rel = reliabilityFigures(`faults-${target.label}`);
    const emu = testEmulator(target, "rel", 0, portBase);
    const second = testEmulator(target, "rel2", 1, portBase);
    afterAll(async () => {
      await emu.cleanup();
      await second.cleanup();
    });
    describe("crashes", () => crashScenario(emu, second, rel));
    describe("channels", () => protocolScenario(emu, target, rel));
    describe("exposure", () => securityScenario(emu, rel));
    describe("a full disk", () => diskFullScenario(emu, rel));
    describe("snapshot damage", () => damageScenario(emu, rel));
  });
}
