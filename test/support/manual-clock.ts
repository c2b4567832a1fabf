import type { Clock } from "../../src/engine/qemu/clock.js";

/** The wall-clock time a ManualClock starts at (epochMs() at now() = 0). */
export const MANUAL_EPOCH = 1_700_000_000_000;

/**
 * A clock that moves only when the test says so. A test moves it once the
 * code is waiting on it (a timer is pending at the expected time) or once the
 * answer it waits for has come in, so the times the code reports are exact.
 */
export class ManualClock implements Clock {
  private t = 0;
  private timers: { due: number; fn: () => void }[] = [];
  private watchers: (() => void)[] = [];
  now(): number {
    return this.t;
  }
  epochMs(): number {
    return MANUAL_EPOCH + this.t;
  }
  after(ms: number, fn: () => void): () => void {
    const timer = { due: this.t + Math.max(0, ms), fn };
    this.timers.push(timer);
    for (const w of this.watchers.splice(0)) w();
    if (ms <= 0) setImmediate(() => this.fire(timer));
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }
  /** Due times of the pending timers, soonest first. */
  get pending(): number[] {
    return this.timers.map((x) => x.due).sort((a, b) => a - b);
  }
  /** Resolves once a timer due at `due` is pending. */
  async timerAt(due: number): Promise<void> {
    while (!this.timers.some((x) => x.due === due)) await new Promise<void>((r) => this.watchers.push(r));
  }
  /** Moves to `t`, running every timer due by then in order. */
  advanceTo(t: number): void {
    for (;;) {
      const next = this.timers.filter((x) => x.due <= t).sort((a, b) => a.due - b.due)[0];
      if (!next) break;
      this.t = next.due;
      this.fire(next);
    }
    this.t = t;
  }
  /** advanceTo(due) once a timer due then is pending. */
  async step(due: number): Promise<void> {
    await this.timerAt(due);
    this.advanceTo(due);
  }
  private fire(timer: { due: number; fn: () => void }): void {
    if (!this.timers.includes(timer)) return;
    this.timers = this.timers.filter((x) => x !== timer);
    timer.fn();
  }
}
