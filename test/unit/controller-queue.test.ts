import { describe, expect, it } from "vitest";
import { WorkQueue } from "../../src/controller/queue/work-queue.js";
import {
  BucketRateLimiter,
  defaultControllerRateLimiter,
  ItemExponentialFailureRateLimiter,
  MaxOfRateLimiter,
} from "../../src/controller/queue/rate-limit.js";
import { FakeClock } from "../support/controller-clock.js";

const noLimit = () => new ItemExponentialFailureRateLimiter<string>(0, 0);

/** A promise with its resolve function. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

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

  it("runs one reconcile per key at a time across concurrent workers, folding the adds made meanwhile", async () => {
    const q = new WorkQueue<string>({ rateLimiter: noLimit() });
    const running = new Set<string>();
    const runs: string[] = [];
    let overlaps = 0;
    // Each run is held until the test releases it; `started` hands the test every run as it begins.
    const started: { item: string; release: () => void }[] = [];
    let onStart = deferred();
    const nextStarts = async (n: number) => {
      while (started.length < n) {
        await onStart.promise;
        onStart = deferred();
      }
      return started.splice(0, n);
    };
    const worker = async () => {
      for (;;) {
        const { item, shutdown } = await q.get();
        if (shutdown) return;
        if (running.has(item)) overlaps += 1;
        running.add(item);
        const hold = deferred();
        started.push({ item, release: hold.resolve });
        onStart.resolve();
        await hold.promise;
        runs.push(item);
        running.delete(item);
        q.done(item);
      }
    };
    const workers = [worker(), worker(), worker(), worker()];
    for (let i = 0; i < 3; i++) q.add(`k${i}`);
    const first = await nextStarts(3);
    expect(first.map((s) => s.item).sort()).toEqual(["k0", "k1", "k2"]);
    // 50 adds of the three keys being processed: none is handed to the idle fourth worker.
    for (let i = 0; i < 50; i++) q.add(`k${i % 3}`);
    expect(q.len()).toBe(0);
    for (const s of first) s.release();
    // Each key runs exactly once more: the adds made while it ran fold into one.
    const second = await nextStarts(3);
    expect(second.map((s) => s.item).sort()).toEqual(["k0", "k1", "k2"]);
    expect(q.len()).toBe(0);
    for (const s of second) s.release();
    q.shutDown();
    await Promise.all(workers);
    expect(overlaps).toBe(0);
    expect(runs.sort()).toEqual(["k0", "k0", "k1", "k1", "k2", "k2"]);
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

  describe("on a fake clock", () => {
    it("delays addAfter and keeps the earliest time for a key added twice", () => {
      const clock = new FakeClock();
      const q = new WorkQueue<string>({ rateLimiter: noLimit(), clock });
      q.addAfter("k", 1000);
      q.addAfter("k", 300);
      q.addAfter("k", 5000);
      expect(clock.pending()).toBe(1);
      clock.advance(299);
      expect(q.len()).toBe(0);
      clock.advance(1);
      expect(q.len()).toBe(1);
      clock.advance(10_000);
      expect(q.len()).toBe(1);
      expect(clock.pending()).toBe(0);
    });

    it("drops its delayed adds on shutdown", () => {
      const clock = new FakeClock();
      const q = new WorkQueue<string>({ rateLimiter: noLimit(), clock });
      q.addAfter("k", 100);
      q.shutDown();
      expect(clock.pending()).toBe(0);
      clock.advance(1000);
      expect(q.len()).toBe(0);
    });

    it("backs off a failing key exponentially and forgets it on success", async () => {
      const clock = new FakeClock();
      const q = new WorkQueue<string>({
        rateLimiter: new ItemExponentialFailureRateLimiter<string>(5, 1000),
        clock,
      });
      const delays: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = clock.now();
        q.addRateLimited("k");
        while (q.len() === 0) clock.advance(1);
        delays.push(clock.now() - t0);
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

  it("the queue's default limiter takes its time from the queue's clock", () => {
    const clock = new FakeClock();
    const q = new WorkQueue<string>({ clock });
    // The default bucket allows a burst of 100 retries, then 10 per second of the queue's clock.
    for (let i = 0; i < 100; i++) q.addRateLimited(`k${i}`);
    q.addRateLimited("over");
    clock.advance(99);
    expect(q.len()).toBe(100);
    clock.advance(1);
    expect(q.len()).toBe(101);
  });
});
