/** `hexclave-emulator gc`: the store's clean-up on demand, and its report for people. */
import { ConfigError } from "../errors.js";
import { STORE_BUDGET_RULE, formatBytes, parseStoreBudget } from "./budget.js";
import { collectGarbage, type GcReport } from "./evict.js";
import { openSnapshotStore } from "./store.js";

export async function gcStore(root: string, budget: string): Promise<GcReport> {
  const parsed = parseStoreBudget(budget);
  if (!parsed) throw new ConfigError([`storeBudget: ${STORE_BUDGET_RULE} (got ${JSON.stringify(budget)})`]);
  return collectGarbage(openSnapshotStore(root), parsed);
}

export function describeGc(r: GcReport, budget: string): string {
  const limit = r.budgetBytes === undefined ? "unlimited" : `${formatBytes(r.budgetBytes)} (${budget})`;
  const lines = [
    `snapshot store: ${formatBytes(r.beforeBytes)} → ${formatBytes(r.afterBytes)}, budget ${limit}`,
  ];
  for (const s of r.swept) lines.push(`  removed ${s.path}: ${s.why}`);
  for (const e of r.removed) {
    const used = new Date(e.lastUsedMs).toISOString();
    lines.push(`  evicted ${e.kind} ${e.name}: ${formatBytes(e.bytes)}, last used ${used}`);
  }
  if (r.removed.length === 0 && r.swept.length === 0) lines.push("  nothing to remove");
  if (r.inUse.length > 0) lines.push(`  in use (kept): ${r.inUse.join(", ")}`);
  if (r.overBudget) lines.push("  still over budget: what is left is in use or being written");
  return lines.join("\n");
}
