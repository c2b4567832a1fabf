/**
 * Every environment variable and every config field fed wrong types,
 * out-of-range numbers and odd strings, data-driven from ENV_VARS and
 * FIELDS (config-validation.test.ts has the hand-picked cases and message
 * formats): each is rejected, naming where it came from, its value, the
 * field and a valid example.
 */
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/engine/errors.js";
import { ENV_VARS, loadConfig } from "../../src/engine/config/index.js";
import type { ConfigOverrides, LoadConfigOptions } from "../../src/engine/config/index.js";
import { FIELDS, FIELD_PATHS, boolean, text, wholeNumber } from "../../src/engine/config/fields.js";
import type { FieldPath } from "../../src/engine/config/fields.js";
import { show } from "../../src/engine/config/origins.js";
import { reliabilityFigures } from "../support/reliability.js";

const rel = reliabilityFigures("config-bad-input");
const base: LoadConfigOptions = { env: {}, cwd: "/work/project", homeDir: "/home/dev", hostArch: "x64" };

function problems(o: Partial<LoadConfigOptions>): readonly string[] {
  try {
    loadConfig({ ...base, ...o });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

type Kind = "number" | "boolean" | "choice" | "path" | "string" | "address" | "share";
function kindOf(field: FieldPath): Kind {
  const spec = FIELDS[field];
  if (spec.fromString === wholeNumber) return "number";
  if (spec.fromString === boolean) return "boolean";
  if (field === "bindAddress") return "address";
  if (spec.fromString === text) return spec.rule.includes("path of a qemu") ? "string" : "path";
  return "choice";
}
const rangeOf = (field: FieldPath): [number, number] => {
  const m = /between (\d+) and (\d+)/.exec(FIELDS[field].rule);
  if (!m) throw new Error(`no range in the rule of ${field}`);
  return [Number(m[1]), Number(m[2])];
};

/** Strings no setting accepts: blanks around, control characters, NUL, a huge value. */
const ODD_STRINGS = [
  " padded",
  "padded ",
  "\ttab",
  "line\nbreak",
  "nul\u0000byte",
  "del\u007f",
  "\r",
  "x".repeat(5000) + " ",
];
const BAD_STRINGS: Record<Kind, string[]> = {
  number: [
    "lots",
    "0x10",
    "-1",
    "+5",
    "1e3",
    "4096.0",
    "4_096",
    "1 2",
    "０１２",
    "٤٠٩٦",
    "NaN",
    "Infinity",
    "0040",
    "99999999999999999999",
  ],
  boolean: ["2", "-1", "on", "off", "enabled", "y", "n", "tru", "0.0", "yes please"],
  choice: ["nope", "auto,stream", "*", "auto\u0000", "ａｕｔｏ"],
  path: [],
  string: [],
  address: ["localhost", "127.0.0.1:80", "1.2.3", "256.1.1.1", "[::1]", "::1%", "0x7f.0.0.1", "127.1"],
  share: ["path", "relative/dir", "cwd ", "~user/x", "C:\\share", "-"],
};

function badValuesFor(name: string, field: FieldPath): string[] {
  const kind = name === "HEXCLAVE_EMULATOR_HOST_SHARE" ? "share" : kindOf(field);
  const out = [...ODD_STRINGS, ...BAD_STRINGS[kind]];
  if (kind === "number") {
    const [min, max] = rangeOf(field);
    if (min > 0) out.push(String(min - 1));
    out.push(String(max + 1), String(max * 1000));
  }
  return out;
}

const cases = ENV_VARS.flatMap((v) =>
  badValuesFor(v.name, v.fields[0]!).map((raw) => [v.name, raw] as const),
);

describe("every environment variable rejects bad values", () => {
  it("covers every variable of the table", () => {
    expect(new Set(cases.map(([n]) => n))).toEqual(new Set(ENV_VARS.map((v) => v.name)));
    expect(cases.length).toBeGreaterThan(300);
  });

  it.each(cases)("%s=%j is rejected with its value, field, rule and a valid example", (name, raw) => {
    const v = ENV_VARS.find((e) => e.name === name)!;
    const found = problems({ env: { [name]: raw } });
    const line = found.find((l) => l.startsWith(`${name}=${show(raw)} (`));
    rel.badInputs("environment variables", 1, line ? 1 : 0);
    expect(found, `${name}=${JSON.stringify(raw)} was accepted`).not.toEqual([]);
    expect(line, found.join("\n")).toBeDefined();
    const field = v.fields.length === 1 ? v.fields[0]! : v.fields[0]!.split(".")[0]!;
    expect(line).toContain(`(${field})`);
    expect(line).toContain(`(e.g. ${name}=${v.example})`);
  });
});

const WRONG_TYPES: Record<Kind, unknown[]> = {
  number: ["lots", " 4 ", true, {}, [], null, Number.NaN, Number.POSITIVE_INFINITY, 1.5, -1, 10n],
  boolean: ["maybe", 2, 0.5, {}, [], null, "1 "],
  choice: ["nope", 1, true, {}, [], null, ""],
  path: [42, true, {}, [], null, "", " /pad", "/a\nb", "/nul\u0000"],
  string: [42, false, {}, [], null, "", "qemu ", "q\u0007"],
  address: [127, "localhost", "", {}, null, "10.0.0.1/8"],
  share: [],
};

function overrideOf(field: FieldPath, value: unknown): ConfigOverrides {
  const [head, leaf] = field.split(".") as [string, string | undefined];
  if (leaf === undefined) return { [head]: value } as ConfigOverrides;
  if (head === "hostShare" && leaf === "path")
    return { hostShare: { mode: "path", path: value } } as ConfigOverrides;
  return { [head]: { [leaf]: value } } as ConfigOverrides;
}

const overrideCases = FIELD_PATHS.flatMap((field) => {
  const kind = kindOf(field);
  const values = [...WRONG_TYPES[kind]];
  if (kind === "number") {
    const [min, max] = rangeOf(field);
    if (min > 0) values.push(min - 1);
    values.push(max + 1);
  }
  return values.map((value) => [field, value] as const);
});

describe("every config field rejects wrong types and out-of-range values as an override", () => {
  it("covers every field", () => {
    expect(new Set(overrideCases.map(([f]) => f))).toEqual(new Set(FIELD_PATHS));
  });

  it.each(overrideCases)(
    "%s = %o is rejected, naming the field, the value and an example",
    (field, value) => {
      const found = problems({ overrides: overrideOf(field, value) });
      const line = found.find((l) => l.startsWith(`${field}=${show(value)} (from overrides)`));
      rel.badInputs("config overrides", 1, line ? 1 : 0);
      expect(line, `${field}=${show(value)}: ${found.join("\n") || "accepted"}`).toBeDefined();
      expect(line).toContain(`(e.g. ${field}=${FIELDS[field].example})`);
    },
  );
});
