/**
 * Issue 7's fault injection against real QEMU 10 and the test guest:
 * crashes, snapshot damage, misbehaving channels, a full disk, exposure.
 * The scenarios share one emulator home; each test first brings it to the
 * state it needs (the fixtures in helpers.ts), so any test can run alone.
 * Host ports 27500-27519.
 */
import { afterAll, describe, vi } from "vitest";
import type { RotatedSecrets } from "../../../src/engine/guest/rotation.js";
import type * as Rotation from "../../../src/engine/guest/rotation.js";
import type * as Launch from "../../../src/engine/lifecycle/launch.js";
import { testEmulator } from "../../support/emulator.js";
import { reliabilityFigures } from "../../support/reliability.js";
import { qemuTargets } from "../../support/tools.js";
import { crashScenario } from "./crash.scenario.js";
import { damageScenario } from "./damage.scenario.js";
import { diskFullScenario } from "./disk-full.scenario.js";
import { protocolScenario, type RaceHook } from "./protocol.scenario.js";
import { securityScenario } from "./security.scenario.js";

// Test seams, as module mocks (the engine has no hooks for these): the
// secrets each rotation generated, and a moment between the engine's port
// check and QEMU's bind.
const seams = vi.hoisted(() => ({ seen: { secrets: [] as RotatedSecrets[] }, race: {} as RaceHook }));
vi.mock("../../../src/engine/guest/rotation.js", async (importOriginal) => {
  const m = await importOriginal<typeof Rotation>();
  return {
    ...m,
    rotateSecrets: async (...args: Parameters<typeof m.rotateSecrets>) => {
      const s = await m.rotateSecrets(...args);
      seams.seen.secrets.push(s);
      return s;
    },
  };
});
vi.mock("../../../src/engine/lifecycle/launch.js", async (importOriginal) => {
  const m = await importOriginal<typeof Launch>();
  return {
    ...m,
    assertPortsFree: async (bind: string, ports: readonly number[]) => {
      await m.assertPortsFree(bind, ports);
      await seams.race.afterPortCheck?.(ports);
    },
  };
});

const PORT_BASE = 27500;

for (const target of qemuTargets().filter((t) => t.label === "qemu-10")) {
  describe(`reliability under faults on ${target.label}`, () => {
    const rel = reliabilityFigures(`faults-${target.label}`);
    const emu = testEmulator(target, "rel", 0, PORT_BASE);
    const second = testEmulator(target, "rel2", 1, PORT_BASE);
    afterAll(async () => {
      await emu.cleanup();
      await second.cleanup();
    });
    describe("crashes", () => crashScenario(emu, second, rel));
    describe("channels", () => protocolScenario(emu, target, seams.race, rel));
    describe("exposure", () => securityScenario(emu, seams.seen, rel));
    describe("a full disk", () => diskFullScenario(emu, rel));
    describe("snapshot damage", () => damageScenario(emu, rel));
  });
}
