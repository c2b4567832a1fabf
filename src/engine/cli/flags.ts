/** Command-line flags → config overrides (validated by the config schema, like env vars). */
import type { ConfigOverrides, FieldPath } from "../config/index.js";

export interface FlagSpec {
  flag: string;
  field?: FieldPath;
  help: string;
  boolean?: boolean;
}

export const CONFIG_FLAGS: readonly FlagSpec[] = [
  {
    flag: "image",
    field: "image",
    help: "base qcow2 image (default <image dir>/stack-emulator-<arch>.qcow2)",
  },
  { flag: "run-dir", field: "runDir", help: "run directory (pid, sockets, overlay, logs)" },
  { flag: "snapshot-dir", field: "snapshotDir", help: "snapshot store directory" },
  { flag: "arch", field: "arch", help: "guest architecture: amd64 | arm64" },
  { flag: "ram", field: "ramMiB", help: "guest RAM in MiB for a cold boot" },
  { flag: "cpus", field: "cpus", help: "guest vCPUs for a cold boot" },
  { flag: "snapshot-ram", field: "snapshotRamMiB", help: "guest RAM in MiB pinned for snapshots" },
  { flag: "snapshot-cpus", field: "snapshotCpus", help: "guest vCPUs pinned for snapshots" },
  { flag: "port-prefix", field: "portPrefix", help: "the app's port prefix (default 81)" },
  {
    flag: "bind",
    field: "bindAddress",
    help: "host address the forwarded ports listen on (default 127.0.0.1)",
  },
  { flag: "snapshot", field: "snapshot", help: "auto | never | required" },
  { flag: "strategy", field: "strategy", help: "auto | template | mapped-ram | stream" },
  { flag: "qemu", field: "qemuBinary", help: "qemu-system binary (or wrapper script)" },
  {
    flag: "qemu-img",
    field: "qemuImg",
    help: "qemu-img binary (default: beside the QEMU binary, else on PATH)",
  },
  { flag: "firmware", field: "firmware", help: "arm64 UEFI firmware (.fd) for the virt machine" },
  {
    flag: "base-env",
    field: "baseEnvFile",
    help: "the app's .env.development, copied into the guest as base.env",
  },
  { flag: "ready-timeout", field: "readyTimeoutSec", help: "seconds to wait for health after a cold boot" },
  {
    flag: "stop-grace",
    field: "stopGraceSec",
    help: "seconds a guest gets to power off before it is killed",
  },
  { flag: "host-share", help: "cwd | root | none | <absolute path>: what the guest sees under /host" },
  { flag: "host-share-readonly", help: "mount the host share read-only", boolean: true },
  {
    flag: "no-rotation",
    help: "keep the snapshot's public placeholder secrets (never expose the instance)",
    boolean: true,
  },
  { flag: "force", help: "capture: replace an existing snapshot", boolean: true },
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
