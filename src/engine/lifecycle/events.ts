/**
 * Every phase of a lifecycle emits typed events: the CLI prints them, the
 * Action folds them into log groups and the job summary, the Kubernetes
 * agent logs them (its report's timings reach the Emulator's status).
 * Phase timings and skipped optional steps are collected here too.
 */
export type EngineEvent =
  | { kind: "phase-start"; phase: string }
  | { kind: "phase-end"; phase: string; ms: number }
  | { kind: "info"; message: string }
  | { kind: "warn"; message: string };

export type EventSink = (event: EngineEvent) => void;

export const silent: EventSink = () => undefined;

/** A step beyond the guest contract that this image did not offer: skipped or degraded, never fatal. */
export interface SkippedStep {
  step: string;
  reason: string;
}

export class Phases {
  readonly timings: Record<string, number> = {};
  readonly skipped: SkippedStep[] = [];
  constructor(private readonly sink: EventSink) {}

  async run<T>(phase: string, fn: () => Promise<T>): Promise<T> {
    this.sink({ kind: "phase-start", phase });
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      const ms = Math.round(performance.now() - t0);
      this.timings[phase] = (this.timings[phase] ?? 0) + ms;
      this.sink({ kind: "phase-end", phase, ms });
    }
  }

  info(message: string): void {
    this.sink({ kind: "info", message });
  }

  warn(message: string): void {
    this.sink({ kind: "warn", message });
  }

  /** Records an optional step the guest did not support, and warns. */
  skip(step: string, reason: string): void {
    this.skipped.push({ step, reason });
    this.warn(`${step}: ${reason}`);
  }
}
