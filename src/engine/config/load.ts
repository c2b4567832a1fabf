import { join, resolve } from "node:path";
import { ConfigError } from "../errors.js";
import { ENV_VARS } from "./env.js";
import { FIELDS, FIELD_PATHS, INVALID, PATH_FIELDS } from "./fields.js";
import type { FieldPath } from "./fields.js";
import { problemLine, settingSource, show } from "./origins.js";
import type { Setting } from "./origins.js";
import { EmulatorConfig, isCleanString } from "./schema.js";
import type { ConfigOverrides } from "./schema.js";
import { DEFAULTS, hostArchToArch } from "./defaults.js";

export interface LoadConfigOptions {
  /** The environment to read (never process.env implicitly). */
  env: Readonly<Record<string, string | undefined>>;
  /** Structured settings that win over the environment. */
  overrides?: ConfigOverrides;
  /** Relative paths resolve against this directory; hostShare "cwd" shares it. */
  cwd: string;
  /** The user's home directory (for ~ and the default state root). */
  homeDir: string;
  /** The host's architecture, as Node names it (process.arch) or amd64/arm64. */
  hostArch: string;
  /** How messages name the overrides, e.g. "flags", "action inputs", "spec". Default "overrides". */
  overrideSource?: string;
  /** How messages name a field given as an override, e.g. { ramMiB: "--ram" }. */
  overrideNames?: Partial<Record<FieldPath, string>>;
}

const isFieldPath = (p: string): p is FieldPath => (FIELD_PATHS as readonly string[]).includes(p);
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Resolves an emulator's config: overrides > environment > defaults. Pure: all
 * inputs are injected. Throws one ConfigError listing every problem, each with
 * its source, value and a valid example.
 */
export function loadConfig(opts: LoadConfigOptions): EmulatorConfig {
  const problems: string[] = [];
  const settings = new Map<FieldPath, Setting>();
  readOverrides(opts, settings, problems);
  readEnv(opts.env, settings, problems);
  applyDefaults(opts, settings, problems);
  for (const [field, s] of settings) {
    if (typeof s.value !== "string" || !isCleanString(s.value)) continue;
    if (PATH_FIELDS.has(field) || (field === "qemuBinary" && s.value.includes("/"))) {
      s.value = resolvePath(s.value, opts);
    }
  }

  const candidate: Record<string, Record<string, unknown>> = { ports: {}, hostShare: {} };
  for (const [field, { value }] of settings) {
    if (value === undefined) continue;
    const [head, leaf] = field.split(".") as [string, string | undefined];
    if (leaf === undefined) (candidate as Record<string, unknown>)[head] = value;
    else (candidate[head] ??= {})[leaf] = value;
  }
  const parsed = EmulatorConfig.safeParse(candidate);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = issue.path.join(".");
      const related = (issue as { params?: { related?: string[] } }).params?.related;
      if (related) {
        const sources = related.map((f) => settingSource(f, settings.get(f as FieldPath))).join("; ");
        problems.push(`${field}: ${issue.message} (${sources})`);
        continue;
      }
      const setting = settings.get(field as FieldPath);
      if (setting === undefined) problems.push(`${field}: ${issue.message}`);
      else if (setting.origin.kind !== "derived") problems.push(problemLine(field, setting));
    }
  }
  if (problems.length > 0 || !parsed.success) {
    throw new ConfigError(
      [...new Set(problems)],
      "fix or unset each setting listed; every line names its source and shows a valid value",
    );
  }
  return parsed.data;
}

function resolvePath(p: string, { cwd, homeDir }: LoadConfigOptions): string {
  if (p === "~") return resolve(homeDir);
  if (p.startsWith("~/")) return resolve(homeDir, p.slice(2));
  return resolve(cwd, p);
}

function readOverrides(opts: LoadConfigOptions, settings: Map<FieldPath, Setting>, problems: string[]): void {
  const source = opts.overrideSource ?? "overrides";
  const put = (field: FieldPath, raw: unknown) => {
    const name = opts.overrideNames?.[field] ?? field;
    const value = typeof raw === "string" ? FIELDS[field].fromString(raw) : raw;
    const setting: Setting = { value, origin: { kind: "override", name, source, raw } };
    if (value === INVALID) problems.push(problemLine(field, setting));
    else settings.set(field, setting);
  };
  for (const [key, raw] of Object.entries(opts.overrides ?? {}) as [string, unknown][]) {
    if (raw === undefined) continue;
    if (key === "ports" || key === "hostShare") {
      if (!isPlainObject(raw)) {
        problems.push(`${key}=${show(raw)} (from ${source}): must be an object of ${key}.<name> settings`);
        continue;
      }
      for (const [sub, v] of Object.entries(raw)) {
        if (v === undefined) continue;
        if (isFieldPath(`${key}.${sub}`)) put(`${key}.${sub}` as FieldPath, v);
        else
          problems.push(
            `${key}.${sub} (from ${source}): is not a setting of the emulator; check its spelling`,
          );
      }
    } else if (isFieldPath(key)) put(key, raw);
    else problems.push(`${key} (from ${source}): is not a setting of the emulator; check its spelling`);
  }
  // hostShare.mode and hostShare.path are one choice: a source that sets one sets both.
  const mode = settings.get("hostShare.mode");
  const path = settings.get("hostShare.path");
  if (mode && !path)
    settings.set("hostShare.path", { value: undefined, origin: { kind: "derived", from: "hostShare.mode" } });
  if (path && !mode)
    settings.set("hostShare.mode", { value: "path", origin: { kind: "derived", from: "hostShare.path" } });
}

/** Environment variables, skipping those shadowed by an override or an earlier variable for the same field. */
function readEnv(env: LoadConfigOptions["env"], settings: Map<FieldPath, Setting>, problems: string[]): void {
  const decided = new Set<FieldPath>(settings.keys());
  for (const v of ENV_VARS) {
    const raw = env[v.name];
    if (raw === undefined || raw === "" || v.fields.every((f) => decided.has(f))) continue;
    const origin = { kind: "env" as const, name: v.name, raw, rule: v.rule, example: v.example };
    const assignments = v.parse(raw);
    if (assignments === INVALID) {
      const label = v.fields.length === 1 ? v.fields[0]! : v.fields[0]!.split(".")[0]!;
      problems.push(problemLine(label, { value: raw, origin }));
      v.fields.forEach((f) => decided.add(f));
      continue;
    }
    for (const [field, value] of assignments) {
      if (decided.has(field)) continue;
      settings.set(field, { value, origin });
      decided.add(field);
    }
  }
}

function applyDefaults(opts: LoadConfigOptions, settings: Map<FieldPath, Setting>, problems: string[]): void {
  const get = (f: FieldPath) => settings.get(f)?.value;
  const fallback = (f: FieldPath, value: unknown, note?: string) => {
    if (!settings.has(f))
      settings.set(f, { value, origin: note ? { kind: "default", note } : { kind: "default" } });
  };
  const derive = (f: FieldPath, from: string, value: () => unknown, ok: boolean) => {
    if (!settings.has(f))
      settings.set(f, { value: ok ? value() : undefined, origin: { kind: "derived", from } });
  };
  const str = (f: FieldPath) => typeof get(f) === "string";

  for (const [field, value] of Object.entries(DEFAULTS)) fallback(field as FieldPath, value);
  fallback("arch", hostArchToArch(opts.hostArch) ?? opts.hostArch, `the host's architecture`);
  fallback("home", join(opts.homeDir, ".hexclave", "emulator"));
  derive("imageDir", "home", () => join(get("home") as string, "images"), str("home"));
  derive("runDir", "home", () => join(get("home") as string, "run"), str("home"));
  derive("snapshotDir", "home", () => join(get("home") as string, "snapshots"), str("home"));
  const image = () => join(get("imageDir") as string, `stack-emulator-${get("arch") as string}.qcow2`);
  derive("image", "imageDir and arch", image, str("imageDir") && str("arch"));
  derive("snapshotRamMiB", "ramMiB", () => get("ramMiB"), true);
  derive("snapshotCpus", "cpus", () => get("cpus"), true);

  const mode = get("hostShare.mode");
  const path = settings.get("hostShare.path");
  if (mode === "cwd" || mode === "root") {
    if (path?.value !== undefined) {
      problems.push(
        problemLine("hostShare.path", path, `is only used when hostShare.mode is "path" (it is "${mode}")`),
      );
    }
    settings.set("hostShare.path", {
      value: mode === "cwd" ? opts.cwd : "/",
      origin: { kind: "derived", from: "hostShare.mode" },
    });
  }
}
