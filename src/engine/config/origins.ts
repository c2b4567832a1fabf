import { ENV_VARS } from "./env.js";
import { FIELDS } from "./fields.js";
import type { FieldPath } from "./fields.js";

/** Where a setting's value came from, so a problem can name its source. */
export type Origin =
  | { kind: "default"; note?: string }
  | { kind: "derived"; from: string }
  | { kind: "env"; name: string; raw: string; rule: string; example: string }
  | { kind: "override"; name: string; source: string; raw: unknown };

export interface Setting {
  value: unknown;
  origin: Origin;
}

/** A value as the user would recognise it: JSON, shortened. */
export function show(value: unknown): string {
  let s: string;
  try {
    s =
      value === undefined || (typeof value === "number" && !Number.isFinite(value))
        ? String(value)
        : (JSON.stringify(value) ?? String(value));
  } catch {
    s = String(value);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function ruleOf(field: string): { rule: string; example: string } {
  const spec = FIELDS[field as FieldPath] as (typeof FIELDS)[FieldPath] | undefined;
  return spec ?? { rule: "is not valid", example: "" };
}

function envFix(field: string): string {
  const v = ENV_VARS.find((e) => e.fields.includes(field as FieldPath));
  return v
    ? `set ${v.name}, e.g. ${v.name}=${v.example}`
    : `set ${field}, e.g. ${field}=${ruleOf(field).example}`;
}

/** One problem line: the source and value, the field, the rule and a valid example. */
export function problemLine(field: string, setting: Setting, rule?: string): string {
  const o = setting.origin;
  switch (o.kind) {
    case "env":
      return `${o.name}=${show(o.raw)} (${field}): ${rule ?? o.rule} (e.g. ${o.name}=${o.example})`;
    case "override": {
      const where = o.name === field ? `from ${o.source}` : `${field}, from ${o.source}`;
      const r = ruleOf(field);
      return `${o.name}=${show(o.raw)} (${where}): ${rule ?? r.rule} (e.g. ${o.name}=${r.example})`;
    }
    case "default": {
      const note = o.note ? `: ${o.note}` : "";
      return `${field}=${show(setting.value)} (default${note}): ${rule ?? ruleOf(field).rule} (${envFix(field)})`;
    }
    case "derived":
      return `${field}=${show(setting.value)} (follows ${o.from}): ${rule ?? ruleOf(field).rule}`;
  }
}

/** "ports.backend from EMULATOR_BACKEND_PORT="26700"": names where a related field's value came from. */
export function settingSource(field: string, setting: Setting | undefined): string {
  const o = setting?.origin;
  if (o === undefined) return `${field} is not set`;
  switch (o.kind) {
    case "env":
      return `${field} from ${o.name}=${show(o.raw)}`;
    case "override":
      return `${field} from ${o.source} ${o.name}=${show(o.raw)}`;
    case "default":
      return `${field} is the default ${show(setting?.value)}`;
    case "derived":
      return `${field} follows ${o.from} (${show(setting?.value)})`;
  }
}
