/**
 * Mounting the host share in a resumed guest, after QEMU hot-plugged the
 * virtio-9p device. `mount-host-fs --post-resume` is the guest contract's
 * (mounts on /host) and its failure is fatal; `--path ABS` is this project's
 * optional extension (mounts on /host/ABS so the share keeps its absolute
 * path), and an image without it degrades to /host with a reason.
 */
import type { GuestAgent } from "../qemu/qga.js";
import { EngineError } from "../errors.js";
import { QmpCommandError } from "../qemu/protocol-errors.js";

export const MOUNT_HOST_FS = "/usr/local/bin/mount-host-fs";

export interface HostShareMount {
  /** Where the share is in the guest. */
  guestPath: string;
  /** Why the --path extension was not used, when it was wanted. */
  degraded?: string | undefined;
}

/**
 * Waits until the guest's virtio driver has taken the hot-plugged device
 * (DRIVER_OK in QEMU's `x-query-virtio-status`): a host-side fact, so the
 * mount below is not a race with the guest's probing. "unknown" when this
 * QEMU cannot say (the command is experimental): the mount then retries.
 */
export async function waitForVirtioDriver(
  qmp: { execute(command: string, args?: Record<string, unknown>): Promise<unknown> },
  deviceId: string,
  deps: MountDeps,
  timeoutMs = 20_000,
): Promise<"bound" | "unknown"> {
  const deadline = deps.now() + timeoutMs;
  for (;;) {
    let statuses: string[];
    try {
      const r = (await qmp.execute("x-query-virtio-status", {
        path: `/machine/peripheral/${deviceId}/virtio-backend`,
      })) as { status?: { statuses?: string[] } };
      statuses = r.status?.statuses ?? [];
    } catch (err) {
      if (err instanceof QmpCommandError) return "unknown";
      throw err;
    }
    if (statuses.some((s) => s.includes("DRIVER_OK"))) return "bound";
    if (deps.now() + 20 >= deadline) return "unknown";
    await deps.pause(20);
  }
}

export interface MountDeps {
  /** Waits before the next try; the guest binds the device asynchronously. */
  pause(ms: number): Promise<void>;
  now(): number;
}

export async function mountHostShare(
  agent: Pick<GuestAgent, "exec">,
  hostPath: string,
  deps: MountDeps,
  timeoutMs = 20_000,
  driver: "bound" | "unknown" = "unknown",
): Promise<HostShareMount> {
  const contract = ["--post-resume"];
  let extended = hostPath === "/" ? undefined : ["--post-resume", "--path", hostPath];
  const deadline = deps.now() + timeoutMs;
  const remaining = () => Math.max(1_000, deadline - deps.now());
  let last = "";
  let extendedTries = 0;
  /** Without DRIVER_OK, give --path a few tries before testing the contract's form. */
  const retryExtended = async (): Promise<boolean> => {
    if (++extendedTries >= 3) return false;
    await deps.pause(50);
    return true;
  };
  for (;;) {
    if (extended) {
      const r = await agent.exec(MOUNT_HOST_FS, extended, { timeoutMs: remaining() });
      if (r.exitCode === 0) return { guestPath: `/host${hostPath}` };
      const why = r.stderr.toString().trim();
      // Before the driver is bound both forms fail. With the driver known to be
      // bound, --path failing means no --path; without that knowledge, the
      // contract's form working right after is the best evidence there is.
      if (driver === "unknown" && deps.now() + 50 < deadline && (await retryExtended())) continue;
      const plain = await agent.exec(MOUNT_HOST_FS, contract, { timeoutMs: remaining() });
      if (plain.exitCode === 0) {
        extended = undefined;
        return {
          guestPath: "/host",
          degraded: `mount-host-fs --path is not supported by this image (exit ${r.exitCode}${why ? `: ${why}` : ""}): the share is at /host, not /host${hostPath}`,
        };
      }
      last = `exit ${plain.exitCode}: ${plain.stderr.toString().trim()}`;
    } else {
      const r = await agent.exec(MOUNT_HOST_FS, contract, { timeoutMs: remaining() });
      if (r.exitCode === 0) return { guestPath: "/host" };
      last = `exit ${r.exitCode}: ${r.stderr.toString().trim()}`;
    }
    if (deps.now() + 50 >= deadline) break;
    await deps.pause(50);
  }
  throw new EngineError("HOST_SHARE_FAILED", `mount-host-fs --post-resume failed (${last})`, {
    hint: "the guest could not mount the 9p share; see serial.log",
  });
}
