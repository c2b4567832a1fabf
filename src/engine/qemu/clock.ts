/**
 * Time as a dependency of the QMP and guest agent clients and of the health
 * wait: they read the time and set their timers through a Clock, so a test
 * can move time by hand instead of sleeping. The default is the real clock.
 */
export interface Clock {
  /** Monotonic milliseconds (performance.now()): deadlines and elapsed times. */
  now(): number;
  /** Milliseconds since the epoch (Date.now()). */
  epochMs(): number;
  /** Runs `fn` once after `ms` (at once for ms <= 0, on a later turn); returns a function that cancels it. */
  after(ms: number, fn: () => void): () => void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  epochMs: () => Date.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(t);
  },
};

/** Resolves after `ms` on `clock`, or as soon as `signal` aborts; never rejects. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      cancel();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const cancel = clock.after(ms, done);
    signal?.addEventListener("abort", done, { once: true });
  });
}
