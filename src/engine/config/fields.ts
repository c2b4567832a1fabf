import {
  ARCHES,
  HOST_SHARE_MODES,
  LIMITS,
  SERVICE_NAMES,
  SNAPSHOT_MODES,
  STRATEGIES,
  isCleanString,
} from "./constants.js"; // not schema.ts: the command's --help must not load zod
import { STORE_BUDGET_RULE, parseStoreBudget } from "../snapshot/budget.js";

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
  "storeBudget",
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
  /** What it means, for --help and the environment variables' docs. */
  help: string;
  /** Its default, when that depends on neither the host nor other settings. */
  default?: string | number | boolean;
  /** How the default is found when it is not a constant, for the docs. */
  defaultDoc?: string;
  /** Environment variables that set it directly; the first one set wins. */
  env?: readonly string[];
  /** Its command-line flag, without the dashes. */
  flag?: string;
}

type Spec = Omit<FieldSpec, "help" | "default" | "env" | "flag" | "defaultDoc">;

const PATH_RULE = "must be a non-empty path without leading/trailing blanks or control characters";
const range = (key: keyof typeof LIMITS, what: string) => {
  const [min, max] = LIMITS[key];
  return `must be a whole number of ${what} between ${min} and ${max}`;
};
const pathField = (example: string): Spec => ({ rule: PATH_RULE, example, fromString: text });
const num = (rule: string, example: string): Spec => ({ rule, example, fromString: wholeNumber });
const bool = (example: string): Spec => ({
  rule: "must be a boolean: 1/0, true/false or yes/no",
  example,
  fromString: boolean,
});
const choice = (values: readonly string[], example: string): Spec => ({
  rule: `must be one of ${values.join(", ")}`,
  example,
  fromString: oneOf(values),
});
const port = (example: number) =>
  num(`must be a TCP port number between ${LIMITS.port[0]} and ${LIMITS.port[1]}`, String(example));

/**
 * Every setting, once: how it parses, what it means, its default, the
 * environment variables and the flag that set it. The env table (env.ts),
 * the flags (cli/flags.ts), DEFAULTS and the help text derive from here.
 */
export const FIELDS = {
  home: {
    ...pathField("~/.hexclave/emulator"),
    help: "state root",
    defaultDoc: "~/.hexclave/emulator",
    env: ["HEXCLAVE_EMULATOR_HOME"],
  },
  image: {
    ...pathField("/var/lib/hexclave/stack-emulator-amd64.qcow2"),
    help: "base qcow2 image",
    defaultDoc: "<imageDir>/stack-emulator-<arch>.qcow2",
    env: ["HEXCLAVE_EMULATOR_IMAGE"],
    flag: "image",
  },
  imageDir: {
    ...pathField("~/.hexclave/emulator/images"),
    help: "image directory",
    defaultDoc: "$HEXCLAVE_EMULATOR_HOME/images",
    env: ["EMULATOR_IMAGE_DIR"],
  },
  runDir: {
    ...pathField("~/.hexclave/emulator/run"),
    help: "run directory (pid, sockets, overlay, logs)",
    defaultDoc: "$HEXCLAVE_EMULATOR_HOME/run",
    env: ["EMULATOR_RUN_DIR"],
    flag: "run-dir",
  },
  snapshotDir: {
    ...pathField("~/.hexclave/emulator/snapshots"),
    help: "snapshot store directory",
    defaultDoc: "$HEXCLAVE_EMULATOR_HOME/snapshots",
    env: ["HEXCLAVE_EMULATOR_SNAPSHOT_DIR"],
    flag: "snapshot-dir",
  },
  storeBudget: {
    rule: STORE_BUDGET_RULE,
    example: "20GiB",
    fromString: (raw) => (parseStoreBudget(raw) === undefined ? INVALID : raw.trim()),
    help: "most disk the snapshot store may take; least recently used snapshots no VM runs from are evicted beyond it",
    // A share, not a size: it fits a runner's small disk and a node's large one, and leaves
    // the rest of the file system to images, overlays and the kubelet's eviction threshold.
    default: "50%",
    env: ["EMULATOR_STORE_BUDGET"],
    flag: "store-budget",
  },
  arch: {
    ...choice(ARCHES, "amd64"),
    help: "guest architecture: amd64 | arm64",
    defaultDoc: "the host's",
    env: ["EMULATOR_ARCH"],
    flag: "arch",
  },
  ramMiB: {
    ...num(range("ramMiB", "MiB"), "4096"),
    help: "guest RAM in MiB for a cold boot",
    default: 4096,
    env: ["EMULATOR_RAM"],
    flag: "ram",
  },
  cpus: {
    ...num(range("cpus", "virtual CPUs"), "4"),
    help: "guest vCPUs for a cold boot",
    default: 4,
    env: ["EMULATOR_CPUS"],
    flag: "cpus",
  },
  snapshotRamMiB: {
    ...num(range("ramMiB", "MiB"), "4096"),
    help: "guest RAM in MiB pinned for the snapshot layout",
    defaultDoc: "ramMiB",
    env: ["EMULATOR_SNAPSHOT_RAM"],
    flag: "snapshot-ram",
  },
  snapshotCpus: {
    ...num(range("cpus", "virtual CPUs"), "4"),
    help: "guest vCPUs pinned for the snapshot layout",
    defaultDoc: "cpus",
    env: ["EMULATOR_SNAPSHOT_CPUS"],
    flag: "snapshot-cpus",
  },
  portPrefix: {
    ...num(
      `must be a two-digit number between ${LIMITS.portPrefix[0]} and ${LIMITS.portPrefix[1]} (the guest dashboard listens on <prefix>01)`,
      "81",
    ),
    help: "the app's port prefix",
    default: 81,
    env: ["PORT_PREFIX", "NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX"],
    flag: "port-prefix",
  },
  "ports.dashboard": {
    ...port(26700),
    help: "dashboard host port",
    default: 26700,
    env: ["EMULATOR_DASHBOARD_PORT"],
  },
  "ports.backend": {
    ...port(26701),
    help: "backend host port",
    default: 26701,
    env: ["EMULATOR_BACKEND_PORT"],
  },
  "ports.minio": { ...port(26702), help: "MinIO host port", default: 26702, env: ["EMULATOR_MINIO_PORT"] },
  "ports.inbucket": {
    ...port(26703),
    help: "Inbucket host port",
    default: 26703,
    env: ["EMULATOR_INBUCKET_PORT"],
  },
  "ports.mockOauth": {
    ...port(26704),
    help: "mock OAuth host and guest port",
    default: 26704,
    env: ["EMULATOR_MOCK_OAUTH_PORT"],
  },
  bindAddress: {
    rule: "must be an IPv4 or IPv6 address literal, not a host name",
    example: "127.0.0.1",
    fromString: text,
    help: "host address the forwarded ports listen on",
    default: "127.0.0.1",
    env: ["HEXCLAVE_EMULATOR_BIND_ADDRESS"],
    flag: "bind",
  },
  readyTimeoutSec: {
    ...num(range("timeoutSec", "seconds"), "240"),
    help: "seconds to wait for health after a cold boot",
    default: 240,
    env: ["EMULATOR_READY_TIMEOUT"],
    flag: "ready-timeout",
  },
  snapshotReadyTimeoutSec: {
    ...num(range("timeoutSec", "seconds"), "45"),
    help: "seconds to wait for health after a resume",
    default: 45,
    env: ["EMULATOR_SNAPSHOT_READY_TIMEOUT"],
  },
  snapshot: {
    ...choice(SNAPSHOT_MODES, "auto"),
    help: "auto | never | required",
    default: "auto",
    env: ["HEXCLAVE_EMULATOR_SNAPSHOT"],
    flag: "snapshot",
  },
  forceCapture: { ...bool("true"), help: "capture even when a snapshot exists", default: false },
  rotation: {
    ...bool("true"),
    help: "rotate the image's placeholder secrets after every boot",
    default: true,
  },
  "hostShare.mode": {
    ...choice(HOST_SHARE_MODES, "cwd"),
    help: "what the guest sees under /host",
    default: "cwd",
  },
  "hostShare.path": { ...pathField("/srv/project"), help: "the shared host directory (mode path)" },
  "hostShare.readOnly": {
    ...bool("true"),
    help: "mount the host share read-only",
    default: false,
    env: ["HEXCLAVE_EMULATOR_HOST_SHARE_READ_ONLY"],
  },
  stopGraceSec: {
    ...num(range("stopGraceSec", "seconds"), "30"),
    help: "seconds a guest gets to power off before it is killed",
    default: 30,
    env: ["HEXCLAVE_EMULATOR_STOP_GRACE"],
    flag: "stop-grace",
  },
  strategy: {
    ...choice(STRATEGIES, "auto"),
    help: "snapshot strategy: auto | template | mapped-ram | stream",
    default: "auto",
    env: ["HEXCLAVE_EMULATOR_STRATEGY"],
    flag: "strategy",
  },
  qemuBinary: {
    rule: "must be the path of a qemu-system binary or a command name on PATH",
    example: "/usr/bin/qemu-system-x86_64",
    fromString: text,
    help: "qemu-system binary (or wrapper script)",
    defaultDoc: "qemu-system-<arch> on PATH",
    env: ["QEMU_BINARY"],
    flag: "qemu",
  },
  qemuImg: {
    ...pathField("/usr/bin/qemu-img"),
    help: "qemu-img binary",
    defaultDoc: "beside the QEMU binary, else on PATH",
    env: ["QEMU_IMG"],
    flag: "qemu-img",
  },
  firmware: {
    ...pathField("/usr/share/AAVMF/AAVMF_CODE.fd"),
    help: "arm64 UEFI firmware (.fd) for the virt machine",
    defaultDoc: "where Homebrew and Debian put it",
    env: ["EMULATOR_FIRMWARE"],
    flag: "firmware",
  },
  baseEnvFile: {
    ...pathField("./.env.development"),
    help: "the app's .env.development, copied into the guest as base.env",
    env: ["HEXCLAVE_EMULATOR_BASE_ENV_FILE"],
    flag: "base-env",
  },
} as const satisfies Record<FieldPath, FieldSpec>;

type Fields = typeof FIELDS;
type WithDefault = { [K in keyof Fields]: Fields[K] extends { default: unknown } ? K : never }[keyof Fields];

/** Defaults that do not depend on the host or on other settings (from FIELDS). */
export const DEFAULTS = Object.fromEntries(
  Object.entries(FIELDS).flatMap(([k, f]) => ("default" in f ? [[k, f.default]] : [])),
) as { readonly [K in WithDefault]: Fields[K] extends { default: infer D } ? D : never };

/** "(default …)" for a field's docs, or "". */
export function defaultNote(field: FieldPath): string {
  const f: FieldSpec = FIELDS[field];
  if (f.default !== undefined) return ` (default ${String(f.default)})`;
  return f.defaultDoc === undefined ? "" : ` (default ${f.defaultDoc})`;
}
