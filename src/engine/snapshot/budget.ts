/**
 * The store's size budget, as a user writes it: a size ("20GiB", "500MB",
 * "20Gi" as Kubernetes writes it, plain bytes), a share of the file system
 * the store lives on ("50%"), or "unlimited". Pure: the file system's size
 * is passed in.
 */
export type StoreBudget =
  { kind: "unlimited" } | { kind: "bytes"; bytes: number } | { kind: "fraction"; fraction: number };

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  k: 1024,
  ki: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  ti: 1024 ** 4,
  tib: 1024 ** 4,
};

export const STORE_BUDGET_RULE =
  'must be a size such as 20GiB, 500MiB or 20Gi, a share of the store\'s file system such as 50%, or "unlimited"';

/** The budget `raw` describes, or undefined when it describes none. */
export function parseStoreBudget(raw: string): StoreBudget | undefined {
  const s = raw.trim().toLowerCase();
  if (s === "unlimited" || s === "none") return { kind: "unlimited" };
  const pct = /^(\d{1,3}(?:\.\d+)?)%$/.exec(s);
  if (pct?.[1] !== undefined) {
    const p = Number(pct[1]);
    return p > 0 && p <= 100 ? { kind: "fraction", fraction: p / 100 } : undefined;
  }
  const size = /^(\d{1,16}(?:\.\d+)?)\s*([a-z]*)$/.exec(s);
  const unit = size?.[2] === undefined ? undefined : UNITS[size[2]];
  if (size?.[1] === undefined || unit === undefined) return undefined;
  const bytes = Math.floor(Number(size[1]) * unit);
  return Number.isSafeInteger(bytes) ? { kind: "bytes", bytes } : undefined;
}

/** The budget in bytes for a store on a file system of `fsBytes`, or undefined when unlimited. */
export function budgetBytes(budget: StoreBudget, fsBytes: number): number | undefined {
  if (budget.kind === "unlimited") return undefined;
  if (budget.kind === "bytes") return budget.bytes;
  return Math.floor(fsBytes * budget.fraction);
}

/** "1.5 GiB": sizes for people. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
