import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  GuestAgentClosedError,
  GuestAgentCommandError,
  GuestAgentTimeoutError,
  MessageTooLargeError,
  ProtocolError,
} from "../../src/engine/qemu/protocol-errors.js";
import { GuestAgent, type GuestAgentOptions } from "../../src/engine/qemu/qga.js";
import { reliabilityFigures } from "../support/reliability.js";
import { ManualClock } from "../support/manual-clock.js";

interface Request {
  execute: string;
  arguments?: Record<string, unknown>;
  /** The raw line, and whether a 0xFF came right before it. */
  raw: string;
  delimited: boolean;
}

/**
 * A fake qemu-guest-agent connection: parses requests like the agent does
 * (0xFF resets the parser) and hands them to the test in order.
 */
class FakeAgent {
  private buffer = Buffer.alloc(0);
  private sawDelimiter = false;
  readonly log: Request[] = [];
  private readonly queued: Request[] = [];
  private readonly waiting: ((r: Request) => void)[] = [];
  constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => undefined);
  }
  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const ff = this.buffer.indexOf(0xff);
      const nl = this.buffer.indexOf(0x0a);
      if (ff >= 0 && (nl < 0 || ff < nl)) {
        this.sawDelimiter = true;
        this.buffer = this.buffer.subarray(ff + 1);
        continue;
      }
      if (nl < 0) return;
      const raw = this.buffer.subarray(0, nl).toString("utf8");
      this.buffer = this.buffer.subarray(nl + 1);
      const req = {
        ...(JSON.parse(raw) as Omit<Request, "raw" | "delimited">),
        raw,
        delimited: this.sawDelimiter,
      };
      this.sawDelimiter = false;
      this.log.push(req);
      const w = this.waiting.shift();
      if (w) w(req);
      else this.queued.push(req);
    }
  }
  next(): Promise<Request> {
    const r = this.queued.shift();
    return r ? Promise.resolve(r) : new Promise((resolve) => this.waiting.push(resolve));
  }
  write(data: string | Buffer): void {
    this.socket.write(data);
  }
  reply(value: unknown): void {
    this.write(`${JSON.stringify({ return: value })}\n`);
  }
  /** Waits for a guest-sync-delimited and answers it like the agent (0xFF, then the reply). */
  async answerSync(split = false): Promise<Request> {
    const req = await this.next();
    expect(req).toMatchObject({ execute: "guest-sync-delimited", delimited: true });
    const text = `${JSON.stringify({ return: req.arguments?.id })}\n`;
    if (split) {
      this.write(Buffer.from([0xff]));
      await new Promise((resolve) => setImmediate(resolve));
      this.write(text.slice(0, 5));
      await new Promise((resolve) => setImmediate(resolve));
      this.write(text.slice(5));
    } else {
      this.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(text)]));
    }
    return req;
  }
}

let dir: string;
let path: string;
let server: Server | undefined;
let peers: FakeAgent[];
/** What the fake agents' scripts threw (their expectations included): checked after each test. */
let peerErrors: unknown[];
let unhandled: unknown[];
const agents: GuestAgent[] = [];
const recordUnhandled = (reason: unknown) => unhandled.push(reason);

/** Starts the fake agent; `script` runs for each connection. */
function serve(script: (peer: FakeAgent) => Promise<void> | void): Promise<void> {
  server = createServer((s) => {
    const peer = new FakeAgent(s);
    peers.push(peer);
    void Promise.resolve(script(peer)).catch((err: unknown) => peerErrors.push(err));
  });
  return new Promise((resolve) => server?.listen(path, resolve));
}

async function connect(warnings: string[] = [], extra: Partial<GuestAgentOptions> = {}): Promise<GuestAgent> {
  const agent = await GuestAgent.connect(path, {
    timeoutMs: 2000,
    defaultTimeoutMs: 2000,
    onProtocolWarning: (m) => warnings.push(m),
    ...extra,
  });
  agents.push(agent);
  return agent;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "hxfa-"));
  path = join(dir, "qga.sock");
  peers = [];
  peerErrors = [];
  unhandled = [];
  process.on("unhandledRejection", recordUnhandled);
});

afterEach(async () => {
  for (const a of agents.splice(0)) a.close();
  for (const p of peers) p.socket.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  // Node reports unhandled rejections once a turn's microtasks have run: let this turn end.
  await new Promise((resolve) => setImmediate(resolve));
  process.off("unhandledRejection", recordUnhandled);
  rmSync(dir, { recursive: true, force: true });
  expect(unhandled).toEqual([]);
  expect(peerErrors).toEqual([]);
});

describe("GuestAgent with a scripted fake agent", () => {
  it("discards stale junk up to the 0xFF delimiter before the first call", async () => {
    await serve(async (peer) => {
      // Left over from a previous client: a reply, garbage, and half a line.
      peer.write('{"return": 5}\nnot json at all\n\u0001{"return": {"half');
      await peer.answerSync(true);
      expect(await peer.next()).toMatchObject({ execute: "guest-ping", delimited: false });
      peer.reply({});
    });
    const warnings: string[] = [];
    const agent = await connect(warnings);
    await agent.ping();
    expect(warnings.some((w) => /discarded \d+ stale bytes/.test(w))).toBe(true);
    expect(peers[0]?.log.map((r) => r.execute)).toEqual(["guest-sync-delimited", "guest-ping"]);
  });

  it("skips replies to an older sync until its own id comes back", async () => {
    await serve(async (peer) => {
      const req = await peer.next();
      const id = req.arguments?.id as number;
      expect(Number.isInteger(id) && id > 0 && id < 2 ** 31).toBe(true);
      peer.write(Buffer.from(`\xff{"return": ${id + 1}}\n{"return": {}}\n\xff{"return": ${id}}\n`, "latin1"));
      expect((await peer.next()).execute).toBe("guest-info");
      peer.reply({ version: "9.9.9", supported_commands: [{ name: "guest-ping", enabled: true }] });
    });
    const agent = await connect();
    expect(await agent.info()).toEqual({
      version: "9.9.9",
      commands: [{ name: "guest-ping", enabled: true }],
    });
  });

  it("resyncs after a timed-out call so its late reply is not taken for the next one", async () => {
    await serve(async (peer) => {
      await peer.answerSync();
      await peer.next(); // guest-info: no answer in time
      const sync = await peer.next();
      peer.reply({ version: "late", supported_commands: [] });
      peer.write(Buffer.from(`\xff${JSON.stringify({ return: sync.arguments?.id })}\n`, "latin1"));
      expect((await peer.next()).execute).toBe("guest-sync");
      peer.reply(99);
    });
    const agent = await connect();
    const err = await agent.info({ timeoutMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestAgentTimeoutError);
    expect(await agent.call("guest-sync", { id: 99 })).toBe(99);
    expect(peers[0]?.log.map((r) => r.execute)).toEqual([
      "guest-sync-delimited",
      "guest-info",
      "guest-sync-delimited",
      "guest-sync",
    ]);
  });

  it("puts one call at a time on the wire, in the order they were made", async () => {
    await serve(async (peer) => {
      await peer.answerSync();
      for (let i = 0; i < 5; i++) peer.reply((await peer.next()).arguments?.id);
    });
    const traced: string[] = [];
    const agent = await connect([], { trace: (d) => traced.push(d) });
    const ids = [1, 2, 3, 4, 5];
    expect(await Promise.all(ids.map((id) => agent.call("guest-sync", { id })))).toEqual(ids);
    // Calls made in one turn would all be sent before any reply could be read if they were not queued.
    expect(traced).toEqual(Array.from({ length: 6 }, () => ["send", "recv"]).flat());
    expect(peers[0]?.log.map((r) => r.arguments?.id)).toEqual([expect.any(Number), ...ids]);
  });

  it("times out a call still queued behind a slow one at its own deadline", async () => {
    let pinged!: () => void;
    const onTheWire = new Promise<void>((r) => (pinged = r));
    await serve(async (peer) => {
      await peer.answerSync();
      await peer.next(); // never answered
      pinged();
    });
    const clock = new ManualClock();
    const agent = await connect([], { clock });
    const slow = agent.ping({ timeoutMs: 300 });
    const queued = agent.ping({ timeoutMs: 50 });
    await onTheWire;
    clock.advanceTo(50);
    await expect(queued).rejects.toThrow(/^guest agent guest-ping \(queued\) did not finish within 50 ms$/);
    clock.advanceTo(300);
    await expect(slow).rejects.toThrow(/^guest agent guest-ping did not finish within 300 ms$/);
    expect(peers[0]?.log.map((r) => r.execute)).toEqual(["guest-sync-delimited", "guest-ping"]);
  });

  it("runs guest-exec with base64 stdin, polls its status and never traces the input", async () => {
    const traced: string[] = [];
    await serve(async (peer) => {
      await peer.answerSync();
      const exec = await peer.next();
      expect(exec.arguments).toMatchObject({
        path: "/bin/cat",
        arg: ["-"],
        "capture-output": true,
        env: ["A=1"],
      });
      expect(Buffer.from(exec.arguments?.["input-data"] as string, "base64").toString()).toBe("s3cret");
      peer.reply({ pid: 4242 });
      for (let i = 0; i < 2; i++) {
        expect((await peer.next()).arguments).toEqual({ pid: 4242 });
        peer.reply({ exited: false });
      }
      await peer.next();
      const out = Buffer.from("s3cret").toString("base64");
      peer.reply({ exited: true, exitcode: 0, "out-data": out, "err-data": "", "out-truncated": true });
    });
    const agent = await connect([], { trace: (d, m) => traced.push(`${d} ${JSON.stringify(m)}`) });
    const r = await agent.exec("/bin/cat", ["-"], { input: "s3cret", env: { A: "1" } });
    expect(r).toEqual({
      exitCode: 0,
      stdout: Buffer.from("s3cret"),
      stderr: Buffer.alloc(0),
      truncated: true,
    });
    const sent = traced.filter((t) => t.startsWith("send"));
    expect(sent.join("\n")).not.toContain(Buffer.from("s3cret").toString("base64"));
    expect(sent.join("\n")).toContain('"input-data":"<redacted>"');
  });

  it("sends guest-set-time nanoseconds as an exact JSON integer", async () => {
    await serve(async (peer) => {
      await peer.answerSync();
      peer.reply({});
      expect((await peer.next()).raw).toBe(
        '{"execute":"guest-set-time","arguments":{"time":1700000000123456789}}',
      );
      peer.reply({});
      expect((await peer.next()).raw).toBe('{"execute":"guest-set-time"}');
      peer.reply({});
    });
    const agent = await connect();
    await agent.setTime(1_700_000_000_123_456_789n);
    await agent.setTime();
  });

  it("fails the connection with a protocol error on malformed JSON", async () => {
    await serve(async (peer) => {
      await peer.answerSync();
      await peer.next();
      peer.write("{garbage\n");
    });
    const agent = await connect();
    const err = await agent.ping().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestAgentClosedError);
    expect((err as GuestAgentClosedError).cause).toBeInstanceOf(ProtocolError);
    expect(agent.closed).toBe(true);
    await expect(agent.ping()).rejects.toBeInstanceOf(GuestAgentClosedError);
  });

  it("fails the connection on an oversized reply", async () => {
    await serve(async (peer) => {
      await peer.answerSync();
      await peer.next();
      peer.write(`{"return": "${"z".repeat(50_000)}`);
    });
    const agent = await connect([], { maxMessageBytes: 8192 });
    const err = await agent.ping().catch((e: unknown) => e);
    expect((err as GuestAgentClosedError).cause).toBeInstanceOf(MessageTooLargeError);
  });

  it("rejects a reply that is neither return nor error, and surfaces agent errors", async () => {
    await serve(async (peer) => {
      await peer.answerSync();
      await peer.next();
      peer.write('{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}\n');
      await peer.next();
      peer.write('{"weird": true}\n');
    });
    const agent = await connect();
    const err = await agent.call("nope").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestAgentCommandError);
    expect(err).toMatchObject({ errorClass: "CommandNotFound", command: "nope" });
    const bad = await agent.ping().catch((e: unknown) => e);
    expect((bad as GuestAgentClosedError).cause).toBeInstanceOf(ProtocolError);
  });

  it("treats an unsolicited message as stale and resyncs before the next call", async () => {
    await serve(async (peer) => {
      await peer.answerSync();
      await peer.next();
      peer.reply({});
      peer.reply("unsolicited");
      await peer.answerSync();
      await peer.next();
      peer.reply({});
    });
    let staleSeen!: () => void;
    const stale = new Promise<void>((r) => (staleSeen = r));
    const agent = await connect([], {
      onProtocolWarning: (m) => {
        if (m === "discarded an unexpected guest agent message (stale reply?)") staleSeen();
      },
    });
    await agent.ping();
    await stale;
    await agent.ping();
    expect(peers[0]?.log.filter((r) => r.execute === "guest-sync-delimited")).toHaveLength(2);
  });

  it("waits for an agent that starts answering late", async () => {
    let n = 0;
    await serve(async (peer) => {
      if (n++ > 0) return; // the second agent never answers
      await peer.next();
      await peer.next(); // the first two syncs go unanswered, as while the guest boots
      await peer.answerSync();
    });
    const agent = await connect();
    await agent.waitUntilReady({ timeoutMs: 3000, attemptTimeoutMs: 50 });
    await expect(
      (await connect()).waitUntilReady({ timeoutMs: 120, attemptTimeoutMs: 50 }),
    ).rejects.toBeInstanceOf(GuestAgentTimeoutError);
  });

  it("counts guest-shutdown as done when the agent goes away", async () => {
    await serve(async (peer) => {
      await peer.answerSync();
      expect((await peer.next()).arguments).toEqual({ mode: "powerdown" });
      peer.socket.destroy();
    });
    const agent = await connect();
    await agent.shutdown();
    expect(agent.closed).toBe(true);
  });

  it("counts guest-shutdown as done when the agent stays silent until the reply timeout", async () => {
    let asked!: () => void;
    const shutdownSent = new Promise<void>((r) => (asked = r));
    await serve(async (peer) => {
      await peer.answerSync();
      expect((await peer.next()).arguments).toEqual({ mode: "reboot" });
      asked();
    });
    const clock = new ManualClock();
    const agent = await connect([], { clock });
    let settled = false;
    const done = agent.shutdown("reboot", { replyTimeoutMs: 100 }).finally(() => (settled = true));
    await shutdownSent;
    expect(clock.pending).toEqual([100]); // only the reply timeout is left to wait for
    clock.advanceTo(99);
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    clock.advanceTo(100);
    await done;
    expect(agent.closed).toBe(false);
  });

  it("rejects guest-shutdown when the agent answers with an error", async () => {
    await serve(async (peer) => {
      await peer.answerSync();
      await peer.next();
      peer.write('{"error": {"class": "GenericError", "desc": "shutdown failed"}}\n');
    });
    await expect((await connect()).shutdown()).rejects.toBeInstanceOf(GuestAgentCommandError);
  });
});

describe("GuestAgent against traffic a real agent would not send", () => {
  const rel = reliabilityFigures("qga-malformed-traffic");
  const counted = async (body: () => Promise<void>) => {
    await body();
    rel.badInputs("guest agent peer", 1, 1);
  };

  it("rejects a guest-exec-status of the wrong shape with a ProtocolError and keeps the channel", () =>
    counted(async () => {
      await serve(async (peer) => {
        await peer.answerSync();
        await peer.next();
        peer.reply({ pid: 7 });
        await peer.next();
        peer.reply({ exited: "yes", exitcode: "zero" });
        await peer.next();
        peer.reply({});
      });
      const agent = await connect();
      await expect(agent.exec("/bin/true")).rejects.toBeInstanceOf(ProtocolError);
      await agent.ping();
    }));

  it("rejects a guest-exec reply without a pid, and a pid that is not a number", () =>
    counted(async () => {
      await serve(async (peer) => {
        await peer.answerSync();
        await peer.next();
        peer.reply({});
        await peer.next();
        peer.reply({ pid: "12" });
      });
      const agent = await connect();
      await expect(agent.start("/bin/true")).rejects.toBeInstanceOf(ProtocolError);
      await expect(agent.start("/bin/true")).rejects.toBeInstanceOf(ProtocolError);
    }));

  it("ignores sync replies with an id of the wrong type until its own comes back", () =>
    counted(async () => {
      await serve(async (peer) => {
        const sync = await peer.next();
        const id = sync.arguments?.id as number;
        peer.write(
          Buffer.concat([Buffer.from([0xff]), Buffer.from(`{"return": "${id}"}\n{"return": null}\n`)]),
        );
        peer.reply(id);
        await peer.next();
        peer.reply({});
      });
      const warnings: string[] = [];
      const agent = await connect(warnings);
      await agent.ping();
      expect(warnings.filter((w) => w.includes("while resynchronising"))).toHaveLength(2);
    }));

  it("fails the connection on binary garbage, without crashing", () =>
    counted(async () => {
      await serve(async (peer) => {
        await peer.answerSync();
        await peer.next();
        peer.write(Buffer.concat([Buffer.from([0xc3, 0x28, 0x00, 0x01]), Buffer.from("\n")]));
      });
      const agent = await connect();
      const err = await agent.ping().catch((e: unknown) => e);
      expect((err as GuestAgentClosedError).cause).toBeInstanceOf(ProtocolError);
      await expect(agent.ping()).rejects.toBeInstanceOf(GuestAgentClosedError);
    }));

  it("drops garbage that arrives before the delimiter of a resync", () =>
    counted(async () => {
      await serve(async (peer) => {
        const sync = await peer.next();
        peer.write(Buffer.from('partial {"ret'));
        peer.write(Buffer.from([0x00, 0xfe, 0x7b]));
        peer.write(
          Buffer.concat([Buffer.from([0xff]), Buffer.from(`{"return": ${sync.arguments?.id as number}}\n`)]),
        );
        await peer.next();
        peer.reply({});
      });
      const warnings: string[] = [];
      const agent = await connect(warnings);
      await agent.ping();
      expect(warnings.some((w) => /discarded \d+ stale bytes/.test(w))).toBe(true);
    }));

  it("redacts guest-exec output in its trace", () =>
    counted(async () => {
      const traced: string[] = [];
      const out = Buffer.from("KEY=0123456789abcdef").toString("base64");
      await serve(async (peer) => {
        await peer.answerSync();
        await peer.next();
        peer.reply({ pid: 3 });
        await peer.next();
        peer.reply({ exited: true, exitcode: 0, "out-data": out, "err-data": out });
      });
      const agent = await connect([], { trace: (d, m) => traced.push(`${d} ${JSON.stringify(m)}`) });
      const r = await agent.exec("/bin/cat", ["/secret"]);
      expect(r.stdout.toString()).toBe("KEY=0123456789abcdef");
      expect(traced.join("\n")).not.toContain(out);
      expect(traced.join("\n")).toContain(`"out-data":"<${out.length} base64 characters>"`);
    }));
});
