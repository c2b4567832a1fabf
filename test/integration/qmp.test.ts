import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { QmpClosedError, QmpCommandError, QmpTimeoutError } from "../../src/engine/qemu/protocol-errors.js";
import { QmpClient } from "../../src/engine/qemu/qmp.js";
import { qemuTargets } from "../support/tools.js";

// Each test starts its own `-machine none` QEMU (tens of ms) and talks QMP to it.
describe.each(qemuTargets())("QmpClient against $label", (target) => {
  let dir: string;
  let qemu: ChildProcess;
  let exited: Promise<void>;
  let sock: string;
  const clients: QmpClient[] = [];
  const warnings: string[] = [];
  const expectedMajor = Number(/qemu-(\d+)/.exec(target.label)?.[1]);

  beforeEach(() => {
    dir = mkdtempSync("/tmp/hxqmp-");
    sock = join(dir, "qmp.sock");
    warnings.length = 0;
    qemu = spawn(
      target.binary,
      ["-machine", "none", "-accel", "tcg", "-display", "none", "-nodefaults"].concat([
        "-qmp",
        `unix:${sock},server=on,wait=off`,
      ]),
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    exited = new Promise((resolve) => qemu.once("exit", () => resolve()));
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    if (qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill("SIGKILL");
    }
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });

  async function connect(trace?: (dir: "send" | "recv", message: unknown) => void): Promise<QmpClient> {
    const client = await QmpClient.connect(sock, {
      timeoutMs: 10_000,
      onProtocolWarning: (m) => warnings.push(m),
      ...(trace ? { trace } : {}),
    });
    clients.push(client);
    return client;
  }

  it("reads the greeting and reports the QEMU version", async () => {
    const started = performance.now();
    const qmp = await connect();
    const connectMs = performance.now() - started;
    expect(qmp.state).toBe("ready");
    expect(qmp.greeting.version.qemu.major).toBe(expectedMajor);
    expect(qmp.greeting.version.package).toMatch(/Debian/);
    expect(await qmp.queryVersion()).toEqual(qmp.greeting.version);

    const rounds = 50;
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) await qmp.queryStatus();
    const perCall = (performance.now() - t0) / rounds;
    console.log(
      `${target.label}: connect+negotiate ${connectMs.toFixed(1)} ms, query-status ${perCall.toFixed(3)} ms`,
    );
  });

  it("answers query-status and the typed query helpers", async () => {
    const qmp = await connect();
    expect(await qmp.queryStatus()).toEqual({ status: "running", running: true });
    expect(await qmp.queryKvm()).toEqual({ enabled: false, present: expect.any(Boolean) });
    const machines = await qmp.queryMachines();
    expect(machines.map((m) => m.name)).toContain("none");
    expect(machines.some((m) => m.name.startsWith("pc-q35"))).toBe(true);
    expect((await qmp.queryMigrate()).status).toBeUndefined();
    const caps = await qmp.queryMigrateCapabilities();
    expect(caps).toContainEqual({ capability: "xbzrle", state: false });
  });

  it("keeps the class of a QMP error", async () => {
    const qmp = await connect();
    const missing = await qmp.execute("device_del", { id: "no-such-device" }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(QmpCommandError);
    expect(missing).toMatchObject({ errorClass: "DeviceNotFound", command: "device_del" });
    const unknown = await qmp.execute("no-such-command").catch((e: unknown) => e);
    expect(unknown).toMatchObject({ errorClass: "CommandNotFound", command: "no-such-command" });
    expect(qmp.state).toBe("ready");
    expect(await qmp.queryStatus()).toMatchObject({ running: true });
  });

  it("times out a call while QEMU is frozen, drops the late reply, and keeps working", async () => {
    const qmp = await connect();
    qemu.kill("SIGSTOP");
    const err = await qmp.execute("query-status", undefined, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpTimeoutError);
    expect((err as QmpTimeoutError).code).toBe("TIMEOUT");
    expect((err as QmpTimeoutError).message).toBe("QMP query-status did not finish within 200 ms");
    expect(warnings).toEqual([]);
    qemu.kill("SIGCONT");
    // The next call's reply comes after the late one on the same stream.
    expect(await qmp.queryStatus()).toMatchObject({ running: true });
    expect(warnings).toEqual([expect.stringMatching(/late reply to timed-out QMP query-status/)]);
    expect(qmp.state).toBe("ready");
  });

  it("rejects a pending call and event wait with QmpClosedError when QEMU dies", async () => {
    const qmp = await connect();
    qemu.kill("SIGSTOP");
    const call = qmp.execute("query-status", undefined, { timeoutMs: 30_000 });
    const wait = qmp.waitForEvent("STOP", undefined, { timeoutMs: 30_000 });
    qemu.kill("SIGKILL");
    await expect(call).rejects.toBeInstanceOf(QmpClosedError);
    await expect(wait).rejects.toBeInstanceOf(QmpClosedError);
    expect(qmp.state).toBe("closed");
    // A later call is refused at once, not after its deadline: it is settled before the next turn.
    const later = qmp.execute("query-status", undefined, { timeoutMs: 30_000 }).catch((e: unknown) => e);
    const nextTurn = new Promise((resolve) => setImmediate(() => resolve("still pending")));
    expect(await Promise.race([later, nextTurn])).toBeInstanceOf(QmpClosedError);
  });

  it("rejects calls after quit with QmpClosedError", async () => {
    const qmp = await connect();
    const closed = new Promise<QmpClosedError>((resolve) => qmp.onClose(resolve));
    const shutdown = qmp.waitForEvent("SHUTDOWN", undefined, { timeoutMs: 5000 });
    await qmp.execute("quit");
    expect((await shutdown).data).toMatchObject({ guest: false });
    expect((await closed).message).toMatch(/closed by QEMU/);
    await expect(qmp.execute("query-status")).rejects.toBeInstanceOf(QmpClosedError);
    await expect(qmp.waitForEvent("STOP")).rejects.toBeInstanceOf(QmpClosedError);
    await exited;
    expect(qemu.exitCode).toBe(0);
  });

  it("delivers an event that arrives before the reply of the command that caused it", async () => {
    const order: string[] = [];
    const qmp = await connect((direction, m) => {
      if (direction !== "recv") return;
      const msg = m as { event?: string; id?: string };
      if (msg.event) order.push(`event:${msg.event}`);
      else if (msg.id) order.push(`reply:${msg.id}`);
    });
    const seen: string[] = [];
    const handler = (e: { event: string }) => seen.push(e.event);
    qmp.on("STOP", handler);
    qmp.on("RESUME", handler);

    const stopped = qmp.waitForEvent("STOP", undefined, { timeoutMs: 5000 });
    await qmp.execute("stop");
    const stop = await stopped;
    expect(stop.event).toBe("STOP");
    expect(stop.timestamp.seconds).toBeGreaterThan(0);
    expect(await qmp.queryStatus()).toEqual({ status: "paused", running: false });

    const resumed = qmp.waitForEvent("RESUME", (e) => e.event === "RESUME", { timeoutMs: 5000 });
    qmp.off("RESUME", handler);
    await qmp.execute("cont");
    await resumed;

    // STOP and RESUME were on the wire before their commands' replies.
    const stopEvent = order.indexOf("event:STOP");
    expect(stopEvent).toBeGreaterThanOrEqual(0);
    expect(order[stopEvent + 1]).toMatch(/^reply:/);
    const resumeEvent = order.indexOf("event:RESUME");
    expect(order[resumeEvent + 1]).toMatch(/^reply:/);
    expect(seen).toEqual(["STOP"]);
  });
});
