import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createTcpServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { HealthTimeoutError, waitForHealthy } from "../../src/engine/guest/health.js";
import type { GuestService, HealthProgress } from "../../src/engine/guest/health.js";

const HOST = "127.0.0.1";
const open: Array<{ server: Server; sockets: Set<Socket> }> = [];

async function listen(server: Server, port = 0): Promise<number> {
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  open.push({ server, sockets });
  await new Promise<void>((r) => server.listen(port, HOST, r));
  return (server.address() as AddressInfo).port;
}
const httpOn = (handler: (req: IncomingMessage, res: ServerResponse) => void, port = 0) =>
  listen(createServer(handler), port);
async function freePort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((r) => server.listen(0, HOST, r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}
const http = (name: string, port: number, path = "/"): GuestService => ({
  name,
  port,
  check: { kind: "http", path, okStatus: [200] },
});

afterEach(async () => {
  for (const { server, sockets } of open.splice(0)) {
    sockets.forEach((s) => s.destroy());
    await new Promise((r) => server.close(r));
  }
});

describe("waiting for healthy services", () => {
  it("resolves with each service's time to healthy once all are healthy", async () => {
    const a = await httpOn((_q, r) => r.writeHead(200).end());
    const b = await httpOn((_q, r) => r.writeHead(200).end());
    const report = await waitForHealthy([http("a", a), http("b", b)], { host: HOST, deadlineMs: 2000 });
    expect(report.services.map((s) => [s.name, s.attempts])).toEqual([
      ["a", 1],
      ["b", 1],
    ]);
    expect(report.totalMs).toBeLessThan(1000);
    expect(report.services.every((s) => s.ms >= 0 && s.ms <= report.totalMs)).toBe(true);
  });

  it("resolves at once for no services", async () => {
    expect(await waitForHealthy([], { host: HOST, deadlineMs: 100 })).toMatchObject({ services: [] });
  });

  it("waits for a service that comes up late", async () => {
    const port = await freePort();
    setTimeout(() => void httpOn((_q, r) => r.writeHead(200).end(), port), 300);
    const report = await waitForHealthy([http("late", port)], {
      host: HOST,
      deadlineMs: 5000,
      intervalMs: 20,
    });
    expect(report.services[0]!.ms).toBeGreaterThanOrEqual(280);
    expect(report.services[0]!.attempts).toBeGreaterThan(3);
  });

  it("keeps polling through 503s until the service answers 200", async () => {
    let n = 0;
    const port = await httpOn((_q, r) => r.writeHead(++n < 4 ? 503 : 200).end());
    const seen: HealthProgress[] = [];
    const report = await waitForHealthy([http("backend", port, "/health?db=1")], {
      host: HOST,
      deadlineMs: 5000,
      intervalMs: 10,
      onProgress: (p) => seen.push(p),
    });
    expect(report.services[0]!.attempts).toBe(4);
    expect(seen.map((p) => [p.detail, p.ok, p.healthy])).toEqual([
      ["503", false, 0],
      ["200", true, 1],
    ]);
  });

  it("fails at the deadline naming each failing service and its last answer", async () => {
    const ok = await httpOn((_q, r) => r.writeHead(200).end());
    const unavailable = await httpOn((_q, r) => r.writeHead(503).end());
    const wrong = await httpOn((_q, r) => r.writeHead(404).end());
    const refused = await freePort();
    const services = [
      http("dashboard", ok),
      http("backend", unavailable, "/health?db=1"),
      http("minio", wrong),
      http("inbucket", refused),
    ];
    const err = await waitForHealthy(services, { host: HOST, deadlineMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HealthTimeoutError);
    const e = err as HealthTimeoutError;
    expect(e.code).toBe("HEALTH_TIMEOUT");
    expect(e.message).toBe(
      [
        "3 of 4 services not healthy within 300 ms:",
        `  - backend (127.0.0.1:${unavailable} GET /health?db=1): last answer 503`,
        `  - minio (127.0.0.1:${wrong} GET /): last answer 404`,
        `  - inbucket (127.0.0.1:${refused} GET /): last answer ECONNREFUSED`,
      ].join("\n"),
    );
    expect(e.failing.map((f) => f.name)).toEqual(["backend", "minio", "inbucket"]);
    expect(e.hint).toMatch(/serial\.log.*hexclave-emulator status/);
  });

  it("states a long deadline in seconds", async () => {
    const err = new HealthTimeoutError(
      240_000,
      [{ name: "backend", endpoint: "x", ok: false, detail: "503" }],
      5,
    );
    expect(err.message.split("\n")[0]).toBe("1 of 5 services not healthy within 240 s:");
  });

  it("says 'no answer yet' for a service whose first request is still pending at the deadline", async () => {
    const hanging = await httpOn(() => {});
    const err = (await waitForHealthy([http("dashboard", hanging)], { host: HOST, deadlineMs: 200 }).catch(
      (e: unknown) => e,
    )) as Error;
    expect(err.message).toContain(`dashboard (127.0.0.1:${hanging} GET /): no answer yet`);
  });

  it("reports a probe timeout as the last answer", async () => {
    const hanging = await httpOn(() => {});
    const err = (await waitForHealthy([http("dashboard", hanging)], {
      host: HOST,
      deadlineMs: 400,
      probeTimeoutMs: 100,
    }).catch((e: unknown) => e)) as Error;
    expect(err.message).toContain("last answer timeout");
  });

  it("waits on the TCP check of mock OAuth too", async () => {
    const port = await freePort();
    setTimeout(
      () =>
        void listen(
          createTcpServer(() => {}),
          port,
        ),
      150,
    );
    const report = await waitForHealthy([{ name: "mockOauth", port, check: { kind: "tcp", settleMs: 25 } }], {
      host: HOST,
      deadlineMs: 5000,
    });
    expect(report.services[0]!.ms).toBeGreaterThanOrEqual(140);
  });

  it("with requireFreshSince, counts only answers to requests started after that time", async () => {
    const port = await httpOn((_q, r) => r.writeHead(200).end());
    const since = Date.now() + 250;
    const report = await waitForHealthy([http("backend", port)], {
      host: HOST,
      deadlineMs: 5000,
      intervalMs: 20,
      requireFreshSince: since,
    });
    expect(Date.now()).toBeGreaterThanOrEqual(since);
    expect(report.services[0]!.ms).toBeGreaterThanOrEqual(240);
    expect(report.services[0]!.attempts).toBeGreaterThan(1);
  });

  it("with requireFreshSince in the past, takes the first healthy answer", async () => {
    const port = await httpOn((_q, r) => r.writeHead(200).end());
    const report = await waitForHealthy([http("backend", port)], {
      host: HOST,
      deadlineMs: 2000,
      requireFreshSince: Date.now(),
    });
    expect(report.services[0]!.attempts).toBe(1);
  });

  it("tells a stale healthy answer apart from a failing one at the deadline", async () => {
    const port = await httpOn((_q, r) => r.writeHead(200).end());
    const err = (await waitForHealthy([http("backend", port)], {
      host: HOST,
      deadlineMs: 150,
      requireFreshSince: Date.now() + 60_000,
    }).catch((e: unknown) => e)) as Error;
    expect(err.message).toContain("last answer 200 (request started before the required restart)");
  });

  it("stops polling and rejects with the signal's reason when aborted", async () => {
    let requests = 0;
    const port = await httpOn((_q, r) => {
      requests++;
      r.writeHead(503).end();
    });
    const ac = new AbortController();
    const reason = new Error("user cancelled");
    setTimeout(() => ac.abort(reason), 100);
    const t0 = performance.now();
    await expect(
      waitForHealthy([http("a", port)], {
        host: HOST,
        deadlineMs: 10_000,
        intervalMs: 10,
        signal: ac.signal,
      }),
    ).rejects.toBe(reason);
    expect(performance.now() - t0).toBeLessThan(1000);
    // A request already on the wire may still land; no new one may start.
    const after = requests;
    await new Promise((r) => setTimeout(r, 200));
    expect(requests).toBeLessThanOrEqual(after + 1);
  });

  it("rejects at once when the signal is already aborted", async () => {
    const ac = new AbortController();
    ac.abort(new Error("gone"));
    await expect(
      waitForHealthy([http("a", 1)], { host: HOST, deadlineMs: 1000, signal: ac.signal }),
    ).rejects.toThrow("gone");
  });
});
