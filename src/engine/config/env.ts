import { FIELDS, INVALID, boolean } from "./fields.js";
import type { FieldPath } from "./fields.js";

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
 * Every environment variable the engine reads. The seed's variables keep their
 * meaning; the engine's own start with HEXCLAVE_EMULATOR_. An empty value means
 * "not set", as `${VAR:-default}` did in the seed.
 */
export const ENV_VARS: readonly EnvVar[] = [
  direct("HEXCLAVE_EMULATOR_HOME", "home", "state root (default ~/.hexclave/emulator)"),
  direct("EMULATOR_IMAGE_DIR", "imageDir", "image directory (default $HEXCLAVE_EMULATOR_HOME/images)"),
  direct("HEXCLAVE_EMULATOR_IMAGE", "image", "base image (default <imageDir>/stack-emulator-<arch>.qcow2)"),
  direct("EMULATOR_RUN_DIR", "runDir", "run directory (default $HEXCLAVE_EMULATOR_HOME/run)"),
  direct(
    "HEXCLAVE_EMULATOR_SNAPSHOT_DIR",
    "snapshotDir",
    "snapshot store (default $HEXCLAVE_EMULATOR_HOME/snapshots)",
  ),
  direct("EMULATOR_ARCH", "arch", "guest architecture (default: the host's)"),
  direct("EMULATOR_RAM", "ramMiB", "guest RAM in MiB (default 4096)"),
  direct("EMULATOR_CPUS", "cpus", "virtual CPUs (default 4)"),
  direct("EMULATOR_SNAPSHOT_RAM", "snapshotRamMiB", "RAM pinned for the snapshot layout (default: ramMiB)"),
  direct("EMULATOR_SNAPSHOT_CPUS", "snapshotCpus", "CPUs pinned for the snapshot layout (default: cpus)"),
  direct(
    "PORT_PREFIX",
    "portPrefix",
    "app port prefix (default 81); wins over NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX",
  ),
  direct("NEXT_PUBLIC_HEXCLAVE_PORT_PREFIX", "portPrefix", "app port prefix when PORT_PREFIX is not set"),
  direct("EMULATOR_DASHBOARD_PORT", "ports.dashboard", "dashboard host port (default 26700)"),
  direct("EMULATOR_BACKEND_PORT", "ports.backend", "backend host port (default 26701)"),
  direct("EMULATOR_MINIO_PORT", "ports.minio", "MinIO host port (default 26702)"),
  direct("EMULATOR_INBUCKET_PORT", "ports.inbucket", "Inbucket host port (default 26703)"),
  direct("EMULATOR_MOCK_OAUTH_PORT", "ports.mockOauth", "mock OAuth host and guest port (default 26704)"),
  direct(
    "HEXCLAVE_EMULATOR_BIND_ADDRESS",
    "bindAddress",
    "host address of the forwarded ports (default 127.0.0.1)",
  ),
  direct("EMULATOR_READY_TIMEOUT", "readyTimeoutSec", "seconds to healthy after a cold boot (default 240)"),
  direct(
    "EMULATOR_SNAPSHOT_READY_TIMEOUT",
    "snapshotReadyTimeoutSec",
    "seconds to healthy after a resume (default 45)",
  ),
  flag("EMULATOR_NO_SNAPSHOT", "snapshot", "1: always cold boot (snapshot=never); 0: no effect", (on) =>
    on ? [["snapshot", "never"]] : [],
  ),
  direct("HEXCLAVE_EMULATOR_SNAPSHOT", "snapshot", "auto (default), never or required"),
  flag("EMULATOR_FORCE_CAPTURE", "forceCapture", "1: capture even when a snapshot exists", (on) => [
    ["forceCapture", on],
  ]),
  flag("EMULATOR_NO_ROTATION", "rotation", "1: keep the snapshot's placeholder secrets", (on) => [
    ["rotation", !on],
  ]),
  hostShare,
  direct("HEXCLAVE_EMULATOR_HOST_SHARE_READ_ONLY", "hostShare.readOnly", "1: mount the host share read-only"),
  direct(
    "HEXCLAVE_EMULATOR_STOP_GRACE",
    "stopGraceSec",
    "seconds of clean shutdown before a kill (default 30)",
  ),
  direct("HEXCLAVE_EMULATOR_STRATEGY", "strategy", "snapshot strategy: auto, template, mapped-ram, stream"),
  direct("QEMU_BINARY", "qemuBinary", "explicit qemu-system binary"),
  direct("QEMU_IMG", "qemuImg", "explicit qemu-img (default: beside the QEMU binary, else on PATH)"),
  direct(
    "EMULATOR_FIRMWARE",
    "firmware",
    "arm64 UEFI firmware (.fd); default: where Homebrew and Debian put it",
  ),
  direct("HEXCLAVE_EMULATOR_BASE_ENV_FILE", "baseEnvFile", "the app's .env.development, copied to base.env"),
];
