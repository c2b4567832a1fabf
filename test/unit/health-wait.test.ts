import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { connect, createServer as createTcpServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { HealthTimeoutError, waitForHealthy } from "../../src/engine/guest/health.js";
import type { GuestService, HealthProgress } from "../../src/engine/guest/health.js";
import { ManualClock } from "../support/manual-clock.js";

// Time runs on a ManualClock: each test moves it once the poller is waiting
// for it (a timer is pending at the expected time) or once the answer it
// waits for has come in, so the times reported are exact.

const HOST = "127.0.0.1";

/** Progress reports as they come, and a way to wait for a state of them. */
function progressLog() {
  const seen: HealthProgress[] = [];
  const wake: (() => void)[] = [];
  return {
    seen,
    onProgress: (p: HealthProgress) => {
      seen.push(p);
      for (const w of wake.splice(0)) w();
    },
    async until(pred: (seen: HealthProgress[]) => boolean): Promise<void> {
      while (!pred(seen)) await new Promise<void>((r) => wake.push(r));
    },
  };
}
const answered = (name: string) => (seen: HealthProgress[]) => seen.some((p) => p.name === name);

const open: Array<{ server: Server; sockets: Set<Socket> }> = [];
const held: Socket[] = [];

async function listen(server: Server): Promise<number> {
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  open.push({ server, sockets });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  return (server.address() as AddressInfo).port;
}

/** A server that counts its connections; `reached(n)` resolves once the nth has come in. */
async function counting(server: Server) {
  let count = 0;
  const wake: (() => void)[] = [];
  server.on("connection", () => {
    count++;
    for (const w of wake.splice(0)) w();
  });
  const port = await listen(server);
  return {
    port,
    get count() {
      return count;
    },
    async reached(n: number): Promise<void> {
      while (count < n) await new Promise<void>((r) => wake.push(r));
    },
  };
}

/** An HTTP server whose handler gets the request's number (1-based); it counts connections (one per probe). */
function httpOn(handler: (n: number, req: IncomingMessage, res: ServerResponse) => void) {
  let n = 0;
  return counting(createServer((req, res) => handler(++n, req, res)));
}
const status = (code: number) => httpOn((_n, _q, r) => r.writeHead(code).end());

/**
 * A port nothing listens on, held for the test: the local end of a connection
 * to a helper server, bound explicitly, so a connect to it is refused and no
 * other socket can listen on it meanwhile (closing a free port and reusing it
 * would race with every other process on the machine).
 */
async function refusedPort(): Promise<number> {
  const helper = await listen(createTcpServer(() => {}));
  const sock = connect({ host: HOST, port: helper, localAddress: HOST });
  held.push(sock);
  await once(sock, "connect");
  return sock.localPort as number;
}

const http = (name: string, port: number, path = "/"): GuestService => ({
  name,
  port,
  check: { kind: "http", path, okStatus: [200] },
});

afterEach(async () => {
  for (const s of held.splice(0)) s.destroy();
  for (const { server, sockets } of open.splice(0)) {
    sockets.forEach((s) => s.destroy());
    await new Promise((r) => server.close(r));
  }
});

describe("waiting for healthy services", () => {
  it("resolves once all are healthy, with each service's time to healthy and attempts", async () => {
    const a = await status(200);
    const b = await httpOn((n, _q, r) => r.writeHead(n < 3 ? 503 : 200).end());
    const clock = new ManualClock();
    const log = progressLog();
    const done = waitForHealthy([http("a", a.port), http("b", b.port)], {
      host: HOST,
      deadlineMs: 60_000,
      intervalMs: 50,
      clock,
      onProgress: log.onProgress,
    });
    await log.until(answered("a"));
    await clock.step(50);
    await clock.step(100);
    expect(await done).toEqual({
      totalMs: 100,
      services: [
        { name: "a", ms: 0, attempts: 1 },
        { name: "b", ms: 100, attempts: 3 },
      ],
    });
    expect(clock.pending).toEqual([]);
  });

  it("resolves at once for no services", async () => {
    const clock = new ManualClock();
    expect(await waitForHealthy([], { host: HOST, deadlineMs: 100, clock })).toEqual({
      totalMs: 0,
      services: [],
    });
    expect(clock.pending).toEqual([]);
  });

  it("keeps polling a port that resets connections (QEMU's forwarder, service down) until the service answers", async () => {
    const app = createServer((_q, r) => r.writeHead(200).end());
    let n = 0;
    const port = await listen(
      createTcpServer((s) => (++n <= 3 ? s.resetAndDestroy() : app.emit("connection", s))),
    );
    const clock = new ManualClock();
    const log = progressLog();
    const done = waitForHealthy([http("late", port)], {
      host: HOST,
      deadlineMs: 60_000,
      intervalMs: 20,
      clock,
      onProgress: log.onProgress,
    });
    for (const t of [20, 40, 60]) await clock.step(t);
    expect((await done).services).toEqual([{ name: "late", ms: 60, attempts: 4 }]);
    expect(log.seen.map((p) => [p.detail, p.ok, p.elapsedMs])).toEqual([
      ["ECONNRESET", false, 0],
      ["200", true, 60],
    ]);
  });

  it("keeps polling through 503s until the service answers 200", async () => {
    const backend = await httpOn((n, _q, r) => r.writeHead(n < 4 ? 503 : 200).end());
    const clock = new ManualClock();
    const log = progressLog();
    const done = waitForHealthy([http("backend", backend.port, "/health?db=1")], {
      host: HOST,
      deadlineMs: 60_000,
      intervalMs: 10,
      clock,
      onProgress: log.onProgress,
    });
    for (const t of [10, 20, 30]) await clock.step(t);
    const report = await done;
    expect(report.services).toEqual([{ name: "backend", ms: 30, attempts: 4 }]);
    // Only changes are reported, and the healthy answer.
    expect(log.seen.map((p) => [p.detail, p.ok, p.healthy, p.total])).toEqual([
      ["503", false, 0, 1],
      ["200", true, 1, 1],
    ]);
  });

  it("fails at the deadline naming each failing service and its last answer", async () => {
    const ok = await status(200);
    const unavailable = await status(503);
    const wrong = await status(404);
    const refused = await refusedPort();
    const services = [
      http("dashboard", ok.port),
      http("backend", unavailable.port, "/health?db=1"),
      http("minio", wrong.port),
      http("inbucket", refused),
    ];
    const clock = new ManualClock();
    const log = progressLog();
    const failed = waitForHealthy(services, {
      host: HOST,
      deadlineMs: 300,
      clock,
      onProgress: log.onProgress,
    }).catch((e: unknown) => e);
    await log.until((seen) => services.every((s) => answered(s.name)(seen)));
    clock.advanceTo(300);
    const err = await failed;
    expect(err).toBeInstanceOf(HealthTimeoutError);
    const e = err as HealthTimeoutError;
    expect(e.code).toBe("HEALTH_TIMEOUT");
    expect(e.timeoutMs).toBe(300);
    expect(e.message).toBe(
      [
        "3 of 4 services not healthy within 300 ms:",
        `  - backend (127.0.0.1:${unavailable.port} GET /health?db=1): last answer 503`,
        `  - minio (127.0.0.1:${wrong.port} GET /): last answer 404`,
        `  - inbucket (127.0.0.1:${refused} GET /): last answer ECONNREFUSED`,
      ].join("\n"),
    );
    expect(e.failing.map((f) => f.name)).toEqual(["backend", "minio", "inbucket"]);
    expect(e.hint).toMatch(/serial\.log.*hexclave-emulator status/);
    expect(clock.pending).toEqual([]);
  });

  it("uses the caller's hint in the timeout error", async () => {
    const down = await status(503);
    const clock = new ManualClock();
    const log = progressLog();
    const failed = waitForHealthy([http("backend", down.port)], {
      host: HOST,
      deadlineMs: 100,
      clock,
      hint: "see /tmp/run/serial.log",
      onProgress: log.onProgress,
    }).catch((e: unknown) => e);
    await log.until(answered("backend"));
    clock.advanceTo(100);
    expect(await failed).toMatchObject({ code: "HEALTH_TIMEOUT", hint: "see /tmp/run/serial.log" });
  });

  it("states a long deadline in seconds", () => {
    const err = new HealthTimeoutError(
      240_000,
      [{ name: "backend", endpoint: "x", ok: false, detail: "503" }],
      5,
    );
    expect(err.message.split("\n")[0]).toBe("1 of 5 services not healthy within 240 s:");
  });

  it("says 'no answer yet' for a service whose first request is still pending at the deadline", async () => {
    const hanging = await httpOn(() => {});
    const clock = new ManualClock();
    const failed = waitForHealthy([http("dashboard", hanging.port)], {
      host: HOST,
      deadlineMs: 200,
      clock,
    }).catch((e: unknown) => e);
    await hanging.reached(1);
    clock.advanceTo(200);
    const err = (await failed) as Error;
    expect(err).toBeInstanceOf(HealthTimeoutError);
    expect(err.message).toContain(`dashboard (127.0.0.1:${hanging.port} GET /): no answer yet`);
    expect(hanging.count).toBe(1);
  });

  it("reports a probe timeout as the last answer, and probes again after it", async () => {
    const hanging = await httpOn(() => {});
    const clock = new ManualClock();
    const log = progressLog();
    const failed = waitForHealthy([http("dashboard", hanging.port)], {
      host: HOST,
      deadlineMs: 400,
      probeTimeoutMs: 100,
      clock,
      onProgress: log.onProgress,
    }).catch((e: unknown) => e);
    await hanging.reached(1);
    clock.advanceTo(100);
    await log.until(answered("dashboard"));
    await hanging.reached(2);
    clock.advanceTo(400);
    const err = (await failed) as Error;
    expect(err).toBeInstanceOf(HealthTimeoutError);
    expect(err.message).toContain("last answer timeout");
    expect(log.seen.map((p) => [p.detail, p.elapsedMs])).toEqual([["timeout", 100]]);
  });

  it("waits on the TCP check of mock OAuth too, through connections closed right after the accept", async () => {
    let n = 0;
    const port = await listen(createTcpServer((s) => (++n <= 2 ? s.end() : undefined)));
    const clock = new ManualClock();
    const log = progressLog();
    const done = waitForHealthy([{ name: "mockOauth", port, check: { kind: "tcp", settleMs: 25 } }], {
      host: HOST,
      deadlineMs: 60_000,
      intervalMs: 50,
      clock,
      onProgress: log.onProgress,
    });
    await clock.step(50);
    await clock.step(100);
    expect((await done).services).toEqual([{ name: "mockOauth", ms: 100, attempts: 3 }]);
    expect(log.seen.map((p) => p.detail)).toEqual(["closed by peer", "open"]);
  });

  it("with requireFreshSince, counts only answers to requests started at or after that time", async () => {
    const backend = await status(200);
    const clock = new ManualClock();
    const log = progressLog();
    const done = waitForHealthy([http("backend", backend.port)], {
      host: HOST,
      deadlineMs: 60_000,
      intervalMs: 50,
      requireFreshSince: clock.epochMs() + 100,
      clock,
      onProgress: log.onProgress,
    });
    await clock.step(50);
    await clock.step(100);
    expect((await done).services).toEqual([{ name: "backend", ms: 100, attempts: 3 }]);
    expect(log.seen.map((p) => [p.detail, p.ok])).toEqual([
      ["200 (request started before the required restart)", false],
      ["200", true],
    ]);
  });

  it("with requireFreshSince now or earlier, takes the first healthy answer", async () => {
    const backend = await status(200);
    const clock = new ManualClock();
    const report = await waitForHealthy([http("backend", backend.port)], {
      host: HOST,
      deadlineMs: 2000,
      requireFreshSince: clock.epochMs(),
      clock,
    });
    expect(report.services).toEqual([{ name: "backend", ms: 0, attempts: 1 }]);
  });

  it("tells a stale healthy answer apart from a failing one at the deadline", async () => {
    const backend = await status(200);
    const clock = new ManualClock();
    const log = progressLog();
    const failed = waitForHealthy([http("backend", backend.port)], {
      host: HOST,
      deadlineMs: 150,
      requireFreshSince: clock.epochMs() + 60_000,
      clock,
      onProgress: log.onProgress,
    }).catch((e: unknown) => e);
    await log.until(answered("backend"));
    clock.advanceTo(150);
    expect(((await failed) as Error).message).toContain(
      "last answer 200 (request started before the required restart)",
    );
  });

  it("stops polling and rejects with the signal's reason when aborted", async () => {
    const backend = await status(503);
    const clock = new ManualClock();
    const ac = new AbortController();
    const reason = new Error("user cancelled");
    const done = waitForHealthy([http("a", backend.port)], {
      host: HOST,
      deadlineMs: 10_000,
      intervalMs: 10,
      signal: ac.signal,
      clock,
    });
    await clock.timerAt(10); // the first answer is in; the next probe waits for the interval
    ac.abort(reason);
    await expect(done).rejects.toBe(reason);
    // Nothing is left waiting on the clock, and no request came after the first.
    expect(clock.pending).toEqual([]);
    expect(backend.count).toBe(1);
  });

  it("rejects at once when the signal is already aborted", async () => {
    const ac = new AbortController();
    ac.abort(new Error("gone"));
    const clock = new ManualClock();
    await expect(
      waitForHealthy([http("a", 1)], { host: HOST, deadlineMs: 1000, signal: ac.signal, clock }),
    ).rejects.toThrow("gone");
    expect(clock.pending).toEqual([]);
  });

  it("runs on the real clock by default", async () => {
    const backend = await httpOn((n, _q, r) => r.writeHead(n < 2 ? 503 : 200).end());
    const report = await waitForHealthy([http("backend", backend.port)], {
      host: HOST,
      deadlineMs: 60_000,
      intervalMs: 1,
    });
    expect(report.services).toMatchObject([{ name: "backend", attempts: 2 }]);
    expect(report.services[0]!.ms).toBeGreaterThanOrEqual(0);
    expect(report.services[0]!.ms).toBeLessThanOrEqual(report.totalMs);
  });
});
