import { describe, expect, it } from "vitest";
import { describeOverride, environmentOverrides, fieldsOf } from "../../src/action/env-overrides.js";
import { readActionInputs } from "../../src/action/inputs.js";
import { emulatorConfig, runnerDirs } from "../../src/action/runner.js";
import { resumeTimeoutFor } from "../../src/action/run-main.js";

const reader = (values: Record<string, string>) => (name: string) => values[name] ?? "";
const opts = (env: Record<string, string>) => ({ env, cwd: "/w", homeDir: "/home/r", hostArch: "x64" });

describe("the engine's environment variables under the Action", () => {
  it("lose to inputs, and each one set is reported as used or ignored", () => {
    const env = { PORT_PREFIX: "91", EMULATOR_RAM: "2048", EMULATOR_NO_ROTATION: "1", QEMU_BINARY: "/opt/q" };
    const inputs = readActionInputs(
      reader({ image: "./i.qcow2", "port-prefix": "71", rotation: "true" }),
      opts(env),
    );
    const found = environmentOverrides(env, fieldsOf(inputs.overrides as Record<string, unknown>));
    expect(found.map((o) => [o.name, o.used])).toEqual([
      ["EMULATOR_RAM", true],
      ["PORT_PREFIX", false],
      ["EMULATOR_NO_ROTATION", false],
      ["QEMU_BINARY", true],
    ]);
    expect(found.map(describeOverride)).toContain("EMULATOR_RAM=2048 (ramMiB)");
    expect(found.map(describeOverride)).toContain("PORT_PREFIX ignored (an input sets portPrefix)");
    const dirs = runnerDirs({ RUNNER_TEMP: "/t" }, "/home/r", "/w");
    const config = emulatorConfig(inputs, dirs, {}, env, "x64");
    expect(config.portPrefix).toBe(71);
    expect(config.rotation).toBe(true);
    expect(config.ramMiB).toBe(2048);
  });

  it("report nothing when none is set, and ignore empty values", () => {
    expect(environmentOverrides({ PORT_PREFIX: "", PATH: "/usr/bin" }, new Set())).toEqual([]);
  });
});

describe("the post-resume timeout", () => {
  it("is 45 s under KVM and HVF, and scales with TCG's slowness", () => {
    expect(resumeTimeoutFor("kvm")).toBe(45);
    expect(resumeTimeoutFor("hvf")).toBe(45);
    expect(resumeTimeoutFor("tcg")).toBe(180);
  });
});
