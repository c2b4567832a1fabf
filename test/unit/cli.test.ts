import { afterEach, describe, expect, it, vi } from "vitest";
import { main } from "../../src/engine/cli/main.js";

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, "log").mockImplementation((s: string) => void out.push(String(s)));
  vi.spyOn(console, "error").mockImplementation((s: string) => void err.push(String(s)));
  return { out, err };
}

describe("the hexclave-emulator command", () => {
  afterEach(() => vi.restoreAllMocks());

  it("lists every verb", async () => {
    const { out } = capture();
    expect(await main(["--help"], {})).toBe(0);
    for (const verb of ["start", "stop", "status", "capture", "reset", "bench", "pull"]) {
      expect(out.join("\n")).toContain(`  ${verb}`);
    }
  });

  it("has --help for every verb", async () => {
    for (const verb of ["start", "stop", "status", "capture", "reset", "bench", "pull"]) {
      const { out } = capture();
      expect(await main([verb, "--help"], {})).toBe(0);
      expect(out.join("\n")).toContain(`usage: hexclave-emulator ${verb}`);
      vi.restoreAllMocks();
    }
  });

  it("refuses an unknown verb and an unknown flag with usage", async () => {
    const { err } = capture();
    expect(await main(["launch"], {})).toBe(2);
    expect(await main(["start", "--turbo"], {})).toBe(2);
    expect(err.join("\n")).toMatch(/unknown verb "launch"[\s\S]*turbo/);
  });

  it("reports every bad flag and env value in one error, as JSON with --json", async () => {
    const { out } = capture();
    const code = await main(["status", "--json", "--run-dir", "/tmp/x", "--bind", "not-an-ip"], {
      EMULATOR_RAM: "lots",
    });
    expect(code).toBe(1);
    const parsed = JSON.parse(out.join("\n")) as { error: { code: string; message: string } };
    expect(parsed.error.code).toBe("CONFIG_INVALID");
    expect(parsed.error.message).toContain("EMULATOR_RAM");
    expect(parsed.error.message).toContain("--bind");
  });
});
