import { FIELDS, FIELD_PATHS, INVALID, boolean, defaultNote } from "./fields.js";
import type { FieldPath, FieldSpec } from "./fields.js";

/** What one environment variable sets: field/value pairs ([] = sets nothing). */
export type Assignments = ReadonlyArray<readonly [FieldPath, unknown]>;

export interface EnvVar {
  name: string;
  /** The fields it sets. A field set by several variables takes the first one (in table order) that is set. */
  fields: readonly FieldPath[];
  /** Turns the raw value into assignments, or INVALID. */
  parse: (raw: string) => Assignments | typeof INVALID;
  /** What a valid value looks like, completing "<NAME>=…: must …". */
  rule: string;
  example: string;
  doc: string;
}

function direct(name: string, field: FieldPath, doc: string): EnvVar {
  const spec = FIELDS[field];
  return {
    name,
    fields: [field],
    parse: (raw) => {
      const v = spec.fromString(raw);
      return v === INVALID ? INVALID : [[field, v]];
    },
    rule: spec.rule,
    example: spec.example,
    doc,
  };
}

function flag(name: string, field: FieldPath, doc: string, set: (on: boolean) => Assignments): EnvVar {
  return {
    name,
    fields: [field],
    parse: (raw) => {
      const on = boolean(raw);
      return on === INVALID ? INVALID : set(on === true);
    },
    rule: FIELDS.forceCapture.rule,
    example: "1",
    doc,
  };
}

const HOST_SHARE_KEYWORDS = ["cwd", "root", "none"];
const hostShare: EnvVar = {
  name: "HEXCLAVE_EMULATOR_HOST_SHARE",
  fields: ["hostShare.mode", "hostShare.path"],
  parse: (raw) => {
    if (HOST_SHARE_KEYWORDS.includes(raw.toLowerCase())) {
      return [
        ["hostShare.mode", raw.toLowerCase()],
        ["hostShare.path", undefined],
      ];
    }
    if (/^(\/|\.\.?(\/|$)|~(\/|$))/.test(raw) && FIELDS["hostShare.path"].fromString(raw) !== INVALID) {
      return [
        ["hostShare.mode", "path"],
        ["hostShare.path", raw],
      ];
    }
    return INVALID;
  },
  rule: "must be cwd, root (share /), none, or a directory path starting with /, ./, ../ or ~",
  example: "cwd",
  doc: "host directory shared at /host: cwd (default), root, none, or a path",
};

/**
 * Variables that are more than "the value of one field": switches and the
 * host-share shorthand. Listed before the field's direct variables, so they
 * win when both are set.
 */
const SPECIAL: readonly EnvVar[] = [
  flag("EMULATOR_NO_SNAPSHOT", "snapshot", "1: always cold boot (snapshot=never); 0: no effect", (on) =>
    on ? [["snapshot", "never"]] : [],
  ),
  flag("EMULATOR_FORCE_CAPTURE", "forceCapture", "1: capture even when a snapshot exists", (on) => [
    ["forceCapture", on],
  ]),
  flag("EMULATOR_NO_ROTATION", "rotation", "1: keep the snapshot's placeholder secrets", (on) => [
    ["rotation", !on],
  ]),
  hostShare,
];

/** The direct variables of a field, from FIELDS: the first one set wins. */
function directsOf(field: FieldPath): EnvVar[] {
  const names: readonly string[] = (FIELDS[field] as FieldSpec).env ?? [];
  return names.map((name, i) => {
    const doc = `${FIELDS[field].help}${defaultNote(field)}`;
    return direct(name, field, i === 0 ? doc : `${doc}, when ${names[i - 1]} is not set`);
  });
}

/**
 * Every environment variable the engine reads, in field order. The seed's
 * variables keep their meaning; the engine's own start with HEXCLAVE_EMULATOR_.
 * An empty value means "not set", as `${VAR:-default}` did in the seed.
 */
export const ENV_VARS: readonly EnvVar[] = FIELD_PATHS.flatMap((field) => [
  ...SPECIAL.filter((v) => v.fields[0] === field),
  ...directsOf(field),
]);
