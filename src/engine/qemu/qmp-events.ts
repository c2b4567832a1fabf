import { EngineError } from "../errors.js";
import { realClock, type Clock } from "./clock.js";
import { QmpTimeoutError } from "./protocol-errors.js";
import type { QmpEvent } from "./qmp-types.js";

export type QmpEventHandler = (event: QmpEvent) => void;

interface Waiter {
  name: string;
  offer: (event: QmpEvent) => void;
  fail: (err: Error) => void;
}

/**
 * Event subscriptions of one QMP connection. Events are dispatched
 * synchronously in arrival order, so a waiter registered before a command was
 * sent sees an event that arrives before that command's reply.
 */
export class QmpEventHub {
  private readonly handlers = new Map<string, Set<QmpEventHandler>>();
  private readonly waiters = new Set<Waiter>();
  private closedWith: Error | undefined;

  constructor(
    private readonly warn: (message: string) => void,
    private readonly defaultTimeoutMs: number,
    private readonly clock: Clock = realClock,
  ) {}

  on(eventName: string, handler: QmpEventHandler): void {
    const set = this.handlers.get(eventName) ?? new Set();
    set.add(handler);
    this.handlers.set(eventName, set);
  }

  off(eventName: string, handler: QmpEventHandler): void {
    this.handlers.get(eventName)?.delete(handler);
  }

  waitFor<D>(
    eventName: string,
    predicate: ((event: QmpEvent<D>) => boolean) | undefined,
    options: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<QmpEvent<D>> {
    const { signal } = options;
    const promise = new Promise<QmpEvent<D>>((resolve, reject) => {
      if (this.closedWith) return reject(this.closedWith);
      if (signal?.aborted) return reject(abortReason(signal));
      const ms = options.timeoutMs ?? this.defaultTimeoutMs;
      const done = () => {
        cancelTimer();
        this.waiters.delete(waiter);
        signal?.removeEventListener("abort", onAbort);
      };
      const waiter: Waiter = {
        name: eventName,
        fail: (err) => (done(), reject(err)),
        offer: (event) => {
          const typed = event as QmpEvent<D>;
          let ok: boolean;
          try {
            ok = predicate ? predicate(typed) : true;
          } catch (err) {
            return waiter.fail(err instanceof Error ? err : new Error(String(err)));
          }
          if (!ok) return;
          done();
          resolve(typed);
        },
      };
      const cancelTimer = this.clock.after(ms, () =>
        waiter.fail(new QmpTimeoutError(`waiting for QMP event ${eventName}`, ms)),
      );
      const onAbort = () => waiter.fail(abortReason(signal as AbortSignal));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.add(waiter);
    });
    // A caller whose command failed may drop this promise: that is no unhandled rejection.
    promise.catch(() => undefined);
    return promise;
  }

  dispatch(event: QmpEvent): void {
    for (const handler of [...(this.handlers.get(event.event) ?? [])]) {
      try {
        handler(event);
      } catch (err) {
        this.warn(`a handler of QMP event ${event.event} threw: ${(err as Error).message}`);
      }
    }
    for (const waiter of [...this.waiters]) if (waiter.name === event.event) waiter.offer(event);
  }

  /** Rejects every waiter, and every later waitFor(), with `err`. */
  close(err: Error): void {
    this.closedWith = err;
    for (const waiter of [...this.waiters]) waiter.fail(err);
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new EngineError("ABORTED", "waiting for a QMP event was aborted");
}
