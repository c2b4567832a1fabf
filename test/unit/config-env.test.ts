import { describe, expect, it } from "vitest";
import { ENV_VARS, loadConfig } from "../../src/engine/config/index.js";
import type { EmulatorConfig, LoadConfigOptions } from "../../src/engine/config/index.js";

const base: LoadConfigOptions = { env: {}, cwd: "/work/project", homeDir: "/home/dev", hostArch: "x64" };
const withEnv = (env: Record<string, string>) => loadConfig({ ...base, env });

describe("config from the seed's environment variables", () => {
  it.each<[string, string, (c: EmulatorConfig) => unknown, unknown]>([
    ["EMULATOR_IMAGE_DIR", "/srv/images", (c) => c.imageDir, "/srv/images"],
    ["EMULATOR_RUN_DIR", "/srv/run", (c) => c.runDir, "/srv/run"],
    ["EMULATOR_RAM", "8192", (c) => c.ramMiB, 8192],
    ["EMULATOR_CPUS", "2", (c) => c.cpus, 2],
    ["PORT_PREFIX", "71", (c) => c.portPrefix, 71],
    ["NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX", "72", (c) => c.portPrefix, 72],
    ["EMULATOR_READY_TIMEOUT", "600", (c) => c.readyTimeoutSec, 600],
    ["EMULATOR_SNAPSHOT_READY_TIMEOUT", "90", (c) => c.snapshotReadyTimeoutSec, 90],
    ["EMULATOR_NO_SNAPSHOT", "1", (c) => c.snapshot, "never"],
    ["EMULATOR_NO_ROTATION", "1", (c) => c.rotation, false],
    ["EMULATOR_FORCE_CAPTURE", "1", (c) => c.forceCapture, true],
    ["EMULATOR_DASHBOARD_PORT", "36700", (c) => c.ports.dashboard, 36700],
    ["EMULATOR_BACKEND_PORT", "36701", (c) => c.ports.backend, 36701],
    ["EMULATOR_MINIO_PORT", "36702", (c) => c.ports.minio, 36702],
    ["EMULATOR_INBUCKET_PORT", "36703", (c) => c.ports.inbucket, 36703],
    ["EMULATOR_MOCK_OAUTH_PORT", "36704", (c) => c.ports.mockOauth, 36704],
    ["EMULATOR_ARCH", "arm64", (c) => c.arch, "arm64"],
    ["EMULATOR_SNAPSHOT_RAM", "2048", (c) => c.snapshotRamMiB, 2048],
    ["EMULATOR_SNAPSHOT_CPUS", "8", (c) => c.snapshotCpus, 8],
  ])("%s=%s sets its field", (name, value, pick, expected) => {
    expect(pick(withEnv({ [name]: value }))).toEqual(expected);
  });

  it.each<[string, string, (c: EmulatorConfig) => unknown, unknown]>([
    ["HEXCLAVE_EMULATOR_HOME", "/opt/hx", (c) => c.home, "/opt/hx"],
    ["HEXCLAVE_EMULATOR_IMAGE", "/img/custom.qcow2", (c) => c.image, "/img/custom.qcow2"],
    ["HEXCLAVE_EMULATOR_SNAPSHOT_DIR", "/snaps", (c) => c.snapshotDir, "/snaps"],
    ["HEXCLAVE_EMULATOR_BIND_ADDRESS", "::1", (c) => c.bindAddress, "::1"],
    ["HEXCLAVE_EMULATOR_SNAPSHOT", "required", (c) => c.snapshot, "required"],
    ["HEXCLAVE_EMULATOR_STRATEGY", "mapped-ram", (c) => c.strategy, "mapped-ram"],
    ["HEXCLAVE_EMULATOR_STOP_GRACE", "60", (c) => c.stopGraceSec, 60],
    ["HEXCLAVE_EMULATOR_HOST_SHARE", "none", (c) => c.hostShare, { mode: "none", readOnly: false }],
    [
      "HEXCLAVE_EMULATOR_HOST_SHARE",
      "root",
      (c) => c.hostShare,
      { mode: "root", path: "/", readOnly: false },
    ],
    [
      "HEXCLAVE_EMULATOR_HOST_SHARE",
      "/srv/data",
      (c) => c.hostShare,
      { mode: "path", path: "/srv/data", readOnly: false },
    ],
    ["HEXCLAVE_EMULATOR_HOST_SHARE", "./sub", (c) => c.hostShare.path, "/work/project/sub"],
    ["HEXCLAVE_EMULATOR_HOST_SHARE_READ_ONLY", "yes", (c) => c.hostShare.readOnly, true],
    [
      "QEMU_BINARY",
      "/opt/qemu/bin/qemu-system-x86_64",
      (c) => c.qemuBinary,
      "/opt/qemu/bin/qemu-system-x86_64",
    ],
    ["QEMU_BINARY", "qemu-system-aarch64", (c) => c.qemuBinary, "qemu-system-aarch64"],
    [
      "HEXCLAVE_EMULATOR_BASE_ENV_FILE",
      ".env.development",
      (c) => c.baseEnvFile,
      "/work/project/.env.development",
    ],
  ])("the engine's own %s=%s sets its field", (name, value, pick, expected) => {
    expect(pick(withEnv({ [name]: value }))).toEqual(expected);
  });

  it("has one table row per variable, each with an example that is itself valid", () => {
    const names = ENV_VARS.map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
    for (const v of ENV_VARS) {
      expect(() => withEnv({ [v.name]: v.example }), v.name).not.toThrow();
    }
  });

  it("lets PORT_PREFIX win over NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX", () => {
    expect(withEnv({ PORT_PREFIX: "71", NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX: "72" }).portPrefix).toBe(71);
  });

  it("treats an empty variable as unset, as ${VAR:-default} did", () => {
    const c = withEnv({
      EMULATOR_RAM: "",
      PORT_PREFIX: "",
      NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX: "73",
      EMULATOR_NO_ROTATION: "",
    });
    expect([c.ramMiB, c.portPrefix, c.rotation]).toEqual([4096, 73, true]);
  });

  it.each([
    ["1", true],
    ["0", false],
    ["true", true],
    ["FALSE", false],
    ["Yes", true],
    ["no", false],
  ])("reads the boolean %s as %s", (raw, value) => {
    expect(withEnv({ EMULATOR_FORCE_CAPTURE: raw }).forceCapture).toBe(value);
    expect(withEnv({ EMULATOR_NO_ROTATION: raw }).rotation).toBe(!value);
  });

  it.each(["2", "on", "off", "y", " 1", "true ", "ｙｅｓ"])(
    "rejects the boolean %j, listing the accepted spellings",
    (raw) => {
      expect(() => withEnv({ EMULATOR_FORCE_CAPTURE: raw })).toThrow(
        `EMULATOR_FORCE_CAPTURE=${JSON.stringify(raw)} (forceCapture): must be a boolean: 1/0, true/false or yes/no (e.g. EMULATOR_FORCE_CAPTURE=1)`,
      );
    },
  );

  it("EMULATOR_NO_SNAPSHOT=0 leaves the snapshot mode to HEXCLAVE_EMULATOR_SNAPSHOT or the default", () => {
    expect(withEnv({ EMULATOR_NO_SNAPSHOT: "0" }).snapshot).toBe("auto");
    expect(withEnv({ EMULATOR_NO_SNAPSHOT: "0", HEXCLAVE_EMULATOR_SNAPSHOT: "required" }).snapshot).toBe(
      "required",
    );
    expect(withEnv({ EMULATOR_NO_SNAPSHOT: "1", HEXCLAVE_EMULATOR_SNAPSHOT: "required" }).snapshot).toBe(
      "never",
    );
  });

  it("resolves relative paths against cwd and ~ against the home directory", () => {
    const c = withEnv({
      EMULATOR_RUN_DIR: "tmp/run",
      EMULATOR_IMAGE_DIR: "~/images",
      HEXCLAVE_EMULATOR_HOME: "~",
    });
    expect([c.runDir, c.imageDir, c.home]).toEqual([
      "/work/project/tmp/run",
      "/home/dev/images",
      "/home/dev",
    ]);
  });

  it("accepts enum values in any case", () => {
    expect(withEnv({ EMULATOR_ARCH: "ARM64", HEXCLAVE_EMULATOR_STRATEGY: "Template" })).toMatchObject({
      arch: "arm64",
      strategy: "template",
    });
  });
});
