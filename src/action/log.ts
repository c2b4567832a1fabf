/**
 * The job log: each top-level engine phase (and each step of the Action's
 * own) folds into a `core.group`; phases nested inside it print as lines in
 * that group. Warnings are annotations. Timings are kept for the summary.
 */
import * as core from "@actions/core";
import type { EngineEvent, EventSink } from "../engine/index.js";

export interface LogOut {
  info(message: string): void;
  warning(message: string): void;
  startGroup(name: string): void;
  endGroup(): void;
}

export const coreLog: LogOut = {
  info: (m) => core.info(m),
  warning: (m) => core.warning(m),
  startGroup: (n) => core.startGroup(n),
  endGroup: () => core.endGroup(),
};

const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

export class PhaseLog {
  /** Every phase's time, the Action's steps and the engine's, in the order they ended. */
  readonly timings: Array<{ phase: string; ms: number; depth: number }> = [];
  private readonly open: number[] = [];

  constructor(private readonly out: LogOut = coreLog) {}

  /** The engine's event sink. */
  readonly sink: EventSink = (e: EngineEvent) => {
    switch (e.kind) {
      case "phase-start":
        if (this.open.length === 0) this.out.startGroup(e.phase);
        else this.out.info(`${e.phase}…`);
        this.open.push(this.timings.push({ phase: e.phase, ms: 0, depth: this.open.length }) - 1);
        return;
      case "phase-end": {
        // Phases the engine runs side by side end in any order: an end closes
        // the open phase of its name, not the one opened last.
        const i = this.open.findLastIndex((at) => this.timings[at]?.phase === e.phase);
        const [at] = i < 0 ? [] : this.open.splice(i, 1);
        const entry = at === undefined ? undefined : this.timings[at];
        if (entry) entry.ms = e.ms;
        this.out.info(`${e.phase}: ${secs(e.ms)}`);
        if (this.open.length === 0) this.out.endGroup();
        return;
      }
      case "info":
        this.out.info(e.message);
        return;
      case "warn":
        this.out.warning(e.message);
        return;
    }
  };

  /** One of the Action's own steps, folded and timed like an engine phase. */
  async step<T>(phase: string, fn: () => Promise<T>): Promise<T> {
    this.sink({ kind: "phase-start", phase });
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.sink({ kind: "phase-end", phase, ms: Math.round(performance.now() - t0) });
    }
  }

  info(message: string): void {
    this.out.info(message);
  }

  warn(message: string): void {
    this.out.warning(message);
  }
}
