import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  MessageTooLargeError,
  ProtocolError,
  QmpClosedError,
  QmpCommandError,
  QmpTimeoutError,
  SocketConnectError,
} from "../../src/engine/qemu/protocol-errors.js";
import { QmpClient } from "../../src/engine/qemu/qmp.js";
import { reliabilityFigures } from "../support/reliability.js";
import { ManualClock } from "../support/manual-clock.js";

/** One accepted connection of the fake QMP server: write freely, await the client's requests in order. */
class PeerConn {
  private buffer = "";
  private readonly requests: Record<string, unknown>[] = [];
  private readonly waiting: ((r: Record<string, unknown>) => void)[] = [];
  constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffer += chunk.toString("utf8");
      let nl: number;
      while ((nl = this.buffer.indexOf("\n")) >= 0) {
        const req = JSON.parse(this.buffer.slice(0, nl)) as Record<string, unknown>;
        this.buffer = this.buffer.slice(nl + 1);
        const w = this.waiting.shift();
        if (w) w(req);
        else this.requests.push(req);
      }
    });
    socket.on("error", () => undefined);
  }
  next(): Promise<Record<string, unknown>> {
    const r = this.requests.shift();
    return r ? Promise.resolve(r) : new Promise((resolve) => this.waiting.push(resolve));
  }
  write(data: string | Buffer): void {
    this.socket.write(data);
  }
  send(message: unknown): void {
    this.write(`${JSON.stringify(message)}\r\n`);
  }
  /** Writes `data` in pieces of `size` bytes, one socket write each, yielding to the event loop between them. */
  async trickle(data: string | Buffer, size: number): Promise<void> {
    const bytes = Buffer.from(data);
    for (let i = 0; i < bytes.length; i += size) {
      this.socket.write(bytes.subarray(i, i + size));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  /** Answers qmp_capabilities. */
  async negotiate(): Promise<void> {
    const req = await this.next();
    expect(req.execute).toBe("qmp_capabilities");
    this.send({ return: {}, id: req.id });
  }
}

/** Whether JSON.parse here takes 100 000 levels of nesting (V8's parser does; a recursive one overflows). */
const parsesDeepJson = (() => {
  try {
    JSON.parse(`${"[".repeat(100_000)}${"]".repeat(100_000)}`);
    return true;
  } catch {
    return false;
  }
})();

const GREETING = {
  QMP: {
    version: { qemu: { major: 9, minor: 2, micro: 1 }, package: "Débian ☃ 1:9.2" },
    capabilities: ["oob"],
  },
};

let dir: string;
let path: string;
let server: Server | undefined;
let conns: PeerConn[];
let onConn: (c: PeerConn) => void;
let unhandled: unknown[];
const clients: QmpClient[] = [];
const recordUnhandled = (reason: unknown) => unhandled.push(reason);

function listen(handler: (c: PeerConn) => void, at = path): Promise<void> {
  onConn = handler;
  server = createServer((s) => {
    const c = new PeerConn(s);
    conns.push(c);
    onConn(c);
  });
  return new Promise((resolve) => server?.listen(at, resolve));
}

/** A peer that greets, negotiates, then runs `script`. */
function qmpPeer(script: (c: PeerConn) => Promise<void> | void = () => undefined): Promise<void> {
  return listen((c) => {
    c.send(GREETING);
    void c.negotiate().then(() => script(c));
  });
}

async function connect(
  warnings: string[] = [],
  extra: Partial<Parameters<typeof QmpClient.connect>[1]> = {},
) {
  const client = await QmpClient.connect(path, {
    timeoutMs: 2000,
    onProtocolWarning: (m) => warnings.push(m),
    ...extra,
  });
  clients.push(client);
  return client;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "hxfq-"));
  path = join(dir, "qmp.sock");
  conns = [];
  unhandled = [];
  process.on("unhandledRejection", recordUnhandled);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const c of conns) c.socket.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  // Node reports unhandled rejections once a turn's microtasks have run: let this turn end.
  await new Promise((resolve) => setImmediate(resolve));
  process.off("unhandledRejection", recordUnhandled);
  rmSync(dir, { recursive: true, force: true });
  expect(unhandled).toEqual([]);
});

describe("QmpClient with a scripted fake peer", () => {
  it("assembles a greeting and replies split across writes, byte by byte", async () => {
    await listen((c) => {
      void (async () => {
        await c.trickle(`${JSON.stringify(GREETING)}\r\n`, 1);
        const caps = await c.next();
        await c.trickle(`{"return": {}, "id": ${JSON.stringify(caps.id)}}\r\n`, 3);
        const q = await c.next();
        // An event and the reply in one write, the reply's tail in the next.
        const ev = `{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\r\n`;
        const reply = `{"return": {"status": "paused", "running": false}, "id": ${JSON.stringify(q.id)}}\r\n`;
        c.write(ev + reply.slice(0, 20));
        await new Promise((resolve) => setImmediate(resolve));
        c.write(reply.slice(20));
      })();
    });
    const qmp = await connect();
    expect(qmp.greeting).toEqual({ version: GREETING.QMP.version, capabilities: ["oob"] });
    const stop = qmp.waitForEvent("STOP");
    expect(await qmp.queryStatus()).toEqual({ status: "paused", running: false });
    expect(await stop).toEqual({ event: "STOP", data: {}, timestamp: { seconds: 1, microseconds: 2 } });
  });

  it("fails connect with ProtocolError when the greeting is not QMP", async () => {
    await listen((c) => c.send({ hello: "I am not QEMU" }));
    await expect(connect()).rejects.toBeInstanceOf(ProtocolError);
  });

  it("fails connect with ProtocolError when the greeting is garbage", async () => {
    await listen((c) => c.write("SSH-2.0-OpenSSH_9.2\r\n"));
    const err = await connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).message).toMatch(/malformed JSON/);
  });

  it("times out connect when the peer accepts but never greets", async () => {
    await listen(() => undefined);
    const err = await connect([], { timeoutMs: 150 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpTimeoutError);
    expect((err as QmpTimeoutError).message).toBe(`QMP greeting on ${path} did not finish within 150 ms`);
  });

  it("fails connect with QmpClosedError when the peer hangs up during negotiation", async () => {
    await listen((c) => {
      c.send(GREETING);
      void c.next().then(() => c.socket.end());
    });
    await expect(connect()).rejects.toBeInstanceOf(QmpClosedError);
  });

  it("times out connecting to a socket that never appears", async () => {
    const err = await connect([], { timeoutMs: 120 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpTimeoutError);
    expect((err as QmpTimeoutError).message).toBe(`QMP connect on ${path} did not finish within 120 ms`);
  });

  it("retries connecting until a socket that appears late is there", async () => {
    const clock = new ManualClock();
    const pending = connect([], { clock });
    await clock.timerAt(20); // the first attempt found no socket; the retry waits
    await qmpPeer();
    clock.advanceTo(20);
    const qmp = await pending;
    expect(qmp.state).toBe("ready");
    expect(conns).toHaveLength(1);
  });

  it("refuses a socket path longer than sun_path at once", async () => {
    const long = `/tmp/${"x".repeat(120)}.sock`;
    await expect(QmpClient.connect(long, { timeoutMs: 100 })).rejects.toBeInstanceOf(SocketConnectError);
  });

  it("fails pending and later calls cleanly after malformed JSON", async () => {
    await qmpPeer(async (c) => {
      await c.next();
      c.write("{this is not json}\r\n");
    });
    const qmp = await connect();
    const err = await qmp.execute("query-status").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpClosedError);
    expect((err as QmpClosedError).cause).toBeInstanceOf(ProtocolError);
    expect(qmp.state).toBe("closed");
    await expect(qmp.execute("query-status")).rejects.toBeInstanceOf(QmpClosedError);
  });

  it("fails the connection on a message that is not an object", async () => {
    await qmpPeer(async (c) => {
      await c.next();
      c.write("[1, 2, 3]\r\n");
    });
    const qmp = await connect();
    const err = await qmp.execute("query-status").catch((e: unknown) => e);
    expect((err as QmpClosedError).cause).toBeInstanceOf(ProtocolError);
  });

  it("fails the connection on an oversized message without buffering it all", async () => {
    await qmpPeer(async (c) => {
      await c.next();
      await c.trickle(`{"return": "${"a".repeat(10_000)}`, 1000);
    });
    const qmp = await connect([], { maxMessageBytes: 4096 });
    const err = await qmp.execute("query-status").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpClosedError);
    expect((err as QmpClosedError).cause).toBeInstanceOf(MessageTooLargeError);
  });

  it("enforces the default 16 MiB limit", async () => {
    await qmpPeer(async (c) => {
      const req = await c.next();
      c.send({ return: "b".repeat(1024 * 1024), id: req.id });
      await c.next();
      c.write(Buffer.alloc(17 * 1024 * 1024, 0x61));
    });
    const qmp = await connect();
    expect(((await qmp.execute("big")) as string).length).toBe(1024 * 1024);
    const err = await qmp.execute("huge").catch((e: unknown) => e);
    expect((err as QmpClosedError).cause).toBeInstanceOf(MessageTooLargeError);
  });

  it("ignores replies with unknown or missing ids, reporting them as warnings", async () => {
    await qmpPeer(async (c) => {
      const req = await c.next();
      c.send({ return: "wrong", id: "not-mine" });
      c.send({ return: "no id" });
      c.send({ error: { class: "GenericError", desc: "JSON parse error" } });
      c.send({ something: "else" });
      c.send({ return: "right", id: req.id });
    });
    const warnings: string[] = [];
    const qmp = await connect(warnings);
    expect(await qmp.execute("x")).toBe("right");
    expect(warnings).toHaveLength(4);
    expect(warnings[0]).toMatch(/unknown id "not-mine"/);
  });

  it("rejects with QmpCommandError keeping class, desc and command", async () => {
    await qmpPeer(async (c) => {
      const req = await c.next();
      c.send({ error: { class: "DeviceNotFound", desc: "Device 'x' not found" }, id: req.id });
    });
    const qmp = await connect();
    const err = await qmp.execute("device_del", { id: "x" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({
      errorClass: "DeviceNotFound",
      desc: "Device 'x' not found",
      command: "device_del",
    });
  });

  it("times out one call at its deadline, drops its late reply, and serves the next", async () => {
    await qmpPeer(async (c) => {
      const slow = await c.next();
      const next = await c.next();
      c.send({ return: "late", id: slow.id });
      c.send({ return: "fresh", id: next.id });
    });
    const warnings: string[] = [];
    const clock = new ManualClock();
    const qmp = await connect(warnings, { clock });
    let settled = false;
    const slow = qmp
      .execute("slow", undefined, { timeoutMs: 50 })
      .catch((e: unknown) => e)
      .finally(() => (settled = true));
    await clock.timerAt(50);
    clock.advanceTo(49);
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    clock.advanceTo(50);
    const err = await slow;
    expect(err).toBeInstanceOf(QmpTimeoutError);
    expect((err as QmpTimeoutError).message).toBe("QMP slow did not finish within 50 ms");
    expect(await qmp.execute("next")).toBe("fresh");
    expect(warnings).toEqual(["dropped the late reply to timed-out QMP slow"]);
  });

  it("rejects everything pending with QmpClosedError on close()", async () => {
    await qmpPeer();
    const qmp = await connect();
    const call = qmp.execute("never");
    const wait = qmp.waitForEvent("NEVER");
    const closed = new Promise<QmpClosedError>((resolve) => qmp.onClose(resolve));
    qmp.close();
    await expect(call).rejects.toThrow(/closed by the client/);
    await expect(wait).rejects.toBeInstanceOf(QmpClosedError);
    expect((await closed).code).toBe("QMP_CLOSED");
    // An abandoned waitForEvent promise never becomes an unhandled rejection.
    void qmp.waitForEvent("ABANDONED");
  });

  it("dispatches events to handlers and waiters in order, surviving a throwing handler", async () => {
    await qmpPeer(async (c) => {
      const req = await c.next();
      for (const status of ["setup", "active", "completed"]) {
        c.send({ event: "MIGRATION", data: { status }, timestamp: { seconds: 1, microseconds: 0 } });
      }
      c.send({ return: {}, id: req.id });
      c.send({ event: "BROKEN" });
      c.send({ event: 42 });
    });
    const warnings: string[] = [];
    const qmp = await connect(warnings);
    const statuses: unknown[] = [];
    const record = (e: { data: Record<string, unknown> }) => statuses.push(e.data.status);
    qmp.on("MIGRATION", () => {
      throw new Error("handler bug");
    });
    qmp.on("MIGRATION", record);
    const done = qmp.waitForEvent<{ status: string }>("MIGRATION", (e) => e.data.status === "completed");
    const broken = qmp.waitForEvent("BROKEN", () => {
      throw new ProtocolError("predicate bug");
    });
    await qmp.execute("migrate", { uri: "exec:cat" });
    expect((await done).data.status).toBe("completed");
    await expect(broken).rejects.toThrow(/predicate bug/);
    expect(statuses).toEqual(["setup", "active", "completed"]);
    qmp.off("MIGRATION", record);
    expect(warnings.filter((w) => /handler of QMP event MIGRATION threw/.test(w))).toHaveLength(3);
    expect(warnings).toContain("ignored a malformed QMP event");
  });

  it("times out and aborts event waits", async () => {
    await qmpPeer();
    const clock = new ManualClock();
    const qmp = await connect([], { clock });
    const never = qmp.waitForEvent("NEVER", undefined, { timeoutMs: 30 });
    clock.advanceTo(30);
    await expect(never).rejects.toThrow("waiting for QMP event NEVER did not finish within 30 ms");
    await expect(never).rejects.toBeInstanceOf(QmpTimeoutError);
    const ac = new AbortController();
    const wait = qmp.waitForEvent("NEVER", undefined, { signal: ac.signal });
    ac.abort(new Error("caller gave up"));
    await expect(wait).rejects.toThrow("caller gave up");
    await expect(qmp.waitForEvent("NEVER", undefined, { signal: ac.signal })).rejects.toThrow(
      "caller gave up",
    );
  });
});

describe("QmpClient against traffic a real QEMU would not send", () => {
  const rel = reliabilityFigures("qmp-malformed-traffic");
  const counted = async (body: () => Promise<void>) => {
    await body();
    rel.badInputs("QMP peer", 1, 1);
  };

  it("fails the connection cleanly on invalid UTF-8 and binary garbage", () =>
    counted(async () => {
      await qmpPeer(async (c) => {
        await c.next();
        c.write(Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0x00, 0x0a]));
      });
      const qmp = await connect();
      const err = await qmp.execute("query-status").catch((e: unknown) => e);
      expect((err as QmpClosedError).cause).toBeInstanceOf(ProtocolError);
    }));

  const deepReply = (id: unknown) =>
    `{"return": ${"[".repeat(100_000)}${"]".repeat(100_000)}, "id": ${JSON.stringify(id)}}\r\n`;

  it.skipIf(!parsesDeepJson)(
    "answers a reply nested 100 000 deep and stays usable (this runtime's JSON.parse takes it)",
    () =>
      counted(async () => {
        await qmpPeer(async (c) => {
          const req = await c.next();
          c.write(deepReply(req.id));
          const again = await c.next();
          c.send({ return: "still here", id: again.id });
        });
        const qmp = await connect();
        expect(await qmp.execute("deep")).toHaveLength(1);
        expect(await qmp.execute("next")).toBe("still here");
      }),
  );

  it.skipIf(parsesDeepJson)(
    "fails the connection cleanly on a reply nested deeper than this runtime's JSON.parse takes",
    () =>
      counted(async () => {
        await qmpPeer(async (c) => {
          const req = await c.next();
          c.write(deepReply(req.id));
        });
        const qmp = await connect();
        const err = await qmp.execute("deep").catch((e: unknown) => e);
        expect((err as QmpClosedError).cause).toBeInstanceOf(ProtocolError);
      }),
  );

  it("turns an error reply of the wrong shape into a QmpCommandError with the raw error", () =>
    counted(async () => {
      await qmpPeer(async (c) => {
        const req = await c.next();
        c.send({ error: "just a string", id: req.id });
        const again = await c.next();
        c.send({ return: {}, id: again.id });
      });
      const qmp = await connect();
      const err = (await qmp.execute("odd").catch((e: unknown) => e)) as QmpCommandError;
      expect(err).toBeInstanceOf(QmpCommandError);
      expect(err.desc).toBe('"just a string"');
      expect(await qmp.execute("next")).toEqual({});
    }));

  it("rejects a typed query whose reply has the wrong shape, keeping the connection", () =>
    counted(async () => {
      await qmpPeer(async (c) => {
        const req = await c.next();
        c.send({ return: { running: "very", status: 7 }, id: req.id });
        const again = await c.next();
        c.send({ return: { running: true, status: "running" }, id: again.id });
      });
      const qmp = await connect();
      await expect(qmp.queryStatus()).rejects.toBeInstanceOf(ProtocolError);
      expect(await qmp.queryStatus()).toMatchObject({ running: true });
    }));

  it("ignores malformed events and numeric ids, and stays usable under a flood of unknown replies", () =>
    counted(async () => {
      await qmpPeer(async (c) => {
        const req = await c.next();
        c.send({ event: 5, data: "x" });
        c.send({ event: "STOP", data: [1], timestamp: "now" });
        c.send({ return: "numeric id", id: 1 });
        c.write(Array.from({ length: 5000 }, (_, i) => `{"return": ${i}, "id": "ghost-${i}"}\r\n`).join(""));
        c.send({ return: "mine", id: req.id });
      });
      const warnings: string[] = [];
      const qmp = await connect(warnings);
      expect(await qmp.execute("x")).toBe("mine");
      expect(warnings.length).toBeGreaterThanOrEqual(5002);
      expect(qmp.state).toBe("ready");
    }));

  it("fails the connection when the peer hangs up in the middle of a line", () =>
    counted(async () => {
      await qmpPeer(async (c) => {
        await c.next();
        c.write('{"return": {"half');
        c.socket.end();
      });
      const qmp = await connect();
      const err = await qmp.execute("query-status").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QmpClosedError);
      await expect(qmp.execute("again")).rejects.toBeInstanceOf(QmpClosedError);
    }));

  it("redacts secret arguments in its trace", () =>
    counted(async () => {
      const traced: string[] = [];
      await qmpPeer(async (c) => {
        for (let i = 0; i < 3; i++) {
          const req = await c.next();
          c.send({ return: {}, id: req.id });
        }
      });
      const qmp = await connect([], { trace: (d, m) => traced.push(`${d} ${JSON.stringify(m)}`) });
      await qmp.execute("object-add", { "qom-type": "secret", id: "s0", data: "hunter2" });
      await qmp.execute("set_password", { protocol: "vnc", password: "hunter2" });
      await qmp.execute("human-monitor-command", { "command-line": "set_password vnc hunter2" });
      expect(traced.join("\n")).not.toContain("hunter2");
      expect(traced.filter((t) => t.includes("<redacted>"))).toHaveLength(3);
    }));
});
