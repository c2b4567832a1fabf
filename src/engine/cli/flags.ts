/** Command-line flags → config overrides (validated by the config schema, like env vars). */
import type { ConfigOverrides, FieldPath } from "../config/index.js";
import { FIELDS, FIELD_PATHS, defaultNote, type FieldSpec } from "../config/fields.js";

export interface FlagSpec {
  flag: string;
  field?: FieldPath;
  help: string;
  boolean?: boolean;
}

/** Flags that are not one field's value. */
const SPECIAL_FLAGS: readonly FlagSpec[] = [
  { flag: "host-share", help: "cwd | root | none | <absolute path>: what the guest sees under /host" },
  { flag: "host-share-readonly", help: "mount the host share read-only", boolean: true },
  {
    flag: "no-rotation",
    help: "keep the snapshot's public placeholder secrets (never expose the instance)",
    boolean: true,
  },
  { flag: "force", help: "capture: replace an existing snapshot", boolean: true },
];

/** Every config flag: one per field that has one in FIELDS, then the special ones. */
export const CONFIG_FLAGS: readonly FlagSpec[] = [
  ...FIELD_PATHS.flatMap((field) => {
    const spec: FieldSpec = FIELDS[field];
    return spec.flag === undefined
      ? []
      : [{ flag: spec.flag, field, help: `${spec.help}${defaultNote(field)}` }];
  }),
  ...SPECIAL_FLAGS,
];

/** Flags of single verbs that are not config fields. */
export const VERB_FLAGS: readonly FlagSpec[] = [
  { flag: "release", help: "pull: the release tag whose stack-emulator-<arch>.qcow2 to download" },
  { flag: "url", help: "pull: download the image from this URL instead" },
];

export function overridesFromFlags(values: Record<string, string | boolean | undefined>): ConfigOverrides {
  const o: Record<string, unknown> = {};
  for (const spec of CONFIG_FLAGS) {
    const v = values[spec.flag];
    if (v === undefined || spec.field === undefined) continue;
    o[spec.field] = v;
  }
  const share = values["host-share"];
  if (typeof share === "string") {
    o.hostShare = ["cwd", "root", "none"].includes(share) ? { mode: share } : { mode: "path", path: share };
  }
  if (values["host-share-readonly"] === true) {
    o.hostShare = { ...((o.hostShare as object | undefined) ?? {}), readOnly: true };
  }
  if (values["no-rotation"] === true) o.rotation = false;
  if (values.force === true) o.forceCapture = true;
  return o as ConfigOverrides;
}

export const FLAG_NAMES: Partial<Record<FieldPath, string>> = Object.fromEntries(
  CONFIG_FLAGS.filter((f) => f.field).map((f) => [f.field, `--${f.flag}`]),
);
