import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/engine/errors.js";
import { loadConfig } from "../../src/engine/config/index.js";
import type { ConfigOverrides, LoadConfigOptions } from "../../src/engine/config/index.js";

const base: LoadConfigOptions = { env: {}, cwd: "/work/project", homeDir: "/home/dev", hostArch: "x64" };

function problems(o: Partial<LoadConfigOptions>): readonly string[] {
  try {
    loadConfig({ ...base, ...o });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}
const envProblems = (env: Record<string, string>) => problems({ env });
const overrideProblems = (overrides: unknown) => problems({ overrides: overrides as ConfigOverrides });

const ODD_NUMBERS = [
  " 4096 ",
  "0x10",
  "-1",
  "1e3",
  "NaN",
  "4096.0",
  "4_096",
  "０１２",
  "٤٠٩٦",
  "Infinity",
  "0040",
  "lots",
];

describe("config validation", () => {
  it("names the variable, its value, the field, the rule and a valid example", () => {
    expect(envProblems({ EMULATOR_RAM: "lots" })).toEqual([
      'EMULATOR_RAM="lots" (ramMiB): must be a whole number of MiB between 512 and 262144 (e.g. EMULATOR_RAM=4096)',
    ]);
  });

  it.each(ODD_NUMBERS)("rejects the number %j in every numeric variable", (raw) => {
    const vars = [
      "EMULATOR_RAM",
      "EMULATOR_CPUS",
      "PORT_PREFIX",
      "EMULATOR_BACKEND_PORT",
      "EMULATOR_READY_TIMEOUT",
    ];
    const found = envProblems(Object.fromEntries(vars.map((v) => [v, raw])));
    expect(found).toHaveLength(vars.length);
    vars.forEach((v, i) => expect(found[i]).toContain(`${v}=${JSON.stringify(raw)} (`));
  });

  it.each<[string, string, string]>([
    ["EMULATOR_RAM", "511", "between 512 and 262144"],
    ["EMULATOR_RAM", "262145", "between 512 and 262144"],
    ["EMULATOR_CPUS", "0", "virtual CPUs between 1 and 256"],
    ["EMULATOR_SNAPSHOT_CPUS", "257", "virtual CPUs between 1 and 256"],
    ["PORT_PREFIX", "9", "two-digit number between 10 and 99"],
    ["PORT_PREFIX", "100", "two-digit number between 10 and 99"],
    ["EMULATOR_DASHBOARD_PORT", "0", "TCP port number between 1 and 65535"],
    ["EMULATOR_MOCK_OAUTH_PORT", "65536", "TCP port number between 1 and 65535"],
    ["EMULATOR_READY_TIMEOUT", "0", "seconds between 1 and 3600"],
    ["EMULATOR_SNAPSHOT_READY_TIMEOUT", "99999999999999999", "seconds between 1 and 3600"],
    ["HEXCLAVE_EMULATOR_STOP_GRACE", "3601", "seconds between 0 and 3600"],
    ["EMULATOR_ARCH", "x86", "one of amd64, arm64"],
    ["HEXCLAVE_EMULATOR_STRATEGY", "fast", "one of auto, template, mapped-ram, stream"],
    ["HEXCLAVE_EMULATOR_SNAPSHOT", "sometimes", "one of auto, never, required"],
    ["HEXCLAVE_EMULATOR_BIND_ADDRESS", "localhost", "IPv4 or IPv6 address literal"],
    ["HEXCLAVE_EMULATOR_BIND_ADDRESS", "127.0.0.256", "IPv4 or IPv6 address literal"],
    ["HEXCLAVE_EMULATOR_BIND_ADDRESS", "[::1]", "IPv4 or IPv6 address literal"],
    ["HEXCLAVE_EMULATOR_HOST_SHARE", "path", "cwd, root (share /), none, or a directory path"],
    ["HEXCLAVE_EMULATOR_HOST_SHARE", "srv/data", "cwd, root (share /), none, or a directory path"],
    ["EMULATOR_RUN_DIR", " /srv/run", "path without leading/trailing blanks"],
    ["EMULATOR_IMAGE_DIR", "/srv/\nimages", "control characters"],
    ["QEMU_BINARY", "qemu ", "qemu-system binary"],
  ])("rejects %s=%j: %s", (name, raw, rule) => {
    const [line] = envProblems({ [name]: raw });
    expect(line).toContain(`${name}=${JSON.stringify(raw)} (`);
    expect(line).toContain(rule);
    expect(line).toMatch(new RegExp(`\\(e\\.g\\. ${name}=\\S+\\)$`));
  });

  it.each<[string, unknown, string]>([
    ["ramMiB", "", "whole number of MiB"],
    ["ramMiB", 4096.5, "whole number of MiB"],
    ["ramMiB", Number.NaN, "whole number of MiB"],
    ["ramMiB", true, "whole number of MiB"],
    ["cpus", Number.POSITIVE_INFINITY, "virtual CPUs"],
    ["cpus", -1, "virtual CPUs"],
    ["portPrefix", "8１", "two-digit number"],
    ["bindAddress", "", "IPv4 or IPv6"],
    ["bindAddress", 127, "IPv4 or IPv6"],
    ["image", "", "non-empty path"],
    ["rotation", "maybe", "1/0, true/false or yes/no"],
    ["forceCapture", 1, "1/0, true/false or yes/no"],
    ["snapshot", "always", "one of auto, never, required"],
    ["strategy", null, "one of auto, template"],
  ])("rejects the override %s=%j", (field, value, rule) => {
    const [line] = overrideProblems({ [field]: value });
    expect(line).toContain(`${field}=`);
    expect(line).toContain("from overrides");
    expect(line).toContain(rule);
    expect(line).toContain(`(e.g. ${field}=`);
  });

  it("reports every problem from every source in one error", () => {
    const found = problems({
      env: {
        EMULATOR_RAM: "lots",
        EMULATOR_CPUS: " 4 ",
        EMULATOR_NO_ROTATION: "perhaps",
        HEXCLAVE_EMULATOR_HOST_SHARE: "share",
      },
      overrides: { portPrefix: 5, bindAddress: "my-host", ports: { minio: 70000 } },
    });
    expect(found).toHaveLength(7);
    expect(found.join("\n")).toMatch(
      /EMULATOR_RAM="lots"[\s\S]*EMULATOR_CPUS=" 4 "[\s\S]*EMULATOR_NO_ROTATION="perhaps"/,
    );
    expect(found.join("\n")).toMatch(
      /HEXCLAVE_EMULATOR_HOST_SHARE="share"[\s\S]*portPrefix=5[\s\S]*bindAddress="my-host"/,
    );
    expect(found.join("\n")).toContain("ports.minio=70000 (from overrides)");
  });

  it("puts every problem in the error message, with a hint", () => {
    try {
      loadConfig({ ...base, env: { EMULATOR_RAM: "lots", EMULATOR_CPUS: "-1" } });
      expect.unreachable();
    } catch (err) {
      const e = err as ConfigError;
      expect(e.code).toBe("CONFIG_INVALID");
      expect(e.message).toContain('EMULATOR_RAM="lots"');
      expect(e.message).toContain('EMULATOR_CPUS="-1"');
      expect(e.hint).toBeTruthy();
    }
  });

  it("checks cross-field rules even when other fields are invalid", () => {
    const found = envProblems({ EMULATOR_RAM: "lots", EMULATOR_BACKEND_PORT: "26700" });
    expect(found).toHaveLength(2);
    expect(found[1]).toBe(
      'ports.backend: uses the same host port 26700 as ports.dashboard; give every service its own port (ports.dashboard is the default 26700; ports.backend from EMULATOR_BACKEND_PORT="26700")',
    );
  });

  it("rejects duplicate host ports, naming both sources", () => {
    const found = problems({
      env: { EMULATOR_MINIO_PORT: "30000" },
      overrides: { ports: { inbucket: 30000 } },
    });
    expect(found).toEqual([
      'ports.inbucket: uses the same host port 30000 as ports.minio; give every service its own port (ports.minio from EMULATOR_MINIO_PORT="30000"; ports.inbucket from overrides ports.inbucket=30000)',
    ]);
  });

  it("rejects a mock OAuth port that lands on another service's port inside the guest", () => {
    const [line] = envProblems({ EMULATOR_MOCK_OAUTH_PORT: "9090" });
    expect(line).toContain(
      "ports.mockOauth: gives mockOauth the guest port 9090, which minio already uses inside the guest",
    );
    expect(line).toContain('EMULATOR_MOCK_OAUTH_PORT="9090"');
  });

  it("rejects the port prefix 90, whose dashboard port is Inbucket's guest port 9001", () => {
    const [line] = envProblems({ PORT_PREFIX: "90" });
    expect(line).toMatch(/^portPrefix: gives dashboard the guest port 9001, which inbucket already uses/);
  });

  it("rejects unknown override keys and non-object groups", () => {
    expect(overrideProblems({ ram: 4096, ports: { web: 1 }, hostShare: "cwd" })).toEqual([
      "ram (from overrides): is not a setting of the emulator; check its spelling",
      "ports.web (from overrides): is not a setting of the emulator; check its spelling",
      'hostShare="cwd" (from overrides): must be an object of hostShare.<name> settings',
    ]);
  });

  it("requires a path for hostShare mode path and refuses one for cwd, root and none", () => {
    expect(overrideProblems({ hostShare: { mode: "path" } })[0]).toMatch(
      /^hostShare\.path: is required when hostShare\.mode is "path"/,
    );
    expect(overrideProblems({ hostShare: { mode: "cwd", path: "/x" } })[0]).toContain(
      'hostShare.path="/x" (from overrides): is only used when hostShare.mode is "path"',
    );
    expect(overrideProblems({ hostShare: { mode: "none", path: "/x" } })[0]).toMatch(
      /^hostShare\.path: is not used when hostShare\.mode is "none"/,
    );
  });

  it("names overrides the way the edge calls them", () => {
    const found = problems({
      overrides: { ramMiB: "lots" },
      overrideSource: "flags",
      overrideNames: { ramMiB: "--ram" },
    });
    expect(found).toEqual([
      '--ram="lots" (ramMiB, from flags): must be a whole number of MiB between 512 and 262144 (e.g. --ram=4096)',
    ]);
  });

  it("shortens a very long value in the message", () => {
    const [line] = envProblems({ EMULATOR_RAM: "9".repeat(500) });
    expect(line!.length).toBeLessThan(250);
  });
});
