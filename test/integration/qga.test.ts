import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GuestAgentCommandError, GuestAgentTimeoutError } from "../../src/engine/qemu/protocol-errors.js";
import { GuestAgent } from "../../src/engine/qemu/qga.js";
import { qemuTargets, testGuestImage } from "../support/tools.js";

// One boot of the test guest per QEMU version for the whole file; the tests
// run in order and the last one powers the guest off through the agent.
describe.each(qemuTargets())("GuestAgent against $label", (target) => {
  let dir: string;
  let qemu: ChildProcess;
  let exited: Promise<void>;
  let qgaSock: string;
  let agent: GuestAgent;
  const warnings: string[] = [];

  function connect(): Promise<GuestAgent> {
    return GuestAgent.connect(qgaSock, {
      timeoutMs: 10_000,
      defaultTimeoutMs: 20_000,
      onProtocolWarning: (m) => warnings.push(m),
    });
  }

  beforeAll(async () => {
    dir = mkdtempSync("/tmp/hxqga-");
    qgaSock = join(dir, "qga.sock");
    const overlay = join(dir, "overlay.qcow2");
    execFileSync(target.img, ["create", "-q", "-f", "qcow2", "-b", testGuestImage(), "-F", "qcow2", overlay]);
    const started = performance.now();
    qemu = spawn(
      target.binary,
      [
        ...["-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "256", "-smp", "1"],
        ...["-display", "none", "-nodefaults", "-serial", `file:${join(dir, "serial.log")}`],
        ...["-drive", `file=${overlay},if=virtio,format=qcow2`],
        ...["-chardev", `socket,path=${qgaSock},server=on,wait=off,id=qga0`],
        ...["-device", "virtio-serial", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"],
        ...["-qmp", `unix:${join(dir, "qmp.sock")},server=on,wait=off`],
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    exited = new Promise((resolve) => qemu.once("exit", () => resolve()));
    agent = await connect();
    await agent.waitUntilReady({ timeoutMs: 90_000 });
    const after = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `${target.label}: guest agent answered ${after} s after launch (${warnings.length} warnings)`,
    );
  });

  afterAll(async () => {
    agent?.close();
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) qemu.kill("SIGKILL");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers guest-sync, guest-ping and guest-info", async () => {
    expect(await agent.call("guest-sync", { id: 424242 })).toBe(424242);
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) await agent.ping();
    console.log(`${target.label}: guest-ping ${((performance.now() - t0) / 20).toFixed(2)} ms`);
    const info = await agent.info();
    expect(info.version).toMatch(/^\d+\.\d+/);
    expect(info.commands.map((c) => c.name)).toEqual(
      expect.arrayContaining(["guest-exec", "guest-shutdown"]),
    );
  });

  it("feeds stdin to an exec and captures stdout", async () => {
    const t0 = performance.now();
    const r = await agent.exec("/bin/cat", [], { input: "hello" });
    console.log(`${target.label}: exec /bin/cat ${(performance.now() - t0).toFixed(0)} ms`);
    expect(r).toMatchObject({ exitCode: 0, truncated: false });
    expect(r.stdout.toString()).toBe("hello");
    const binary = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 13]);
    expect((await agent.exec("/bin/cat", [], { input: binary })).stdout).toEqual(binary);
  });

  it("reports exit codes, stderr and the environment it was given", async () => {
    expect((await agent.exec("/bin/sh", ["-c", "exit 3"])).exitCode).toBe(3);
    const r = await agent.exec("/bin/sh", ["-c", 'echo "oops $X" >&2; echo out'], { env: { X: "42" } });
    expect(r.stdout.toString()).toBe("out\n");
    expect(r.stderr.toString()).toBe("oops 42\n");
    const killed = await agent.exec("/bin/sh", ["-c", "kill -9 $$"]);
    expect(killed).toMatchObject({ exitCode: null, signal: 9 });
    const missing = await agent.exec("/no/such/binary").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(GuestAgentCommandError);
  });

  it("runs execs started together at the same time, and awaits them together", async () => {
    // Each process marks that it runs, then waits for the other's mark: run in
    // turn, neither would finish.
    const dir = "/tmp/hx-together";
    expect((await agent.exec("/bin/mkdir", ["-p", dir])).exitCode).toBe(0);
    const meet = (me: string, other: string) =>
      `touch ${dir}/${me}; until [ -e ${dir}/${other} ]; do sleep 1; done; echo ${me}`;
    const pids = await Promise.all([
      agent.start("/bin/sh", ["-c", meet("one", "two")]),
      agent.start("/bin/sh", ["-c", meet("two", "one")]),
    ]);
    expect(new Set(pids).size).toBe(2);
    const [a, b] = await Promise.all(pids.map((pid) => agent.wait(pid, { timeoutMs: 60_000 })));
    expect(a).toMatchObject({ exitCode: 0 });
    expect(a?.stdout.toString()).toBe("one\n");
    expect(b?.stdout.toString()).toBe("two\n");
    const both = await Promise.all([agent.exec("/bin/echo", ["x"]), agent.exec("/bin/echo", ["y"])]);
    expect(both.map((r) => r.stdout.toString())).toEqual(["x\n", "y\n"]);
  });

  it("times out a call, then resynchronises and keeps working", async () => {
    const slow = await agent.exec("/bin/sleep", ["5"], { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(slow).toBeInstanceOf(GuestAgentTimeoutError);
    await agent.ping();

    // A timeout on the wire: freeze QEMU so the reply cannot come in time.
    qemu.kill("SIGSTOP");
    const frozen = await agent.ping({ timeoutMs: 300 }).catch((e: unknown) => e);
    qemu.kill("SIGCONT");
    expect(frozen).toBeInstanceOf(GuestAgentTimeoutError);
    // The late {"return": {}} of that ping must not be taken as guest-info's reply.
    expect((await agent.info()).version).toMatch(/^\d+\./);
    expect(await agent.call("guest-sync", { id: 7 })).toBe(7);
  });

  it("ignores a stale reply left in the channel by a previous client", async () => {
    agent.close();
    warnings.length = 0;
    // The previous client sends two commands and hangs up once the first reply
    // arrives (proof the agent took them): the second reply is still to come.
    // It does not wait for QEMU to close the socket: a chardev whose guest
    // side is busy stops reading and never sees the end of the stream.
    await new Promise<void>((resolve, reject) => {
      const raw = createConnection({ path: qgaSock }, () => {
        raw.write('{"execute":"guest-sync","arguments":{"id":777}}\n{"execute":"guest-info"}\n');
      });
      raw.once("data", () => {
        raw.destroy();
        resolve();
      });
      raw.on("error", reject);
    });
    agent = await connect();
    expect(await agent.call("guest-sync", { id: 888 })).toBe(888);
    expect((await agent.exec("/bin/echo", ["fresh"])).stdout.toString()).toBe("fresh\n");
    // The previous client's replies really were waiting in the channel, and were dropped.
    expect(warnings.some((w) => /discarded \d+ stale bytes/.test(w))).toBe(true);
  });

  it("sets the guest clock, from the host and from the guest's RTC", async () => {
    await agent.setTime();
    await agent.setTime(BigInt(Date.now() - 3600_000) * 1_000_000n);
    const guestNow = Number((await agent.exec("/bin/date", ["+%s"])).stdout.toString());
    expect(Math.abs(guestNow - (Date.now() / 1000 - 3600))).toBeLessThan(30);
    await agent.setTime(BigInt(Date.now()) * 1_000_000n);
  });

  it("powers the guest off with guest-shutdown", async () => {
    const t0 = performance.now();
    await agent.shutdown("powerdown");
    await exited;
    console.log(
      `${target.label}: QEMU exited ${(performance.now() - t0).toFixed(0)} ms after guest-shutdown`,
    );
    expect(qemu.exitCode).toBe(0);
    expect(readFileSync(join(dir, "serial.log"), "utf8")).toMatch(/shutting down/);
  });
});
