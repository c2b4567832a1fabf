/**
 * Conditions the metav1.Condition way: one per type, lastTransitionTime
 * moves only when the status flips, every condition says which generation
 * it describes. Pure.
 */
import type { Condition, ConditionType } from "../crd/types.js";

export interface ConditionInput<T extends string = ConditionType> {
  type: T;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
}

export function setCondition<T extends string = ConditionType>(
  list: readonly Condition[] | undefined,
  next: ConditionInput<T>,
  generation: number | undefined,
  now: Date,
): Condition[] {
  const out = [...(list ?? [])];
  const i = out.findIndex((c) => c.type === next.type);
  const prev = i >= 0 ? out[i] : undefined;
  const cond: Condition = {
    type: next.type,
    status: next.status,
    reason: next.reason,
    message: next.message.slice(0, 32768),
    lastTransitionTime:
      prev && prev.status === next.status
        ? prev.lastTransitionTime
        : now.toISOString().replace(/\.\d{3}Z$/, "Z"),
    ...(generation === undefined ? {} : { observedGeneration: generation }),
  };
  if (i >= 0) out[i] = cond;
  else out.push(cond);
  return out;
}

export function getCondition(
  list: readonly Condition[] | undefined,
  type: ConditionType,
): Condition | undefined {
  return list?.find((c) => c.type === type);
}

export function isTrue(list: readonly Condition[] | undefined, type: ConditionType): boolean {
  return getCondition(list, type)?.status === "True";
}
