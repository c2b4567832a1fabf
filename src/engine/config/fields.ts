import {
  ARCHES,
  HOST_SHARE_MODES,
  LIMITS,
  SERVICE_NAMES,
  SNAPSHOT_MODES,
  STRATEGIES,
  isCleanString,
} from "./schema.js";

/** Marks a string that does not parse; the caller reports the field's rule. */
export const INVALID: unique symbol = Symbol("invalid");
export type StringParser = (raw: string) => unknown;

/** Every leaf setting, by its dotted path in EmulatorConfig. */
export const FIELD_PATHS = [
  "home",
  "image",
  "imageDir",
  "runDir",
  "snapshotDir",
  "arch",
  "ramMiB",
  "cpus",
  "snapshotRamMiB",
  "snapshotCpus",
  "portPrefix",
  ...SERVICE_NAMES.map((s) => `ports.${s}` as const),
  "bindAddress",
  "readyTimeoutSec",
  "snapshotReadyTimeoutSec",
  "snapshot",
  "forceCapture",
  "rotation",
  "hostShare.mode",
  "hostShare.path",
  "hostShare.readOnly",
  "stopGraceSec",
  "strategy",
  "qemuBinary",
  "qemuImg",
  "firmware",
  "baseEnvFile",
] as const;
export type FieldPath = (typeof FIELD_PATHS)[number];

/** Fields holding host paths: `~` is expanded and relative paths resolve against cwd. */
export const PATH_FIELDS: ReadonlySet<FieldPath> = new Set([
  "home",
  "image",
  "imageDir",
  "runDir",
  "snapshotDir",
  "hostShare.path",
  "qemuImg",
  "firmware",
  "baseEnvFile",
]);

/** A whole decimal number: ASCII digits only, no sign, blanks, exponent or leading zeros. */
export function wholeNumber(raw: string): unknown {
  return /^(0|[1-9][0-9]{0,15})$/.test(raw) ? Number(raw) : INVALID;
}
/** 1/0, true/false, yes/no, any case. */
export function boolean(raw: string): unknown {
  const v = raw.toLowerCase();
  if (v === "1" || v === "true" || v === "yes") return true;
  if (v === "0" || v === "false" || v === "no") return false;
  return INVALID;
}
export function oneOf(values: readonly string[]): StringParser {
  return (raw) => (values.includes(raw.toLowerCase()) ? raw.toLowerCase() : INVALID);
}
/** Strings are checked by the schema (clean, absolute after resolution). */
export function text(raw: string): unknown {
  return isCleanString(raw) ? raw : INVALID;
}

export interface FieldSpec {
  /** What a valid value looks like, completing "<field>: must …". */
  rule: string;
  /** A valid value, as it would be written in an env var or flag. */
  example: string;
  /** Parses a string given for this field (env var, or a string override). */
  fromString: StringParser;
}

const PATH_RULE = "must be a non-empty path without leading/trailing blanks or control characters";
const range = (key: keyof typeof LIMITS, what: string) => {
  const [min, max] = LIMITS[key];
  return `must be a whole number of ${what} between ${min} and ${max}`;
};
const pathField = (example: string): FieldSpec => ({ rule: PATH_RULE, example, fromString: text });
const num = (rule: string, example: string): FieldSpec => ({ rule, example, fromString: wholeNumber });
const bool = (example: string): FieldSpec => ({
  rule: "must be a boolean: 1/0, true/false or yes/no",
  example,
  fromString: boolean,
});
const choice = (values: readonly string[], example: string): FieldSpec => ({
  rule: `must be one of ${values.join(", ")}`,
  example,
  fromString: oneOf(values),
});
const port = (example: number) =>
  num(`must be a TCP port number between ${LIMITS.port[0]} and ${LIMITS.port[1]}`, String(example));

export const FIELDS: Record<FieldPath, FieldSpec> = {
  home: pathField("~/.hexclave/emulator"),
  image: pathField("/var/lib/hexclave/stack-emulator-amd64.qcow2"),
  imageDir: pathField("~/.hexclave/emulator/images"),
  runDir: pathField("~/.hexclave/emulator/run"),
  snapshotDir: pathField("~/.hexclave/emulator/snapshots"),
  arch: choice(ARCHES, "amd64"),
  ramMiB: num(range("ramMiB", "MiB"), "4096"),
  cpus: num(range("cpus", "virtual CPUs"), "4"),
  snapshotRamMiB: num(range("ramMiB", "MiB"), "4096"),
  snapshotCpus: num(range("cpus", "virtual CPUs"), "4"),
  portPrefix: num(
    `must be a two-digit number between ${LIMITS.portPrefix[0]} and ${LIMITS.portPrefix[1]} (the guest dashboard listens on <prefix>01)`,
    "81",
  ),
  "ports.dashboard": port(26700),
  "ports.backend": port(26701),
  "ports.minio": port(26702),
  "ports.inbucket": port(26703),
  "ports.mockOauth": port(26704),
  bindAddress: {
    rule: "must be an IPv4 or IPv6 address literal, not a host name",
    example: "127.0.0.1",
    fromString: text,
  },
  readyTimeoutSec: num(range("timeoutSec", "seconds"), "240"),
  snapshotReadyTimeoutSec: num(range("timeoutSec", "seconds"), "45"),
  snapshot: choice(SNAPSHOT_MODES, "auto"),
  forceCapture: bool("true"),
  rotation: bool("true"),
  "hostShare.mode": choice(HOST_SHARE_MODES, "cwd"),
  "hostShare.path": pathField("/srv/project"),
  "hostShare.readOnly": bool("true"),
  stopGraceSec: num(range("stopGraceSec", "seconds"), "30"),
  strategy: choice(STRATEGIES, "auto"),
  qemuBinary: {
    rule: "must be the path of a qemu-system binary or a command name on PATH",
    example: "/usr/bin/qemu-system-x86_64",
    fromString: text,
  },
  qemuImg: pathField("/usr/bin/qemu-img"),
  firmware: pathField("/usr/share/AAVMF/AAVMF_CODE.fd"),
  baseEnvFile: pathField("./.env.development"),
};
