/** Waiting for the guest's services: poll every service concurrently until all are healthy. */
import { TimeoutError } from "../errors.js";
import { realClock, sleep, type Clock } from "../qemu/clock.js";
import { DEFAULT_PROBE_TIMEOUT_MS, endpointOf, probe } from "./services.js";
import type { GuestService } from "./services.js";

export { HEALTH_CHECKS, endpointOf, probe, probeHost, servicesFor } from "./services.js";
export type { GuestService, HealthCheck, ProbeOptions, ProbeResult } from "./services.js";
export type { Clock } from "../qemu/clock.js";

export interface ServiceStatus {
  name: string;
  /** "127.0.0.1:26701 GET /health?db=1" */
  endpoint: string;
  ok: boolean;
  detail: string;
}

export interface HealthProgress extends ServiceStatus {
  elapsedMs: number;
  healthy: number;
  total: number;
}

export interface WaitForHealthyOptions {
  host: string;
  /** How long to wait, in ms from the call. */
  deadlineMs: number;
  /** Gap between the starts of two probes of one service. Default 50 ms. */
  intervalMs?: number;
  /** Budget of one probe. Default 1500 ms. */
  probeTimeoutMs?: number;
  /** Aborting rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called when a service's answer changes or it becomes healthy. */
  onProgress?: (p: HealthProgress) => void;
  /**
   * Epoch ms (Date.now()): a healthy answer counts only for a request started at
   * or after it, e.g. once a secrets rotation has restarted the services.
   */
  requireFreshSince?: number;
  /** Replaces the timeout error's default hint (e.g. to name the serial.log path). */
  hint?: string;
  /** The deadline, the poll interval, each probe's budget and the times reported run on it. Default: the real clock. */
  clock?: Clock;
}

export interface ServiceTiming {
  name: string;
  /** From the call to the first (fresh) healthy answer. */
  ms: number;
  attempts: number;
}

export interface HealthReport {
  totalMs: number;
  services: ServiceTiming[];
}

export class HealthTimeoutError extends TimeoutError {
  readonly failing: readonly ServiceStatus[];
  readonly timeoutMs: number;
  constructor(timeoutMs: number, failing: readonly ServiceStatus[], total: number, hint?: string) {
    const lines = failing.map(
      (s) => `  - ${s.name} (${s.endpoint}): ${s.detail ? `last answer ${s.detail}` : "no answer yet"}`,
    );
    super(
      "HEALTH_TIMEOUT",
      `${failing.length} of ${total} services not healthy within ${formatDuration(timeoutMs)}:\n${lines.join("\n")}`,
      {
        hint:
          hint ??
          "look at serial.log in the run directory for the guest's own logs, or run `hexclave-emulator status`",
      },
    );
    this.failing = failing;
    this.timeoutMs = timeoutMs;
  }
}

function formatDuration(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** One probe of every service, concurrently (for `status`). */
export function checkOnce(
  services: readonly GuestService[],
  host: string,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<ServiceStatus[]> {
  return Promise.all(
    services.map(async (s) => ({
      name: s.name,
      endpoint: endpointOf(s, host),
      ...(await probe(s, { host, ...opts })),
    })),
  );
}

/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Resolves once every service is healthy; rejects with HealthTimeoutError at the deadline. */
export async function waitForHealthy(
  services: readonly GuestService[],
  opts: WaitForHealthyOptions,
): Promise<HealthReport> {
  const { host, deadlineMs, intervalMs = 50, signal, onProgress, requireFreshSince } = opts;
  const probeTimeoutMs = opts.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const clock = opts.clock ?? realClock;
  signal?.throwIfAborted();
  const started = clock.now();
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  const cancelDeadline = clock.after(deadlineMs, () => stop.abort());
  const states = services.map((s) => ({
    service: s,
    endpoint: endpointOf(s, host),
    detail: "",
    attempts: 0,
    ms: -1,
  }));
  let healthy = 0;

  /** One probe, its budget on `clock` (probe()'s own timer is set beyond it). */
  const attempt = async (service: GuestService) => {
    const ac = new AbortController();
    const endAttempt = () => ac.abort();
    stop.signal.addEventListener("abort", endAttempt, { once: true });
    let timedOut = false;
    const cancelBudget = clock.after(probeTimeoutMs, () => {
      timedOut = true;
      ac.abort();
    });
    try {
      const r = await probe(service, { host, timeoutMs: MAX_TIMER_MS, signal: ac.signal });
      return timedOut && r.detail === "aborted" ? { ok: false, detail: "timeout" } : r;
    } finally {
      cancelBudget();
      stop.signal.removeEventListener("abort", endAttempt);
    }
  };

  const poll = async (st: (typeof states)[number]) => {
    while (!stop.signal.aborted) {
      const startedAt = clock.now();
      const fresh = requireFreshSince === undefined || clock.epochMs() >= requireFreshSince;
      const r = await attempt(st.service);
      if (stop.signal.aborted) return;
      st.attempts++;
      const ok = r.ok && fresh;
      const detail = r.ok && !fresh ? `${r.detail} (request started before the required restart)` : r.detail;
      const changed = detail !== st.detail;
      st.detail = detail;
      if (ok) {
        st.ms = clock.now() - started;
        healthy++;
      }
      if (changed || ok) {
        onProgress?.({
          name: st.service.name,
          endpoint: st.endpoint,
          ok,
          detail,
          elapsedMs: clock.now() - started,
          healthy,
          total: states.length,
        });
      }
      if (ok) return;
      const rest = startedAt + intervalMs - clock.now();
      if (rest > 0) await sleep(clock, rest, stop.signal);
    }
  };

  try {
    await Promise.all(states.map(poll));
  } finally {
    cancelDeadline();
    signal?.removeEventListener("abort", onAbort);
    stop.abort();
  }
  if (states.every((s) => s.ms >= 0)) {
    return {
      totalMs: clock.now() - started,
      services: states.map((s) => ({ name: s.service.name, ms: s.ms, attempts: s.attempts })),
    };
  }
  if (signal?.aborted) throw signal.reason;
  const failing = states
    .filter((s) => s.ms < 0)
    .map((s) => ({ name: s.service.name, endpoint: s.endpoint, ok: false, detail: s.detail }));
  throw new HealthTimeoutError(deadlineMs, failing, states.length, opts.hint);
}
