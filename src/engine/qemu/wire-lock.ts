import { realClock, type Clock } from "./clock.js";

/**
 * A FIFO lock whose waiters give up at a deadline: the guest agent puts one
 * call at a time on the wire, and a call's deadline covers its wait here too.
 */
export class WireLock {
  private locked = false;
  private readonly queue: { grant: () => void; fail: (err: Error) => void }[] = [];

  constructor(private readonly clock: Clock = realClock) {}

  /** Resolves with a release function once the lock is ours; rejects with `onTimeout()` at `deadline` (on the clock). */
  acquire(deadline: number, onTimeout: () => Error): Promise<() => void> {
    return new Promise((resolve, reject) => {
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        const next = this.queue.shift();
        if (next) next.grant();
        else this.locked = false;
      };
      if (!this.locked) {
        this.locked = true;
        resolve(release);
        return;
      }
      const entry = {
        grant: () => {
          cancelTimer();
          resolve(release);
        },
        fail: (err: Error) => {
          cancelTimer();
          const i = this.queue.indexOf(entry);
          if (i >= 0) this.queue.splice(i, 1);
          reject(err);
        },
      };
      const cancelTimer = this.clock.after(deadline - this.clock.now(), () => entry.fail(onTimeout()));
      this.queue.push(entry);
    });
  }

  /** Rejects every waiter (the connection closed). */
  failAll(err: Error): void {
    for (const entry of [...this.queue]) entry.fail(err);
  }
}
