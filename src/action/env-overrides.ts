/**
 * The engine's environment variables (ENV_VARS: PORT_PREFIX, QEMU_BINARY,
 * EMULATOR_NO_ROTATION, …) set for a whole workflow reach this step too.
 * Inputs win over them; the ones that did apply, and the ones an input
 * overrode, are reported (log and job summary), so a variable set far away
 * never changes the emulator silently.
 */
import { ENV_VARS, type FieldPath } from "../engine/index.js";

export interface EnvOverride {
  name: string;
  value: string;
  fields: readonly FieldPath[];
  /** True when it applied; false when an input (or the Action itself) set its field. */
  used: boolean;
}

/**
 * Every engine variable set (non-empty) in `env`. `setByInputs` holds the
 * fields the inputs and the Action set explicitly (those beat the variable).
 * The first variable set for a field wins, as in loadConfig.
 */
export function environmentOverrides(
  env: Readonly<Record<string, string | undefined>>,
  setByInputs: ReadonlySet<string>,
): EnvOverride[] {
  const taken = new Set<string>();
  const out: EnvOverride[] = [];
  for (const v of ENV_VARS) {
    const value = env[v.name];
    if (value === undefined || value === "") continue;
    const byInput = v.fields.some((f) => setByInputs.has(f) || setByInputs.has(f.split(".")[0] ?? f));
    const used = !byInput && !v.fields.every((f) => taken.has(f));
    if (used) v.fields.forEach((f) => taken.add(f));
    out.push({ name: v.name, value, fields: v.fields, used });
  }
  return out;
}

/** The config fields an overrides object sets ("ports.backend", "hostShare.mode", "ramMiB", …). */
export function fieldsOf(overrides: Record<string, unknown>): Set<string> {
  const out = new Set<string>();
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      for (const [k2, v2] of Object.entries(v)) if (v2 !== undefined) out.add(`${k}.${k2}`);
    } else out.add(k);
  }
  return out;
}

/** "EMULATOR_RAM=2048 (ramMiB)" / "PORT_PREFIX (ignored: an input sets portPrefix)". */
export function describeOverride(o: EnvOverride): string {
  const value = o.value.length > 80 ? `${o.value.slice(0, 77)}…` : o.value;
  return o.used
    ? `${o.name}=${value} (${o.fields.join(", ")})`
    : `${o.name} ignored (an input sets ${o.fields.join(", ")})`;
}
