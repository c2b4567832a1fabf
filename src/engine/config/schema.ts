import { isIP } from "node:net";
import { isAbsolute } from "node:path";
import { z } from "zod";
import { distinctGuestPorts, distinctHostPorts, hostSharePath, unlessIssuesUnder } from "./checks.js";
import { ARCHES, HOST_SHARE_MODES, LIMITS, SNAPSHOT_MODES, STRATEGIES, isCleanString } from "./constants.js";

export { isCleanString };
import type { ServiceName } from "./constants.js";
import { parseStoreBudget } from "../snapshot/budget.js";

const whole = ([min, max]: readonly [number, number]) => z.number().int().min(min).max(max);
const cleanString = z.string().refine(isCleanString);
const absolutePath = cleanString.refine((p) => isAbsolute(p));
const port = whole(LIMITS.port);

/** Host TCP port of each service (forwarded to the guest by QEMU). */
const Ports = z.strictObject({
  dashboard: port,
  backend: port,
  minio: port,
  inbucket: port,
  mockOauth: port,
});
export type Ports = z.infer<typeof Ports>;

const HostShare = z.strictObject({
  /** cwd: share the working directory; root: share `/` (opt-in); path: share `path`; none. */
  mode: z.enum(HOST_SHARE_MODES),
  /** The shared host directory; set for every mode but "none". */
  path: absolutePath.optional(),
  /** Mount the share read-only in the guest. */
  readOnly: z.boolean(),
});
export type HostShare = z.infer<typeof HostShare>;

export {
  ARCHES,
  HOST_SHARE_MODES,
  LIMITS,
  SERVICE_NAMES,
  SNAPSHOT_MODES,
  STRATEGIES,
  guestPorts,
} from "./constants.js";
export type { Arch, ServiceName } from "./constants.js";

/** The fully resolved configuration of one emulator (paths absolute). */
export const EmulatorConfig = z
  .strictObject({
    /** Root of the emulator's state; the default parent of imageDir, runDir and snapshotDir. */
    home: absolutePath,
    /** The base qcow2 image (never written to; every run uses an overlay). */
    image: absolutePath,
    /** Where images are downloaded and looked up. */
    imageDir: absolutePath,
    /** Run directory: pid, QMP/QGA sockets, overlay, serial.log. */
    runDir: absolutePath,
    /** Where captured snapshots are stored. */
    snapshotDir: absolutePath,
    /** The store's size budget: "20GiB", "50%" of its file system, or "unlimited" (see snapshot/budget.ts). */
    storeBudget: cleanString.refine((s) => parseStoreBudget(s) !== undefined),
    /** Guest architecture. */
    arch: z.enum(ARCHES),
    /** Guest RAM for a cold boot, in MiB. */
    ramMiB: whole(LIMITS.ramMiB),
    /** Virtual CPUs for a cold boot. */
    cpus: whole(LIMITS.cpus),
    /** Guest RAM pinned for the snapshot layout (capture and resume), in MiB. */
    snapshotRamMiB: whole(LIMITS.ramMiB),
    /** Virtual CPUs pinned for the snapshot layout. */
    snapshotCpus: whole(LIMITS.cpus),
    /** The app's port prefix: the guest's dashboard listens on `${portPrefix}01`, backend on `${portPrefix}02`. */
    portPrefix: whole(LIMITS.portPrefix),
    /** Host port of each service. */
    ports: Ports,
    /** Host address the forwarded ports listen on. */
    bindAddress: cleanString.refine((a) => isIP(a) !== 0),
    /** Seconds to wait for healthy services after a cold boot. */
    readyTimeoutSec: whole(LIMITS.timeoutSec),
    /** Seconds to wait for healthy services after a snapshot resume (and rotation). */
    snapshotReadyTimeoutSec: whole(LIMITS.timeoutSec),
    /** auto: resume when a matching snapshot exists, else cold boot (and capture); never: always cold boot; required: fail without a snapshot. */
    snapshot: z.enum(SNAPSHOT_MODES),
    /** Capture a new snapshot even when a matching one exists. */
    forceCapture: z.boolean(),
    /** Rotate the snapshot's placeholder secrets after a resume. */
    rotation: z.boolean(),
    /** Which host directory the guest sees at /host. */
    hostShare: HostShare,
    /** Seconds a guest gets to shut down cleanly (ACPI / agent) before it is killed. */
    stopGraceSec: whole(LIMITS.stopGraceSec),
    /** Snapshot strategy; auto picks the best the probed QEMU supports. */
    strategy: z.enum(STRATEGIES),
    /** Explicit qemu-system binary (a path, or a command name looked up on PATH). */
    qemuBinary: cleanString.optional(),
    /** Explicit qemu-img; unset: beside the QEMU binary, else on PATH. */
    qemuImg: absolutePath.optional(),
    /** arm64 UEFI firmware (a raw .fd for virt); unset: found where the seed looks. */
    firmware: absolutePath.optional(),
    /** The application's base environment (.env.development) copied to base.env; none gives an empty base.env. */
    baseEnvFile: absolutePath.optional(),
  })
  .superRefine(distinctHostPorts, unlessIssuesUnder("ports"))
  .superRefine(distinctGuestPorts, unlessIssuesUnder("portPrefix", "ports.mockOauth"))
  .superRefine(hostSharePath, unlessIssuesUnder("hostShare"));
export type EmulatorConfig = z.infer<typeof EmulatorConfig>;

/**
 * Structured overrides (CLI flags, action inputs, a CR spec): any subset of the
 * config. A string is accepted for a numeric or boolean setting and parsed with
 * the same strict rules as its environment variable; undefined means "not set".
 */
export type ConfigOverrides = {
  [K in Exclude<keyof EmulatorConfig, "ports" | "hostShare">]?: EmulatorConfig[K] | string;
} & {
  ports?: { [K in ServiceName]?: number | string };
  hostShare?: { mode?: HostShare["mode"]; path?: string; readOnly?: boolean | string };
};
