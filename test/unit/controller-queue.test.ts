import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { WorkQueue } from "../../src/controller/queue/work-queue.js";
import {
  BucketRateLimiter,
  defaultControllerRateLimiter,
  ItemExponentialFailureRateLimiter,
  MaxOfRateLimiter,
} from "../../src/controller/queue/rate-limit.js";

const noLimit = () => new ItemExponentialFailureRateLimiter<string>(0, 0);

describe("work queue", () => {
  it("hands out an item added twice only once", async () => {
    const q = new WorkQueue<string>({ rateLimiter: noLimit() });
    q.add("ns/a");
    q.add("ns/a");
    q.add("ns/b");
    expect(q.len()).toBe(2);
    expect((await q.get()).item).toBe("ns/a");
    expect((await q.get()).item).toBe("ns/b");
    expect(q.len()).toBe(0);
  });

  it("never hands out an item while it is processed; an add meanwhile queues it once on done", async () => {
    const q = new WorkQueue<string>({ rateLimiter: noLimit() });
    q.add("k");
    const { item } = await q.get();
    expect(q.isProcessing("k")).toBe(true);
    q.add("k");
    q.add("k");
    expect(q.len()).toBe(0);
    q.done(item!);
    expect(q.len()).toBe(1);
    expect((await q.get()).item).toBe("k");
    q.done("k");
    expect(q.len()).toBe(0);
  });

  it("runs one reconcile per key at a time across concurrent workers", async () => {
    const q = new WorkQueue<string>({ rateLimiter: noLimit() });
    const running = new Set<string>();
    let overlaps = 0;
    let runs = 0;
    const worker = async () => {
      for (;;) {
        const { item, shutdown } = await q.get();
        if (shutdown) return;
        if (running.has(item)) overlaps += 1;
        running.add(item);
        await new Promise((r) => setTimeout(r, 2));
        runs += 1;
        running.delete(item);
        q.done(item);
      }
    };
    const workers = [worker(), worker(), worker(), worker()];
    for (let i = 0; i < 50; i++) {
      q.add(`k${i % 3}`);
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 1));
    }
    await new Promise((r) => setTimeout(r, 50));
    q.shutDown();
    await Promise.all(workers);
    expect(overlaps).toBe(0);
    expect(runs).toBeGreaterThanOrEqual(3);
    expect(runs).toBeLessThan(50);
  });

  it("wakes waiting getters on shutdown and ignores adds after it", async () => {
    const q = new WorkQueue<string>({ rateLimiter: noLimit() });
    const waiting = q.get();
    q.shutDown();
    expect(await waiting).toEqual({ item: undefined, shutdown: true });
    q.add("late");
    expect(q.len()).toBe(0);
    expect((await q.get()).shutdown).toBe(true);
  });

  it("reports depth, adds and retries", async () => {
    const depth: number[] = [];
    let added = 0;
    let retried = 0;
    const q = new WorkQueue<string>({
      rateLimiter: noLimit(),
      hooks: { depth: (n) => depth.push(n), added: () => added++, retried: () => retried++ },
    });
    q.add("a");
    q.add("a");
    q.add("b");
    await q.get();
    q.addRateLimited("c");
    expect(added).toBe(3);
    expect(retried).toBe(1);
    expect(depth).toEqual([1, 2, 1, 2]);
  });

  describe("with a clock", () => {
    beforeEach(() => {
      vi.useFakeTimers();
    });
    afterEach(() => {
      vi.useRealTimers();
    });

    it("delays addAfter and keeps the earliest time for a key added twice", () => {
      const q = new WorkQueue<string>({ rateLimiter: noLimit() });
      q.addAfter("k", 1000);
      q.addAfter("k", 300);
      q.addAfter("k", 5000);
      vi.advanceTimersByTime(299);
      expect(q.len()).toBe(0);
      vi.advanceTimersByTime(1);
      expect(q.len()).toBe(1);
      vi.advanceTimersByTime(10_000);
      expect(q.len()).toBe(1);
    });

    it("backs off a failing key exponentially and forgets it on success", async () => {
      const q = new WorkQueue<string>({
        rateLimiter: new ItemExponentialFailureRateLimiter<string>(5, 1000),
      });
      const delays: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = Date.now();
        q.addRateLimited("k");
        while (q.len() === 0) vi.advanceTimersByTime(1);
        delays.push(Date.now() - t0);
        const { item } = await q.get();
        q.done(item!);
      }
      expect(delays).toEqual([5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
      expect(q.numRequeues("k")).toBe(10);
      q.forget("k");
      expect(q.numRequeues("k")).toBe(0);
    });
  });
});

describe("rate limiters", () => {
  it("per-item exponential: independent per key, capped", () => {
    const l = new ItemExponentialFailureRateLimiter<string>(5, 1_000_000);
    expect([l.when("a"), l.when("a"), l.when("a")]).toEqual([5, 10, 20]);
    expect(l.when("b")).toBe(5);
    for (let i = 0; i < 2000; i++) l.when("a");
    expect(l.when("a")).toBe(1_000_000);
    l.forget("a");
    expect(l.when("a")).toBe(5);
  });

  it("token bucket: a burst at once, then qps", () => {
    let now = 0;
    const b = new BucketRateLimiter<string>(10, 3, () => now);
    expect([b.when("x"), b.when("y"), b.when("z")]).toEqual([0, 0, 0]);
    expect(b.when("x")).toBe(100);
    expect(b.when("x")).toBe(200);
    now = 1000;
    expect(b.when("x")).toBe(0);
  });

  it("client-go's default: the max of both", () => {
    let now = 0;
    const l = defaultControllerRateLimiter<string>({ now: () => now, burst: 1, qps: 1 });
    expect(l.when("a")).toBe(5);
    expect(l.when("a")).toBe(1000);
    expect(l.numRequeues("a")).toBe(2);
    const m = new MaxOfRateLimiter<string>(new ItemExponentialFailureRateLimiter(1, 10));
    m.when("q");
    m.forget("q");
    expect(m.numRequeues("q")).toBe(0);
    now += 1;
  });
});
