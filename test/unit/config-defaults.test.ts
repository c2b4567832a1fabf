import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/engine/config/index.js";
import type { LoadConfigOptions } from "../../src/engine/config/index.js";

const base: LoadConfigOptions = { env: {}, cwd: "/work/project", homeDir: "/home/dev", hostArch: "x64" };
const load = (o: Partial<LoadConfigOptions> = {}) => loadConfig({ ...base, ...o });

describe("config defaults", () => {
  it("fills every field from the defaults when nothing is set", () => {
    expect(load()).toEqual({
      home: "/home/dev/.hexclave/emulator",
      image: "/home/dev/.hexclave/emulator/images/stack-emulator-amd64.qcow2",
      imageDir: "/home/dev/.hexclave/emulator/images",
      runDir: "/home/dev/.hexclave/emulator/run",
      snapshotDir: "/home/dev/.hexclave/emulator/snapshots",
      storeBudget: "50%",
      arch: "amd64",
      ramMiB: 4096,
      cpus: 4,
      snapshotRamMiB: 4096,
      snapshotCpus: 4,
      portPrefix: 81,
      ports: { dashboard: 26700, backend: 26701, minio: 26702, inbucket: 26703, mockOauth: 26704 },
      bindAddress: "127.0.0.1",
      readyTimeoutSec: 240,
      snapshotReadyTimeoutSec: 45,
      snapshot: "auto",
      forceCapture: false,
      rotation: true,
      hostShare: { mode: "cwd", path: "/work/project", readOnly: false },
      stopGraceSec: 30,
      strategy: "auto",
    });
  });

  it("leaves qemuBinary and baseEnvFile unset by default (empty base.env)", () => {
    const c = load();
    expect(c.qemuBinary).toBeUndefined();
    expect(c.baseEnvFile).toBeUndefined();
  });

  it.each([
    ["x64", "amd64"],
    ["x86_64", "amd64"],
    ["amd64", "amd64"],
    ["arm64", "arm64"],
    ["aarch64", "arm64"],
  ])("takes the guest arch from the host arch %s → %s", (hostArch, arch) => {
    expect(load({ hostArch }).arch).toBe(arch);
  });

  it("names the default image after the arch", () => {
    expect(load({ hostArch: "arm64" }).image).toBe(
      "/home/dev/.hexclave/emulator/images/stack-emulator-arm64.qcow2",
    );
    expect(load({ env: { EMULATOR_ARCH: "arm64" } }).image).toMatch(/stack-emulator-arm64\.qcow2$/);
    expect(load({ overrides: { arch: "amd64" }, hostArch: "arm64" }).image).toMatch(
      /stack-emulator-amd64\.qcow2$/,
    );
  });

  it("puts the default image in the configured image dir", () => {
    expect(load({ env: { EMULATOR_IMAGE_DIR: "/srv/images" } }).image).toBe(
      "/srv/images/stack-emulator-amd64.qcow2",
    );
  });

  it("moves every state directory with HEXCLAVE_EMULATOR_HOME", () => {
    const c = load({ env: { HEXCLAVE_EMULATOR_HOME: "/var/lib/hx" } });
    expect([c.home, c.imageDir, c.runDir, c.snapshotDir, c.image]).toEqual([
      "/var/lib/hx",
      "/var/lib/hx/images",
      "/var/lib/hx/run",
      "/var/lib/hx/snapshots",
      "/var/lib/hx/images/stack-emulator-amd64.qcow2",
    ]);
  });

  it("pins the snapshot layout to the configured RAM and CPUs unless told otherwise", () => {
    const c = load({ env: { EMULATOR_RAM: "8192", EMULATOR_CPUS: "2" } });
    expect([c.snapshotRamMiB, c.snapshotCpus]).toEqual([8192, 2]);
  });

  it("rejects a host with no emulator image and says how to pick an arch", () => {
    expect(() => load({ hostArch: "s390x" })).toThrow(
      /arch="s390x" \(default: the host's architecture\): must be one of amd64, arm64 \(set EMULATOR_ARCH, e\.g\. EMULATOR_ARCH=amd64\)/,
    );
    expect(load({ hostArch: "s390x", env: { EMULATOR_ARCH: "arm64" } }).arch).toBe("arm64");
  });

  it("does not read process.env", () => {
    process.env.EMULATOR_RAM = "8192";
    try {
      expect(load().ramMiB).toBe(4096);
    } finally {
      delete process.env.EMULATOR_RAM;
    }
  });
});
