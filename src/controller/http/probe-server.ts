/**
 * The HTTP endpoints Kubernetes and Prometheus poll: /healthz (liveness),
 * /readyz (readiness), /metrics, plus any extra JSON routes (the agent's
 * /status). Checks answer 200 "ok" or 503 with the reason.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export type Check = () => string | undefined | Promise<string | undefined>;

export interface ProbeServerOptions {
  host: string;
  port: number;
  /** Returns undefined when healthy, else why not. */
  healthz: Check;
  readyz: Check;
  /** The exposition text and its content type (prom-client's registry). */
  metrics?: { render: () => Promise<string> | string; contentType: string };
  json?: Record<string, () => unknown>;
}

export interface ProbeServer {
  port: number;
  close(): Promise<void>;
}

export async function startProbeServer(opts: ProbeServerOptions): Promise<ProbeServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const check =
      path === "/healthz" || path === "/livez" ? opts.healthz : path === "/readyz" ? opts.readyz : undefined;
    const reply = (code: number, type: string, body: string) => {
      res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD")
      return reply(405, "text/plain", "method not allowed\n");
    if (check) {
      Promise.resolve()
        .then(check)
        .then(
          (problem) =>
            problem === undefined
              ? reply(200, "text/plain", "ok\n")
              : reply(503, "text/plain", `${problem}\n`),
          (err: unknown) => reply(503, "text/plain", `${(err as Error).message}\n`),
        );
      return;
    }
    const metrics = opts.metrics;
    if (path === "/metrics" && metrics) {
      Promise.resolve()
        .then(() => metrics.render())
        .then(
          (text) => reply(200, metrics.contentType, text),
          (err: unknown) => reply(500, "text/plain", `${(err as Error).message}\n`),
        );
      return;
    }
    const route = path ? opts.json?.[path] : undefined;
    if (route) return reply(200, "application/json", `${JSON.stringify(route())}\n`);
    reply(404, "text/plain", "not found\n");
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
