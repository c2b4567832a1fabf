/** The guest contract's services, and one health request against one of them. */
import { request } from "node:http";
import { connect, isIP } from "node:net";
import { SERVICE_NAMES } from "../config/index.js";
import type { EmulatorConfig, ServiceName } from "../config/index.js";

export type HealthCheck =
  /** GET `path`; healthy when the status is one of `okStatus`. */
  | { kind: "http"; path: string; okStatus: readonly number[] }
  /**
   * TCP connect, and the peer must not close the connection within `settleMs`.
   * QEMU's user-mode hostfwd accepts every connection on the host side while
   * QEMU runs, even with nothing listening in the guest; a guest that refuses
   * shows up as the forwarder closing the connection right after the connect.
   */
  | { kind: "tcp"; settleMs: number };

export interface GuestService {
  /** Stable id (the config's ports key). */
  name: ServiceName | (string & {});
  /** Host port the service is reached on. */
  port: number;
  check: HealthCheck;
}

/** The contract's health request per service. */
export const HEALTH_CHECKS: Readonly<Record<ServiceName, HealthCheck>> = {
  dashboard: { kind: "http", path: "/handler/sign-in", okStatus: [200] },
  backend: { kind: "http", path: "/health?db=1", okStatus: [200] },
  minio: { kind: "http", path: "/minio/health/live", okStatus: [200] },
  inbucket: { kind: "http", path: "/", okStatus: [200] },
  mockOauth: { kind: "tcp", settleMs: 25 },
};

/** Every contract service on its configured host port, in SERVICE_NAMES order. */
export function servicesFor(config: Pick<EmulatorConfig, "ports">): GuestService[] {
  return SERVICE_NAMES.map((name) => ({ name, port: config.ports[name], check: HEALTH_CHECKS[name] }));
}

/** The address to probe for a bind address: the wildcard addresses mean loopback. */
export function probeHost(bindAddress: string): string {
  if (bindAddress === "0.0.0.0") return "127.0.0.1";
  if (bindAddress === "::" || bindAddress === "::0") return "::1";
  return bindAddress;
}

/** "127.0.0.1:26701 GET /health?db=1", "[::1]:26704 TCP connect". */
export function endpointOf(service: GuestService, host: string): string {
  const probed = probeHost(host);
  const h = isIP(probed) === 6 ? `[${probed}]` : probed;
  const what = service.check.kind === "http" ? `GET ${service.check.path}` : "TCP connect";
  return `${h}:${service.port} ${what}`;
}

export interface ProbeOptions {
  /** Address the service's host port listens on (a wildcard means loopback). */
  host: string;
  /** Whole-request budget; "timeout" when it runs out. Default 1500 ms. */
  timeoutMs?: number;
  /** Ends the request early with detail "aborted". */
  signal?: AbortSignal;
}

export interface ProbeResult {
  ok: boolean;
  /** The answer: an HTTP status ("503"), "open", an error code ("ECONNREFUSED"), "timeout", "closed by peer". */
  detail: string;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 1500;

export function probe(service: GuestService, opts: ProbeOptions): Promise<ProbeResult> {
  const host = probeHost(opts.host);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  return service.check.kind === "http"
    ? httpProbe(host, service.port, service.check, timeoutMs, opts.signal)
    : tcpProbe(host, service.port, service.check.settleMs, timeoutMs, opts.signal);
}

function errorDetail(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message ?? String(err);
}

/** Settles once; runs `cleanup` and resolves on the first outcome (answer, error, timeout, abort). */
function once(
  timeoutMs: number,
  signal: AbortSignal | undefined,
  onTimeout: () => ProbeResult,
  cleanup: () => void,
) {
  let resolveFn!: (r: ProbeResult) => void;
  const promise = new Promise<ProbeResult>((r) => (resolveFn = r));
  let settled = false;
  const finish = (r: ProbeResult) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    cleanup();
    resolveFn(r);
  };
  const onAbort = () => finish({ ok: false, detail: "aborted" });
  const timer = setTimeout(() => finish(onTimeout()), timeoutMs);
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  return { promise, finish };
}

function httpProbe(
  host: string,
  port: number,
  check: Extract<HealthCheck, { kind: "http" }>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<ProbeResult> {
  const req = request({
    hostname: host,
    port,
    path: check.path,
    method: "GET",
    agent: false,
    headers: { connection: "close" },
  });
  const { promise, finish } = once(
    timeoutMs,
    signal,
    () => ({ ok: false, detail: "timeout" }),
    () => req.destroy(),
  );
  req.on("error", (err) => finish({ ok: false, detail: errorDetail(err) }));
  req.on("response", (res) => {
    res.on("error", () => {});
    const status = res.statusCode ?? 0;
    res.destroy(); // the status is the answer; the body is not read
    finish({ ok: check.okStatus.includes(status), detail: String(status) });
  });
  req.end();
  return promise;
}

function tcpProbe(
  host: string,
  port: number,
  settleMs: number,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<ProbeResult> {
  const sock = connect({ host, port });
  let connected = false;
  let settle: NodeJS.Timeout | undefined;
  const open: ProbeResult = { ok: true, detail: "open" };
  const { promise, finish } = once(
    timeoutMs,
    signal,
    () => (connected ? open : { ok: false, detail: "timeout" }),
    () => {
      clearTimeout(settle);
      sock.destroy();
    },
  );
  sock.on("error", (err) => finish({ ok: false, detail: errorDetail(err) }));
  sock.on("close", () => finish({ ok: false, detail: connected ? "closed by peer" : "closed" }));
  sock.on("connect", () => {
    connected = true;
    sock.resume(); // let a FIN surface as "end"/"close" even if the peer sent data
    if (settleMs <= 0) finish(open);
    else settle = setTimeout(() => finish(open), settleMs);
  });
  return promise;
}
