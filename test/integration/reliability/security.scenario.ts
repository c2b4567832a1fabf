/**
 * What a running emulator exposes: no secret in any output, log, file or
 * error message (with debug tracing on), 0600 files and a 0700 run dir,
 * ports on 127.0.0.1 only, exactly the configured host share, and a loud
 * flag on an instance that keeps the placeholder secrets.
 */
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it, vi } from "vitest";
import { ENV_VARS, type EmulatorConfig, type FieldPath } from "../../../src/engine/config/index.js";
import { main } from "../../../src/engine/cli/main.js";
import { start } from "../../../src/engine/lifecycle/start.js";
import { status } from "../../../src/engine/lifecycle/status.js";
import { runPaths } from "../../../src/engine/lifecycle/run-dir.js";
import { PLACEHOLDER_PCK, rotationInput, type RotatedSecrets } from "../../../src/engine/guest/rotation.js";
import { readPck, type TestEmulator } from "../../support/emulator.js";
import type { reliabilityFigures } from "../../support/reliability.js";
import { ensureRunning, filesUnder, listeningAddresses } from "./helpers.js";

type Figures = ReturnType<typeof reliabilityFigures>;

/** The environment that makes the CLI load exactly `config` (built from the ENV_VARS table). */
export function envFor(config: EmulatorConfig): Record<string, string> {
  const env: Record<string, string> = {};
  const get = (f: FieldPath): unknown =>
    f.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], config);
  for (const v of ENV_VARS) {
    if (v.fields.length !== 1) continue;
    const field = v.fields[0]!;
    const value = get(field);
    if (typeof value !== "string" && typeof value !== "number") continue;
    // Only variables that set this field to this very value (not flags like EMULATOR_NO_SNAPSHOT).
    const parsed = v.parse(String(value));
    if (Array.isArray(parsed) && parsed.length === 1 && parsed[0]![0] === field && parsed[0]![1] === value)
      env[v.name] = String(value);
  }
  if (config.hostShare.path) env.HEXCLAVE_EMULATOR_HOST_SHARE = config.hostShare.path;
  if (!config.rotation) env.EMULATOR_NO_ROTATION = "1";
  return env;
}

/** Runs the CLI in this process, returning everything it printed. */
async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const take = (...a: unknown[]) => void lines.push(a.map(String).join(" "));
  const log = vi.spyOn(console, "log").mockImplementation(take);
  const err = vi.spyOn(console, "error").mockImplementation(take);
  try {
    const code = await main(args, env);
    return { code, out: lines.join("\n") };
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
}

/** The secrets the guest was rotated to, read from its own key file (test-guest observability). */
async function liveSecrets(emu: TestEmulator, config: EmulatorConfig): Promise<RotatedSecrets> {
  const text = await emu.agentExec(config, "/bin/cat", ["/data/stack/keys.env"]);
  const v = Object.fromEntries(
    text
      .trim()
      .split("\n")
      .map((l) => l.split("=", 2) as [string, string]),
  );
  return {
    publishableClientKey: v.STACK_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY!,
    secretServerKey: v.STACK_INTERNAL_PROJECT_SECRET_SERVER_KEY!,
    superSecretAdminKey: v.STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY!,
    cronSecret: v.CRON_SECRET!,
  };
}

export function securityScenario(emu: TestEmulator, rel: Figures): void {
  const config = emu.config();
  const paths = runPaths(config.runDir);

  it("leaks no rotated secret into output, debug traces, logs, files or error messages", async () => {
    await rel.fault("secret hunt over a debug-traced start", async () => {
      const env = { ...envFor(config), HEXCLAVE_EMULATOR_DEBUG: "1" };
      await emu.stop(config);
      const started = await cli(["start"], env);
      expect(started.code, started.out.slice(-3000)).toBe(0);
      const secrets = await liveSecrets(emu, config);
      for (const v of Object.values(secrets)) expect(v).toMatch(/^[0-9a-f]{64}$/);
      expect(readPck(config)).toBe(secrets.publishableClientKey);
      // The trace is there, with the rotation's stdin redacted.
      expect(started.out).toContain("[debug] QMP -> ");
      expect(started.out).toContain("[debug] guest agent -> ");
      expect(started.out).toContain('"input-data":"<redacted>"');
      const again = await cli(["start"], env); // an error message, with its causes
      expect(again.code).toBe(1);
      const st = await cli(["status", "--json"], env);
      const output = [started.out, again.out, st.out].join("\n");

      const needles = [...Object.values(secrets), Buffer.from(rotationInput(secrets)).toString("base64")];
      expect(needles.filter((n) => output.includes(n))).toEqual([]);
      // Files: the live key file and the guest's own disk hold secrets by design; nothing else may.
      const holders: string[] = [];
      for (const f of filesUnder(emu.home)) {
        const data = readFileSync(f);
        if (needles.some((n) => data.includes(n))) holders.push(f);
      }
      for (const f of holders) expect([paths.internalPck, paths.session]).toContain(f);
      expect(holders).toContain(paths.internalPck);
      for (const f of [...holders, paths.internalPck, paths.session, paths.state, paths.pidFile])
        expect([f, statSync(f).mode & 0o777]).toEqual([f, 0o600]);
      expect(statSync(config.runDir).mode & 0o777).toBe(0o700);
      return `${needles.length} values searched in ${filesUnder(emu.home).length} files and ${output.length} characters of output; held only by ${holders.map((h) => h.slice(config.runDir.length + 1)).join(", ")}`;
    });
  });

  it("forwards every port on 127.0.0.1 only", async () => {
    await ensureRunning(emu, config);
    for (const port of Object.values(config.ports))
      expect([port, listeningAddresses(port)]).toEqual([port, ["127.0.0.1"]]);
  });

  it("shares exactly the configured directory with the guest", async () => {
    await ensureRunning(emu, config);
    writeFileSync(join(emu.home, "outside.txt"), "not for the guest\n");
    expect(await emu.agentExec(config, "/bin/cat", [`/host${emu.share}/hello.txt`])).toBe("from the host\n");
    await expect(emu.agentExec(config, "/bin/cat", [`/host${emu.home}/outside.txt`])).rejects.toThrow(
      /exited 1/,
    );
    await expect(emu.agentExec(config, "/bin/cat", [`/host${emu.share}/../outside.txt`])).rejects.toThrow(
      /exited 1/,
    );
    const mounts = (await emu.agentExec(config, "/bin/cat", ["/proc/mounts"]))
      .split("\n")
      .filter((l) => / 9p /.test(l));
    expect(mounts.map((l) => l.split(" ")[1])).toEqual([`/host${emu.share}`]);
  });

  it("flags a placeholder-secret instance in the result and in status", async () => {
    await emu.stop(config);
    const placeholder = emu.config({ rotation: false });
    const r = await start(placeholder);
    expect(r.placeholderSecrets).toBe(true);
    expect(readPck(placeholder)).toBe(PLACEHOLDER_PCK);
    const s = await status(placeholder);
    expect(s.state?.placeholderSecrets).toBe(true);
    expect(s.human).toContain("WARNING: placeholder secrets are live");
    const shown = await cli(["status"], envFor(placeholder));
    expect(shown.out).toContain("WARNING: placeholder secrets are live");
    await emu.stop(placeholder);
    const rotated = await start(config);
    expect(rotated.placeholderSecrets).toBe(false);
    expect((await status(config)).human).not.toContain("WARNING");
    await emu.stop(config);
  });
}
