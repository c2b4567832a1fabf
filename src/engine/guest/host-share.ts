/**
 * Mounting the host share in a resumed guest, after QEMU hot-plugged the
 * virtio-9p device. `mount-host-fs --post-resume` is the guest contract's
 * (mounts on /host) and its failure is fatal; `--path ABS` is this project's
 * optional extension (mounts on /host/ABS so the share keeps its absolute
 * path), and an image without it degrades to /host with a reason.
 */
import type { GuestAgent } from "../qemu/qga.js";
import { EngineError } from "../errors.js";

export const MOUNT_HOST_FS = "/usr/local/bin/mount-host-fs";

export interface HostShareMount {
  /** Where the share is in the guest. */
  guestPath: string;
  /** Why the --path extension was not used, when it was wanted. */
  degraded?: string | undefined;
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
): Promise<HostShareMount> {
  const contract = ["--post-resume"];
  let extended = hostPath === "/" ? undefined : ["--post-resume", "--path", hostPath];
  const deadline = deps.now() + timeoutMs;
  const remaining = () => Math.max(1_000, deadline - deps.now());
  let last = "";
  for (;;) {
    if (extended) {
      const r = await agent.exec(MOUNT_HOST_FS, extended, { timeoutMs: remaining() });
      if (r.exitCode === 0) return { guestPath: `/host${hostPath}` };
      const why = r.stderr.toString().trim();
      // A too-early mount (device not bound yet) fails both forms; only the
      // extension failing while the contract's form works means no --path.
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
