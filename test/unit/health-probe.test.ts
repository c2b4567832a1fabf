import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { once } from "node:events";
import { connect, createServer as createTcpServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { checkOnce, endpointOf, probe, probeHost, servicesFor } from "../../src/engine/guest/health.js";
import type { GuestService } from "../../src/engine/guest/health.js";

const HOST = "127.0.0.1";
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
const httpOn = (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
  listen(createServer(handler));
const status = (code: number) => httpOn((_req, res) => res.writeHead(code).end("x"));
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
const http = (port: number, path = "/", okStatus = [200]): GuestService => ({
  name: "svc",
  port,
  check: { kind: "http", path, okStatus },
});
const tcp = (port: number, settleMs = 25): GuestService => ({
  name: "oauth",
  port,
  check: { kind: "tcp", settleMs },
});

afterEach(async () => {
  for (const s of held.splice(0)) s.destroy();
  for (const { server, sockets } of open.splice(0)) {
    sockets.forEach((s) => s.destroy());
    await new Promise((r) => server.close(r));
  }
});

describe("a single health probe", () => {
  it("is healthy when the contract path answers 200, without keep-alive", async () => {
    const seen: Array<{ url?: string; connection?: string }> = [];
    const port = await httpOn((req, res) => {
      seen.push({ url: req.url, connection: req.headers.connection });
      res.writeHead(200).end();
    });
    expect(await probe(http(port, "/health?db=1"), { host: HOST })).toEqual({ ok: true, detail: "200" });
    expect(seen).toEqual([{ url: "/health?db=1", connection: "close" }]);
  });

  it("is unhealthy on a status it does not accept, and reports the status", async () => {
    const port = await status(503);
    expect(await probe(http(port), { host: HOST })).toEqual({ ok: false, detail: "503" });
  });

  it("accepts any status in the service's list", async () => {
    const port = await status(204);
    expect((await probe(http(port, "/", [200, 204]), { host: HOST })).ok).toBe(true);
  });

  it("reports ECONNREFUSED when nothing listens", async () => {
    expect(await probe(http(await refusedPort()), { host: HOST })).toEqual({
      ok: false,
      detail: "ECONNREFUSED",
    });
  });

  it("reports ECONNRESET when the server drops the connection without answering", async () => {
    const port = await httpOn((req) => req.socket.destroy());
    expect(await probe(http(port), { host: HOST })).toEqual({ ok: false, detail: "ECONNRESET" });
  });

  it("gives up after its timeout when the server never answers", async () => {
    const port = await httpOn(() => {});
    expect(await probe(http(port), { host: HOST, timeoutMs: 150 })).toEqual({ ok: false, detail: "timeout" });
  });

  it("does not wait for a body that never ends", async () => {
    const port = await httpOn((_req, res) => {
      res.writeHead(200);
      res.write("streaming");
    });
    expect(await probe(http(port), { host: HOST, timeoutMs: 1000 })).toEqual({ ok: true, detail: "200" });
  });

  it("ends early with 'aborted' when its signal aborts", async () => {
    let arrived!: () => void;
    const requested = new Promise<void>((r) => (arrived = r));
    const port = await httpOn(() => arrived());
    const ac = new AbortController();
    const result = probe(http(port), { host: HOST, timeoutMs: 60_000, signal: ac.signal });
    await requested;
    ac.abort();
    expect(await result).toEqual({ ok: false, detail: "aborted" });
  });

  it("probes loopback when the bind address is a wildcard", async () => {
    const port = await status(200);
    expect((await probe(http(port), { host: "0.0.0.0" })).ok).toBe(true);
    expect(probeHost("::")).toBe("::1");
    expect(probeHost("10.0.0.5")).toBe("10.0.0.5");
  });

  it("TCP: is healthy when the port accepts and keeps the connection", async () => {
    const port = await listen(createTcpServer(() => {}));
    expect(await probe(tcp(port), { host: HOST })).toEqual({ ok: true, detail: "open" });
  });

  it("TCP: is unhealthy when the peer closes right after accepting (QEMU hostfwd with nothing in the guest)", async () => {
    const port = await listen(createTcpServer((s) => s.end()));
    expect(await probe(tcp(port), { host: HOST })).toEqual({ ok: false, detail: "closed by peer" });
    const resetting = await listen(createTcpServer((s) => s.resetAndDestroy()));
    expect(await probe(tcp(resetting), { host: HOST })).toEqual({ ok: false, detail: "ECONNRESET" });
  });

  it("TCP: reports ECONNREFUSED when nothing listens", async () => {
    expect(await probe(tcp(await refusedPort()), { host: HOST })).toEqual({
      ok: false,
      detail: "ECONNREFUSED",
    });
  });
});

describe("the contract's services", () => {
  const ports = { dashboard: 1, backend: 2, minio: 3, inbucket: 4, mockOauth: 5 };

  it("checks each service at its host port with the contract's request", () => {
    expect(servicesFor({ ports }).map((s) => endpointOf(s, HOST))).toEqual([
      "127.0.0.1:1 GET /handler/sign-in",
      "127.0.0.1:2 GET /health?db=1",
      "127.0.0.1:3 GET /minio/health/live",
      "127.0.0.1:4 GET /",
      "127.0.0.1:5 TCP connect",
    ]);
    expect(endpointOf(servicesFor({ ports })[1]!, "::1")).toBe("[::1]:2 GET /health?db=1");
  });

  it("checkOnce reports each service's state in one pass", async () => {
    const up = await status(200);
    const down = await refusedPort();
    const oauth = await listen(createTcpServer(() => {}));
    const services = servicesFor({
      ports: { dashboard: up, backend: down, minio: up, inbucket: up, mockOauth: oauth },
    });
    const result = await checkOnce(services, HOST);
    expect(result.map((r) => [r.name, r.ok, r.detail])).toEqual([
      ["dashboard", true, "200"],
      ["backend", false, "ECONNREFUSED"],
      ["minio", true, "200"],
      ["inbucket", true, "200"],
      ["mockOauth", true, "open"],
    ]);
    expect(result[1]!.endpoint).toBe(`127.0.0.1:${down} GET /health?db=1`);
  });
});
