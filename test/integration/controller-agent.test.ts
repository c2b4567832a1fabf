/**
 * The agent on real QEMU with the test guest, configured exactly as the
 * controller's Pod configures it (the Pod builder's env, the Secret's keys as
 * files): it captures then resumes, rotates the guest to the given keys,
 * answers its readiness probe and /status, stops the VM cleanly, and reports
 * a failure through /status and the termination message.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runAgent, type RunningAgent } from "../../src/controller/agent/agent.js";
import type { AgentReport } from "../../src/controller/agent/contract.js";
import { agentEnv } from "../../src/controller/objects/pod.js";
import { generateKeys, SECRET_KEYS, type Keys } from "../../src/controller/objects/secret.js";
import { AgentOptions } from "../../src/controller/options.js";
import { parseSpec } from "../../src/controller/crd/types.js";
import { runPaths } from "../../src/engine/lifecycle/run-dir.js";
import { isAlive, readPidFile } from "../../src/engine/qemu/process.js";
import { stopVm } from "../../src/engine/lifecycle/stop.js";
import { qemuTargets, testGuestImage } from "../support/tools.js";
import { FakeClock } from "../support/controller-clock.js";

const target = qemuTargets().find((t) => t.label === "qemu-10") ?? qemuTargets()[0]!;
const PORT = 27820;
const AGENT_PORT = 27826;
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describe(`the agent on ${target.label}`, () => {
  const dir = mkdtempSync(join(tmpdir(), "hxe-agent-"));
  const agentOptions = AgentOptions.parse({
    port: AGENT_PORT,
    storeHostPath: join(dir, "store"),
    storeMountPath: join(dir, "store"),
    runMountPath: join(dir, "run"),
    keysMountPath: join(dir, "keys"),
    stopGraceSec: 20,
  });
  const parsed = parseSpec({
    image: testGuestImage(),
    resources: { memory: "512Mi", cpus: 1 },
    ports: { dashboard: PORT, backend: PORT + 1, minio: PORT + 2, inbucket: PORT + 3, mockOauth: PORT + 4 },
  });
  if (!parsed.ok) throw new Error(parsed.problems.join());
  const podEnv = Object.fromEntries(
    agentEnv({ name: "agent-test", namespace: "ns", uid: "u" }, parsed.spec, agentOptions).map((e) => [
      e.name,
      e.value!,
    ]),
  );
  const env = (extra: Record<string, string> = {}) => ({
    PATH: process.env.PATH,
    HOME: dir,
    ...podEnv,
    QEMU_BINARY: target.binary,
    EMULATOR_READY_TIMEOUT: "120",
    ...extra,
  });
  const mountKeys = (keys: Keys | Record<string, string>) => {
    rmSync(agentOptions.keysMountPath, { recursive: true, force: true });
    mkdirSync(agentOptions.keysMountPath, { recursive: true });
    for (const [k, v] of Object.entries(keys))
      writeFileSync(join(agentOptions.keysMountPath, k), v, { mode: 0o400 });
  };
  const lines: string[] = [];
  let agent: RunningAgent | undefined;
  const runDir = join(agentOptions.runMountPath, "run");
  /** Ends when the agent's state changes to one of `states`; `ms` is only the deadline for a failure. */
  const waitState = async (a: RunningAgent, states: AgentReport["state"][], ms: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`agent still ${a.report().state}:\n${lines.slice(-20).join("\n")}`)),
        ms,
      );
    });
    try {
      return await Promise.race([a.reached(states), deadline]);
    } finally {
      clearTimeout(timer);
    }
  };
  const fingerprint = async () =>
    (await (await fetch(`http://127.0.0.1:${PORT + 1}/internal/pck-fingerprint`)).text()).trim();

  afterAll(async () => {
    await agent?.stop();
    await stopVm(runPaths(runDir), 5).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it("is configured by the Pod's env alone, and never shares the node's filesystem", () => {
    expect(podEnv.HEXCLAVE_EMULATOR_HOST_SHARE).toBe("none");
    expect(podEnv.HEXCLAVE_AGENT_KEYS_DIR).toBe(agentOptions.keysMountPath);
  });

  let firstKeys: Keys;
  it("captures, resumes, rotates to the Secret's keys, and answers its probes", async () => {
    firstKeys = generateKeys();
    mountKeys(firstKeys);
    agent = await runAgent(env(), { host: "127.0.0.1", log: (l) => lines.push(l) });
    const status = await fetch(`http://127.0.0.1:${AGENT_PORT}/status`);
    expect(((await status.json()) as { state: string }).state).toBe("starting");
    expect((await fetch(`http://127.0.0.1:${AGENT_PORT}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${AGENT_PORT}/readyz`)).status).toBe(503);
    await waitState(agent, ["ready", "failed"], 200_000);
    const report = agent.report();
    expect(report).toMatchObject({
      state: "ready",
      bootMode: "resume",
      captured: true,
      rotatedToSecret: true,
      placeholderSecrets: false,
    });
    expect(report.startupSeconds).toBeGreaterThan(0);
    expect(report.timings?.rotation).toBeGreaterThan(0);
    expect((await fetch(`http://127.0.0.1:${AGENT_PORT}/readyz`)).status).toBe(200);
    // The guest runs the Secret's key, not one the engine made up.
    expect(await fingerprint()).toBe(sha256(firstKeys.publishableClientKey));
    expect(readFileSync(runPaths(runDir).internalPck, "utf8")).toBe(firstKeys.publishableClientKey);
    expect(JSON.stringify(report)).not.toContain(firstKeys.publishableClientKey);
    expect(lines.join("\n")).not.toMatch(new RegExp(SECRET_KEYS.map((k) => firstKeys[k]).join("|")));
  });

  it("stops the VM cleanly on stop (SIGTERM) and exits 0", async () => {
    const pid = readPidFile(runPaths(runDir).pidFile)!;
    expect(isAlive(pid)).toBe(true);
    await agent!.stop();
    expect(await agent!.done).toBe(0);
    expect(isAlive(pid)).toBe(false);
    expect(lines.join("\n")).toMatch(/VM stopped \(via (agent|acpi)\)/);
    agent = undefined;
  });

  it("resumes from the node store next time, with the next Secret's keys", async () => {
    const keys = generateKeys();
    mountKeys(keys);
    agent = await runAgent(env(), { host: "127.0.0.1", log: (l) => lines.push(l) });
    await waitState(agent, ["ready", "failed"], 120_000);
    expect(agent.report()).toMatchObject({
      state: "ready",
      bootMode: "resume",
      captured: false,
      rotatedToSecret: true,
    });
    expect(await fingerprint()).toBe(sha256(keys.publishableClientKey));
    await agent.stop();
    expect(await agent.done).toBe(0);
    agent = undefined;
  });

  it("reports a failure on /status and in the termination message, then exits 1", async () => {
    mountKeys({ ...firstKeys, cronSecret: "not-hex" });
    const termLog = join(dir, "termination-log");
    // The linger runs on a clock the test moves: /status is read while it surely still answers.
    const clock = new FakeClock();
    agent = await runAgent(env({ HEXCLAVE_AGENT_TERMINATION_LOG: termLog }), {
      host: "127.0.0.1",
      log: (l) => lines.push(l),
      failLingerMs: 10_000,
      clock,
    });
    await waitState(agent, ["failed"], 30_000);
    const report = (await (await fetch(`http://127.0.0.1:${AGENT_PORT}/status`)).json()) as {
      state: string;
      error: { code: string };
    };
    expect(report).toMatchObject({ state: "failed", error: { code: "SECRETS_INVALID" } });
    clock.advance(10_000);
    expect(await agent.done).toBe(1);
    expect(existsSync(termLog) && readFileSync(termLog, "utf8")).toMatch(
      /^SECRETS_INVALID: the given cronSecret is not 64 lowercase hex/,
    );
    agent = undefined;
  });
});
