import type { FieldPath } from "./fields.js";
import type { Arch } from "./schema.js";

/** Defaults that do not depend on the host or on other settings. */
export const DEFAULTS = {
  ramMiB: 4096,
  cpus: 4,
  portPrefix: 81,
  "ports.dashboard": 26700,
  "ports.backend": 26701,
  "ports.minio": 26702,
  "ports.inbucket": 26703,
  "ports.mockOauth": 26704,
  bindAddress: "127.0.0.1",
  readyTimeoutSec: 240,
  snapshotReadyTimeoutSec: 45,
  snapshot: "auto",
  forceCapture: false,
  rotation: true,
  "hostShare.mode": "cwd",
  "hostShare.readOnly": false,
  stopGraceSec: 30,
  strategy: "auto",
} as const satisfies Partial<Record<FieldPath, unknown>>;

/** Maps Node's or uname's name of a CPU architecture to the image's; undefined when no image exists for it. */
export function hostArchToArch(hostArch: string): Arch | undefined {
  switch (hostArch) {
    case "x64":
    case "x86_64":
    case "amd64":
      return "amd64";
    case "arm64":
    case "aarch64":
      return "arm64";
    default:
      return undefined;
  }
}
