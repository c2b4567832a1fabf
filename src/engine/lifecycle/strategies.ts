/**
 * Snapshot strategies, as pure data: which migration capabilities and URIs
 * each needs, which files a snapshot of it holds, and which a QEMU supports.
 */
import type { Strategy } from "../qemu/argv.js";

export type FileRole = "device-state" | "ram" | "disk-layer";

export const SNAPSHOT_FILES = {
  deviceState: "device-state.bin",
  ram: "ram.bin",
  diskLayer: "disk-layer.qcow2",
} as const;

export interface QemuMigrationSupport {
  version: { major: number; minor: number; micro: number };
  migrationCapabilities: readonly string[];
}

export function supportedStrategies(q: QemuMigrationSupport): Strategy[] {
  const out: Strategy[] = [];
  if (q.migrationCapabilities.includes("x-ignore-shared")) out.push("template");
  if (q.migrationCapabilities.includes("mapped-ram") && q.migrationCapabilities.includes("multifd"))
    out.push("mapped-ram");
  out.push("stream");
  return out;
}

/** auto: template where offered (flat in RAM size, shares pages), else mapped-ram, else stream. */
export function chooseStrategy(requested: Strategy | "auto", q: QemuMigrationSupport): Strategy {
  const supported = supportedStrategies(q);
  if (requested === "auto") return supported[0] ?? "stream";
  return requested;
}

/** `file:` migration URIs exist from QEMU 8.2; older ones stream through `exec:`. */
function hasFileUri(q: QemuMigrationSupport): boolean {
  return q.version.major > 8 || (q.version.major === 8 && q.version.minor >= 2);
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export interface MigrationSpec {
  capabilities: { capability: string; state: boolean }[];
  parameters: Record<string, unknown>;
  /** Where the migration stream goes (capture) / comes from (resume). */
  outgoingUri: string;
  incomingUri: string;
  /** The file that holds the migration stream. */
  streamFile: string;
  files: { name: string; role: FileRole }[];
}

/** Unthrottled: the default max-bandwidth slows a capture of a paused guest 7–20×. */
const MAX_BANDWIDTH = 64 * 1024 ** 3;

export function migrationSpec(
  strategy: Strategy,
  q: QemuMigrationSupport,
  dir: string,
  cpus: number,
): MigrationSpec {
  const caps = [{ capability: "events", state: true }];
  const parameters: Record<string, unknown> = { "max-bandwidth": MAX_BANDWIDTH };
  const layer = { name: SNAPSHOT_FILES.diskLayer, role: "disk-layer" as const };
  let streamName: string = SNAPSHOT_FILES.deviceState;
  let files: MigrationSpec["files"];
  switch (strategy) {
    case "template":
      caps.push({ capability: "x-ignore-shared", state: true });
      files = [
        { name: SNAPSHOT_FILES.deviceState, role: "device-state" },
        { name: SNAPSHOT_FILES.ram, role: "ram" },
        layer,
      ];
      break;
    case "mapped-ram":
      caps.push({ capability: "mapped-ram", state: true }, { capability: "multifd", state: true });
      parameters["multifd-channels"] = Math.max(1, Math.min(4, cpus));
      streamName = SNAPSHOT_FILES.ram;
      files = [{ name: SNAPSHOT_FILES.ram, role: "ram" }, layer];
      break;
    case "stream":
      streamName = SNAPSHOT_FILES.ram;
      files = [{ name: SNAPSHOT_FILES.ram, role: "ram" }, layer];
      break;
  }
  const streamFile = `${dir}/${streamName}`;
  const file = strategy === "mapped-ram" || hasFileUri(q);
  return {
    capabilities: caps,
    parameters,
    outgoingUri: file ? `file:${streamFile}` : `exec:cat > ${shellQuote(streamFile)}`,
    incomingUri: file ? `file:${streamFile}` : `exec:cat ${shellQuote(streamFile)}`,
    streamFile,
    files,
  };
}
