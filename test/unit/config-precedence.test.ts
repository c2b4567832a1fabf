import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/engine/config/index.js";
import type { ConfigOverrides, LoadConfigOptions } from "../../src/engine/config/index.js";

const base: LoadConfigOptions = { env: {}, cwd: "/work/project", homeDir: "/home/dev", hostArch: "x64" };
const load = (env: Record<string, string>, overrides?: ConfigOverrides) =>
  loadConfig({ ...base, env, overrides });

describe("config precedence: overrides > environment > defaults", () => {
  it("lets an override beat the environment, and the environment beat the default", () => {
    const c = load({ EMULATOR_RAM: "8192", EMULATOR_CPUS: "2" }, { ramMiB: 2048 });
    expect([c.ramMiB, c.cpus, c.readyTimeoutSec]).toEqual([2048, 2, 240]);
  });

  it("merges one port override with the other ports from env and defaults", () => {
    const c = load({ EMULATOR_BACKEND_PORT: "36701" }, { ports: { dashboard: 36700 } });
    expect(c.ports).toEqual({
      dashboard: 36700,
      backend: 36701,
      minio: 26702,
      inbucket: 26703,
      mockOauth: 26704,
    });
  });

  it("ignores an invalid variable that an override shadows", () => {
    expect(load({ EMULATOR_RAM: "lots" }, { ramMiB: 4096 }).ramMiB).toBe(4096);
  });

  it("ignores NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX when PORT_PREFIX is set, even if invalid", () => {
    expect(load({ PORT_PREFIX: "71", NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX: "x" }).portPrefix).toBe(71);
    expect(() => load({ PORT_PREFIX: "x", NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX: "72" })).toThrow(
      /PORT_PREFIX="x"/,
    );
  });

  it("parses string overrides (action inputs) with the environment's strict rules", () => {
    const c = load({}, { ramMiB: "8192", forceCapture: "yes", ports: { backend: "36701" }, arch: "arm64" });
    expect([c.ramMiB, c.forceCapture, c.ports.backend, c.arch]).toEqual([8192, true, 36701, "arm64"]);
  });

  it("treats an undefined override as not set", () => {
    expect(load({ EMULATOR_RAM: "8192" }, { ramMiB: undefined }).ramMiB).toBe(8192);
  });

  it("derives snapshot RAM and CPUs from the winning RAM and CPUs", () => {
    const c = load({ EMULATOR_RAM: "8192" }, { ramMiB: 2048, cpus: 1 });
    expect([c.snapshotRamMiB, c.snapshotCpus]).toEqual([2048, 1]);
    expect(load({ EMULATOR_SNAPSHOT_RAM: "4096" }, { ramMiB: 2048 }).snapshotRamMiB).toBe(4096);
  });

  it("derives directories and image from an overridden home", () => {
    const c = load({ HEXCLAVE_EMULATOR_HOME: "/env/home" }, { home: "/flag/home" });
    expect([c.imageDir, c.runDir, c.image]).toEqual([
      "/flag/home/images",
      "/flag/home/run",
      "/flag/home/images/stack-emulator-amd64.qcow2",
    ]);
  });

  it("treats hostShare mode and path as one choice per source", () => {
    const env = { HEXCLAVE_EMULATOR_HOST_SHARE: "/srv/data", HEXCLAVE_EMULATOR_HOST_SHARE_READ_ONLY: "1" };
    expect(load(env, { hostShare: { mode: "cwd" } }).hostShare).toEqual({
      mode: "cwd",
      path: "/work/project",
      readOnly: true,
    });
    expect(load(env, { hostShare: { path: "other" } }).hostShare).toEqual({
      mode: "path",
      path: "/work/project/other",
      readOnly: true,
    });
    expect(load(env, { hostShare: { readOnly: false } }).hostShare).toEqual({
      mode: "path",
      path: "/srv/data",
      readOnly: false,
    });
  });

  it("lets an override turn snapshots back on over EMULATOR_NO_SNAPSHOT=1", () => {
    expect(load({ EMULATOR_NO_SNAPSHOT: "1" }, { snapshot: "auto" }).snapshot).toBe("auto");
  });
});
