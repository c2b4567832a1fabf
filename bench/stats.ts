/** Summaries of repeated measurements: median with min and max, never a mean. */

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
  /** Every sample, in the order measured (left out beyond 20). */
  samples?: number[];
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n, samples: [] };
  const mid = Math.floor(n / 2);
  const median = n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return {
    median: round(median),
    min: round(sorted[0]!),
    max: round(sorted[n - 1]!),
    n,
    ...(n <= 20 ? { samples: samples.map((x) => round(x)) } : {}),
  };
}

/** Per-key summaries of a list of records (e.g. phase timings of several runs). */
export function summarizeRecords(records: readonly Record<string, number>[]): Record<string, Summary> {
  const keys = new Set(records.flatMap((r) => Object.keys(r)));
  return Object.fromEntries(
    [...keys].map((k) => [k, summarize(records.map((r) => r[k]).filter((v) => v !== undefined))]),
  );
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Milliseconds since some fixed point, sub-millisecond. */
export const now = (): number => performance.now();

/**
 * Runs `fn` until `runs` runs succeeded, with at most two extra attempts;
 * each failure is written to `failures` (a shared, loaded machine makes
 * guests flaky, and a benchmark reports that rather than dying of it).
 */
export async function repeatTolerant<T>(
  runs: number,
  fn: (i: number) => Promise<T>,
  failures: string[],
): Promise<T[]> {
  const out: T[] = [];
  for (let attempt = 0; out.length < runs && attempt < runs + 2; attempt++) {
    try {
      out.push(await fn(out.length));
    } catch (err) {
      failures.push(err instanceof Error ? err.message.split("\n")[0]! : String(err));
    }
  }
  if (out.length === 0) throw new Error(`every attempt failed; first: ${failures[0] ?? "?"}`);
  return out;
}

/** Runs `fn` `runs` times in sequence, collecting what each run returns. */
export async function repeat<T>(runs: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < runs; i++) out.push(await fn(i));
  return out;
}
