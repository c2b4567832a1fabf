/**
 * Keeping the store under its budget: quarantined snapshots go first (nothing
 * resumes them), then published ones least recently used first, never one a
 * running VM uses, nor the work of a running capture. Runs after every
 * capture publishes, and as the `gc` verb.
 */
import { mkdir, rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { budgetBytes, type StoreBudget } from "./budget.js";
import { tryLock } from "./flock.js";
import { QUARANTINE_DIR, USE_DIR, usePath } from "./layout.js";
import type { SnapshotStore, SweepReport } from "./store.js";
import { storeUsage, type StoreUsage } from "./usage.js";

export interface EvictionCandidate {
  kind: "snapshot" | "quarantined";
  /** The key, or the quarantine entry's name. */
  name: string;
  bytes: number;
  lastUsedMs: number;
}

/** What to remove, in order, to bring `totalBytes` to `budget` or below (pure). */
export function planEviction(
  candidates: readonly EvictionCandidate[],
  totalBytes: number,
  budget: number | undefined,
): EvictionCandidate[] {
  if (budget === undefined || totalBytes <= budget) return [];
  const order = [...candidates].sort(
    (a, b) =>
      Number(a.kind === "snapshot") - Number(b.kind === "snapshot") ||
      a.lastUsedMs - b.lastUsedMs ||
      a.name.localeCompare(b.name),
  );
  const plan: EvictionCandidate[] = [];
  let total = totalBytes;
  for (const c of order) {
    if (total <= budget) break;
    plan.push(c);
    total -= c.bytes;
  }
  return plan;
}

/** Evictable entries of a usage listing: not in use, not protected. */
export function candidatesOf(usage: StoreUsage, protect: ReadonlySet<string>): EvictionCandidate[] {
  return [
    ...usage.quarantined.map((q) => ({ kind: "quarantined" as const, ...q })),
    ...usage.snapshots
      .filter((s) => !s.inUse && !protect.has(s.key))
      .map((s) => ({ kind: "snapshot" as const, name: s.key, bytes: s.bytes, lastUsedMs: s.lastUsedMs })),
  ];
}

export interface GcReport {
  /** undefined: unlimited. */
  budgetBytes: number | undefined;
  beforeBytes: number;
  afterBytes: number;
  removed: EvictionCandidate[];
  /** What the sweep cleared first (work of dead writers, stale locks). */
  swept: SweepReport["removed"];
  /** Snapshots kept because a running VM uses them. */
  inUse: string[];
  /** Still over budget: what is left is in use, protected, or being written. */
  overBudget: boolean;
}

/** The budget in bytes for the store at `root` (a fraction is of its file system's size). */
export async function resolveBudget(root: string, budget: StoreBudget): Promise<number | undefined> {
  if (budget.kind !== "fraction") return budgetBytes(budget, 0);
  const fs = await statfs(root);
  return budgetBytes(budget, Number(fs.blocks) * Number(fs.bsize));
}

/** Sweep, then evict down to `budget`. `protect`: keys never evicted now (a capture just published). */
export async function collectGarbage(
  store: SnapshotStore,
  budget: StoreBudget,
  { protect = [] }: { protect?: readonly string[] } = {},
): Promise<GcReport> {
  const swept = (await store.sweep()).removed;
  const limit = await resolveBudget(store.root, budget).catch(() => undefined);
  const usage = await storeUsage(store.root);
  const inUse = usage.snapshots.filter((s) => s.inUse).map((s) => s.key);
  const plan = planEviction(candidatesOf(usage, new Set(protect)), usage.totalBytes, limit);
  const removed: EvictionCandidate[] = [];
  let total = usage.totalBytes;
  for (const c of plan) {
    if (limit !== undefined && total <= limit) break;
    if (c.kind === "quarantined") {
      await rm(join(store.root, QUARANTINE_DIR, c.name), { recursive: true, force: true });
    } else if (!(await evictSnapshot(store, c.name))) {
      inUse.push(c.name); // a VM took it since the usage was read
      continue;
    }
    removed.push(c);
    total -= c.bytes;
  }
  return {
    budgetBytes: limit,
    beforeBytes: usage.totalBytes,
    afterBytes: total,
    removed,
    swept,
    inUse,
    overBudget: limit !== undefined && total > limit,
  };
}

/**
 * Removes `key` unless a VM uses it: under the exclusive lock of its use
 * marker, which a resume must share before it launches, so none can start
 * from it while it goes.
 */
async function evictSnapshot(store: SnapshotStore, key: string): Promise<boolean> {
  await mkdir(join(store.root, USE_DIR), { recursive: true });
  const lock = await tryLock(usePath(store.root, key), "exclusive");
  if (lock === undefined || lock === "busy") return false;
  try {
    await store.remove(key);
  } finally {
    lock.remove();
  }
  return true;
}
