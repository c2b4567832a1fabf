import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { agentConfig, readKeys, runAgent } from "../../src/controller/agent/agent.js";
import { generateKeys, SECRET_KEYS } from "../../src/controller/objects/secret.js";
import { checkSecrets } from "../../src/engine/guest/rotation.js";
import type { StartResult } from "../../src/engine/lifecycle/start.js";
import { FakeClock } from "../support/controller-clock.js";

const dir = mkdtempSync(join(tmpdir(), "hxe-agent-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const base = { HEXCLAVE_EMULATOR_HOME: join(dir, "home"), HEXCLAVE_EMULATOR_IMAGE: "/images/e.qcow2" };

describe("agent config", () => {
  it("shares nothing unless the Pod says which volume", () => {
    expect(agentConfig(base).hostShare.mode).toBe("none");
    expect(agentConfig({ ...base, HEXCLAVE_EMULATOR_HOST_SHARE: "/host-share" }).hostShare).toMatchObject({
      mode: "path",
      path: "/host-share",
    });
  });

  it("refuses to share the node's root or its working directory", () => {
    expect(() => agentConfig({ ...base, HEXCLAVE_EMULATOR_HOST_SHARE: "root" })).toThrow(
      /never shares the node/,
    );
    expect(() => agentConfig({ ...base, HEXCLAVE_EMULATOR_HOST_SHARE: "cwd" })).toThrow(
      /never shares the node/,
    );
  });
});

describe("the Secret's keys", () => {
  it("are read from one file per key, trailing newline tolerated", () => {
    const keys = generateKeys();
    const d = mkdtempSync(join(dir, "keys-"));
    for (const k of SECRET_KEYS) writeFileSync(join(d, k), `${keys[k]}\n`);
    expect(readKeys(d)).toEqual(keys);
  });

  it("must all be there and be 64 lowercase hex characters (the guest's contract)", () => {
    const d = mkdtempSync(join(dir, "keys-"));
    writeFileSync(join(d, "publishableClientKey"), "a".repeat(64));
    expect(() => readKeys(d)).toThrow(/has no secretServerKey/);
    expect(() => checkSecrets({ ...generateKeys(), cronSecret: "A".repeat(64) })).toThrow(
      /cronSecret is not 64 lowercase hex/,
    );
  });
});

describe("the agent's report", () => {
  it("goes starting → ready with the engine's result and the secrets it was handed", async () => {
    const keys = generateKeys();
    const d = mkdtempSync(join(dir, "keys-"));
    for (const k of SECRET_KEYS) writeFileSync(join(d, k), keys[k]);
    let handed: unknown;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const clock = new FakeClock();
    const agent = await runAgent(
      { ...base, HEXCLAVE_AGENT_PORT: "0", HEXCLAVE_AGENT_KEYS_DIR: d, HEXCLAVE_AGENT_EMULATOR: "ns/e" },
      {
        host: "127.0.0.1",
        log: () => undefined,
        clock,
        start: async (_config, _sink, options) => {
          handed = options.secrets;
          await gate;
          clock.advance(900);
          return {
            bootMode: "resume",
            captured: false,
            qemuVersion: "10.0.2",
            accelerator: "kvm",
            acceleratorReason: "",
            placeholderSecrets: false,
            urls: {} as StartResult["urls"],
            publishableKeyFile: "",
            timings: { resume: 250 },
            totalMs: 900,
            snapshotKey: "k",
            strategy: "template",
          };
        },
      },
    );
    const status = async () => (await fetch(`http://127.0.0.1:${agent.port}/status`)).json();
    expect(await status()).toMatchObject({ state: "starting", emulator: "ns/e" });
    release();
    expect(await agent.reached(["ready", "failed"])).toMatchObject({ state: "ready" });
    expect(handed).toEqual(keys);
    expect(await status()).toMatchObject({
      state: "ready",
      bootMode: "resume",
      rotatedToSecret: true,
      strategy: "template",
      startupSeconds: 0.9,
    });
    expect(JSON.stringify(await status())).not.toContain(keys.publishableClientKey);
    await agent.stop();
    expect(await agent.done).toBe(0);
  });

  it("says why it failed on /status for failLingerMs, then exits 1", async () => {
    const clock = new FakeClock();
    const agent = await runAgent(
      { ...base, HEXCLAVE_AGENT_PORT: "0" },
      {
        host: "127.0.0.1",
        log: () => undefined,
        clock,
        failLingerMs: 5_000,
        start: () => Promise.reject(new Error("no QEMU here")),
      },
    );
    expect(await agent.reached(["failed"])).toMatchObject({ error: { message: /no QEMU here/ } });
    let exited: number | undefined;
    void agent.done.then((code) => (exited = code));
    clock.advance(4_999);
    const status = await (await fetch(`http://127.0.0.1:${agent.port}/status`)).json();
    expect(status).toMatchObject({ state: "failed", error: { code: "AGENT_FAILED" } });
    expect(exited).toBeUndefined();
    clock.advance(1);
    expect(await agent.done).toBe(1);
  });
});
