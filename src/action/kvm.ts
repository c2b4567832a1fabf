/**
 * Making /dev/kvm usable on a Linux runner. GitHub's larger Linux runners
 * (and most self-hosted ones) have /dev/kvm, but owned by root:kvm with mode
 * 0660 and the runner user outside the kvm group. The documented fix is a
 * udev rule giving everyone access, with a chmod as a fallback for hosts
 * where udev does not run. Both need root: sudo without a password (as on
 * hosted runners), or running as root. Whether KVM then really works is
 * QEMU's call (the engine asks it); this only says what was done and why.
 */
import { accessSync, constants, existsSync } from "node:fs";
import { run } from "../engine/index.js";
import { canBeRoot, isRoot } from "./root.js";

export interface KvmReport {
  state: "usable" | "enabled" | "missing" | "not-writable" | "not-linux";
  /** One sentence for the log and the summary. */
  message: string;
}

export interface KvmDeps {
  platform: NodeJS.Platform;
  device: string;
  exists(path: string): boolean;
  writable(path: string): boolean;
  isRoot: boolean;
  /** Runs a command with root privileges (sudo -n when not root); rejects on failure. */
  asRoot(argv: string[], input?: string): Promise<void>;
  /** Whether asRoot can work at all (root, or passwordless sudo). */
  canBeRoot(): Promise<boolean>;
}

export const UDEV_RULE_FILE = "/etc/udev/rules.d/99-hexclave-kvm.rules";
export const UDEV_RULE = 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"\n';

export function hostKvmDeps(): KvmDeps {
  const asRoot = async (argv: string[], input?: string) => {
    const [file, ...args] = isRoot ? argv : ["sudo", "-n", ...argv];
    await run(file!, args, { timeoutMs: 30_000, ...(input === undefined ? {} : { input }) });
  };
  return {
    platform: process.platform,
    device: "/dev/kvm",
    exists: existsSync,
    writable: (p) => {
      try {
        accessSync(p, constants.R_OK | constants.W_OK);
        return true;
      } catch {
        return false;
      }
    },
    isRoot,
    asRoot,
    canBeRoot,
  };
}

export async function ensureKvm(deps: KvmDeps = hostKvmDeps()): Promise<KvmReport> {
  const dev = deps.device;
  if (deps.platform !== "linux") {
    return { state: "not-linux", message: `not a Linux runner (${deps.platform}): /dev/kvm does not apply` };
  }
  if (!deps.exists(dev)) {
    return {
      state: "missing",
      message: `${dev} does not exist: this runner offers no KVM (use a larger runner or a self-hosted one with virtualization for speed)`,
    };
  }
  if (deps.writable(dev)) return { state: "usable", message: `${dev} is readable and writable by this user` };
  if (!(await deps.canBeRoot())) {
    return {
      state: "not-writable",
      message: `${dev} exists but this user cannot open it, and sudo needs a password: add the runner user to the kvm group`,
    };
  }
  const done: string[] = [];
  const failed: string[] = [];
  try {
    await deps.asRoot(["tee", UDEV_RULE_FILE], UDEV_RULE);
    await deps.asRoot(["udevadm", "control", "--reload-rules"]);
    await deps.asRoot(["udevadm", "trigger", "--name-match=kvm"]);
    done.push(`installed the udev rule ${UDEV_RULE_FILE}`);
  } catch (err) {
    failed.push(`udev rule: ${firstLine(err)}`);
  }
  if (!deps.writable(dev)) {
    try {
      await deps.asRoot(["chmod", "666", dev]);
      done.push(`chmod 666 ${dev}`);
    } catch (err) {
      failed.push(`chmod: ${firstLine(err)}`);
    }
  }
  if (deps.writable(dev)) {
    return { state: "enabled", message: `made ${dev} usable (${done.join(", ")})` };
  }
  return {
    state: "not-writable",
    message: `${dev} is still not writable after trying (${[...done, ...failed].join("; ")})`,
  };
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0] ?? "";
}
