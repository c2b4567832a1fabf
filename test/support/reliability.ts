/**
 * Figures of the reliability suite: every injected fault (and whether the
 * engine survived it), every bad input tried, every leak check. Each test file
 * collects its own and writes reliability/results/<file>.json when it ends;
 * `npm run reliability-report` adds them up.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll } from "vitest";
import { REPO_ROOT } from "./tools.js";

export const RESULTS_DIR =
  process.env.HEXCLAVE_RELIABILITY_RESULTS ?? join(REPO_ROOT, "reliability", "results");

export interface FaultFigure {
  name: string;
  survived: boolean;
  ms: number;
  detail?: string;
}

export interface BadInputFigure {
  /** What was fed garbage: "env var", "override", "QMP peer", "ISO writer", … */
  target: string;
  tried: number;
  /** Rejected cleanly, with the information asked for. */
  rejected: number;
}

export interface LeakFigure {
  what: string;
  leaks: number;
  detail: string;
}

export interface FileFigures {
  file: string;
  finishedAt: string;
  faults: FaultFigure[];
  badInputs: BadInputFigure[];
  leakChecks: LeakFigure[];
}

/** Collects this file's figures; writes them after the file's last test. */
export function reliabilityFigures(file: string) {
  const figures: FileFigures = { file, finishedAt: "", faults: [], badInputs: [], leakChecks: [] };
  afterAll(() => {
    figures.finishedAt = new Date().toISOString();
    mkdirSync(RESULTS_DIR, { recursive: true });
    const path = join(RESULTS_DIR, `${file}.json`);
    writeFileSync(`${path}.tmp`, JSON.stringify(figures, null, 2) + "\n");
    renameSync(`${path}.tmp`, path);
  });
  return {
    figures,
    /** Runs `body` as one injected fault: survived when it completes (its expectations held). */
    async fault(name: string, body: () => Promise<string | void>): Promise<void> {
      const t0 = performance.now();
      try {
        const detail = await body();
        figures.faults.push({
          name,
          survived: true,
          ms: Math.round(performance.now() - t0),
          ...(detail ? { detail } : {}),
        });
      } catch (err) {
        figures.faults.push({
          name,
          survived: false,
          ms: Math.round(performance.now() - t0),
          detail: (err as Error).message?.slice(0, 300),
        });
        throw err;
      }
    },
    badInputs(target: string, tried: number, rejected: number): void {
      const found = figures.badInputs.find((b) => b.target === target);
      if (found) {
        found.tried += tried;
        found.rejected += rejected;
      } else figures.badInputs.push({ target, tried, rejected });
    },
    leak(what: string, leaks: number, detail: string): void {
      figures.leakChecks.push({ what, leaks, detail });
    },
  };
}
