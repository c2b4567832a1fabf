/**
 * A rate-limited delaying work queue with client-go's semantics:
 * - an item added while it waits is not queued twice (dirty set);
 * - an item being processed is not handed out again: added meanwhile, it is
 *   queued once when `done` is called (processing set);
 * - `addAfter` delays an item, keeping the earliest time when added twice;
 * - `addRateLimited` delays by the rate limiter's `when`, `forget` resets it;
 * - `shutDown` wakes every waiting `get` with `shutdown: true`.
 * Items are compared with `===` (keys are `namespace/name` strings). Delays
 * run on the injected Clock (the wall clock by default).
 */
import { realClock, type Clock, type TimerHandle } from "../clock.js";
import { defaultControllerRateLimiter, type RateLimiter } from "./rate-limit.js";

export interface QueueHooks {
  /** Called with the number of waiting items after every change. */
  depth?(n: number): void;
  /** Called for every add that queued an item (not for a de-duplicated one). */
  added?(): void;
  /** Called for every rate-limited retry. */
  retried?(): void;
}

export type GetResult<T> = { item: T; shutdown: false } | { item: undefined; shutdown: true };

export class WorkQueue<T> {
  private readonly queue: T[] = [];
  private readonly dirty = new Set<T>();
  private readonly processing = new Set<T>();
  private readonly waiting = new Map<T, { at: number; timer: TimerHandle }>();
  private readonly getters: ((r: GetResult<T>) => void)[] = [];
  private shuttingDown = false;
  private readonly limiter: RateLimiter<T>;
  private readonly hooks: QueueHooks;
  private readonly clock: Clock;

  constructor(opts: { rateLimiter?: RateLimiter<T>; hooks?: QueueHooks; clock?: Clock } = {}) {
    this.clock = opts.clock ?? realClock;
    const clock = this.clock;
    this.limiter = opts.rateLimiter ?? defaultControllerRateLimiter<T>({ now: () => clock.now() });
    this.hooks = opts.hooks ?? {};
  }

  add(item: T): void {
    if (this.shuttingDown || this.dirty.has(item)) return;
    this.dirty.add(item);
    if (this.processing.has(item)) return;
    this.push(item);
  }

  addAfter(item: T, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(item);
      return;
    }
    const at = this.clock.now() + ms;
    const pending = this.waiting.get(item);
    if (pending && pending.at <= at) return;
    if (pending) this.clock.clearTimeout(pending.timer);
    const timer = this.clock.setTimeout(() => {
      this.waiting.delete(item);
      this.add(item);
    }, ms);
    this.waiting.set(item, { at, timer });
  }

  addRateLimited(item: T): void {
    this.hooks.retried?.();
    this.addAfter(item, this.limiter.when(item));
  }

  forget(item: T): void {
    this.limiter.forget(item);
  }

  numRequeues(item: T): number {
    return this.limiter.numRequeues(item);
  }

  /** The next item, marked as processing until `done(item)`. Waits while the queue is empty. */
  get(): Promise<GetResult<T>> {
    const item = this.queue.shift();
    if (item !== undefined) {
      this.dirty.delete(item);
      this.processing.add(item);
      this.hooks.depth?.(this.queue.length);
      return Promise.resolve({ item, shutdown: false });
    }
    if (this.shuttingDown) return Promise.resolve({ item: undefined, shutdown: true });
    return new Promise((resolve) => this.getters.push(resolve));
  }

  done(item: T): void {
    this.processing.delete(item);
    if (this.dirty.has(item) && !this.shuttingDown) this.push(item);
  }

  len(): number {
    return this.queue.length;
  }

  isProcessing(item: T): boolean {
    return this.processing.has(item);
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.waiting.values()) this.clock.clearTimeout(timer);
    this.waiting.clear();
    for (const g of this.getters.splice(0)) g({ item: undefined, shutdown: true });
  }

  private push(item: T): void {
    this.hooks.added?.();
    const getter = this.getters.shift();
    if (getter) {
      this.dirty.delete(item);
      this.processing.add(item);
      getter({ item, shutdown: false });
    } else {
      this.queue.push(item);
    }
    this.hooks.depth?.(this.queue.length);
  }
}
