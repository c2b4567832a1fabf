import { describe, expect, it } from "vitest";
import { loadConfig, runtimeEnv, servicePorts } from "../../src/engine/config/index.js";
import { ConfigError } from "../../src/engine/errors.js";

const config = (env: Record<string, string> = {}) =>
  loadConfig({ env, cwd: "/work/project", homeDir: "/home/dev", hostArch: "x64" });

describe("service ports and runtime.env", () => {
  it("pairs each default host port with the contract's guest port", () => {
    expect(servicePorts(config())).toEqual({
      dashboard: { host: 26700, guest: 8101 },
      backend: { host: 26701, guest: 8102 },
      minio: { host: 26702, guest: 9090 },
      inbucket: { host: 26703, guest: 9001 },
      mockOauth: { host: 26704, guest: 26704 },
    });
  });

  it("moves the app's guest ports with the prefix and mock OAuth's with its host port", () => {
    const p = servicePorts(config({ PORT_PREFIX: "65", EMULATOR_MOCK_OAUTH_PORT: "40000" }));
    expect([p.dashboard.guest, p.backend.guest, p.mockOauth.guest, p.minio.guest]).toEqual([
      6501, 6502, 40000, 9090,
    ]);
  });

  it("writes the contract's runtime.env keys", () => {
    const env = runtimeEnv(
      config({ PORT_PREFIX: "71", EMULATOR_BACKEND_PORT: "36701" }),
      "/work/project/.run",
    );
    expect(env).toEqual({
      STACK_EMULATOR_PORT_PREFIX: "71",
      STACK_EMULATOR_DASHBOARD_HOST_PORT: "26700",
      STACK_EMULATOR_BACKEND_HOST_PORT: "36701",
      STACK_EMULATOR_MINIO_HOST_PORT: "26702",
      STACK_EMULATOR_INBUCKET_HOST_PORT: "26703",
      STACK_EMULATOR_MOCK_OAUTH_HOST_PORT: "26704",
      STACK_EMULATOR_VM_DIR_HOST: "/work/project/.run",
    });
  });

  it("leaves STACK_EMULATOR_VM_DIR_HOST empty when nothing is shared", () => {
    expect(runtimeEnv(config(), "").STACK_EMULATOR_VM_DIR_HOST).toBe("");
  });

  it("refuses a VM dir that would break the env file", () => {
    expect(() => runtimeEnv(config(), "/a\nEVIL=1")).toThrow(ConfigError);
  });
});
