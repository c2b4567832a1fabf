/**
 * Making /dev/kvm usable on a Linux runner, as the enable-kvm input says.
 * GitHub's larger Linux runners (and most self-hosted ones) have /dev/kvm,
 * but owned by root:kvm with mode 0660 and the runner user outside the kvm
 * group.
 *
 * - false: /dev/kvm is never touched; it is used when it already is usable,
 *   else QEMU falls back to TCG (software emulation).
 * - auto (the default): when /dev/kvm is there but this user cannot open it,
 *   and root is at hand (running as root, or sudo without a password, as on
 *   hosted runners), this user is granted rw on the device node for this boot
 *   only. When that cannot be done, it says so and the job goes on under TCG.
 * - true: the same, but the step fails (KVM_UNAVAILABLE) when KVM cannot be
 *   made usable, /dev/kvm missing included.
 *
 * Nothing persists: no udev rule, no group membership. The grant is an ACL
 * entry on the device node (`setfacl -m u:<uid>:rw`): it names this user
 * only, leaves the node's owner, group and mode as they are, and goes with
 * the node (devtmpfs is recreated at each boot). Whether KVM then really
 * works is QEMU's call (the engine asks it); this only says what was done.
 */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { delimiter, join } from "node:path";
import { EngineError, run } from "../engine/index.js";
import type { ActionInputs } from "./inputs.js";
import { canBeRoot, isRoot } from "./root.js";

/** The enable-kvm input. */
export type KvmMode = ActionInputs["enableKvm"];

export interface KvmReport {
  /**
   * usable: it already was; enabled: this step granted access; missing: no
   * /dev/kvm; not-writable: it is there but stays unusable (TCG);
   * not-linux: KVM does not apply (macOS uses HVF).
   */
  state: "usable" | "enabled" | "missing" | "not-writable" | "not-linux";
  /** One sentence for the log and the summary: what was found, and what was done. */
  message: string;
}

export interface KvmDeps {
  platform: NodeJS.Platform;
  device: string;
  /** The runner user's uid: the one granted access. */
  uid: number;
  exists(path: string): boolean;
  /** Whether this process can open the path for reading and writing. */
  writable(path: string): boolean;
  isRoot: boolean;
  /** Runs a command with root privileges (sudo -n when not root); rejects on failure. */
  asRoot(argv: string[]): Promise<void>;
  /** Whether asRoot can work at all (root, or passwordless sudo). */
  canBeRoot(): Promise<boolean>;
  /** The absolute path of an installed command, or undefined when there is none. */
  which(command: string): string | undefined;
}

/** Where commands are looked for besides PATH: sudo's secure_path has the sbin directories. */
const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

export function hostKvmDeps(): KvmDeps {
  return {
    platform: process.platform,
    device: "/dev/kvm",
    uid: typeof process.getuid === "function" ? process.getuid() : -1,
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
    asRoot: async (argv) => {
      const [file, ...args] = isRoot ? argv : ["sudo", "-n", ...argv];
      await run(file!, args, { timeoutMs: 30_000 });
    },
    canBeRoot,
    which: (command) => {
      const dirs = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), ...SYSTEM_DIRS];
      for (const dir of dirs) {
        const path = join(dir, command);
        try {
          accessSync(path, constants.X_OK);
          if (statSync(path).isFile()) return path;
        } catch {
          // not here
        }
      }
      return undefined;
    },
  };
}

const TCG = "QEMU will use TCG (software emulation, about four times slower)";

/**
 * Makes /dev/kvm usable as `mode` allows, and says what it found and did.
 * Rejects (KVM_UNAVAILABLE) only when mode is "true" and KVM stays unusable.
 */
export async function ensureKvm(mode: KvmMode, deps: KvmDeps = hostKvmDeps()): Promise<KvmReport> {
  const dev = deps.device;
  const who = `uid ${deps.uid}`;
  if (deps.platform !== "linux") {
    return { state: "not-linux", message: `not a Linux runner (${deps.platform}): /dev/kvm does not apply` };
  }
  if (!deps.exists(dev)) {
    const message = `${dev} does not exist: this runner offers no KVM, so ${TCG}`;
    if (mode === "true") {
      throw unavailable(`enable-kvm is true, but ${dev} does not exist: this runner offers no KVM`, [
        "use a runner with virtualization (a larger GitHub-hosted runner, or a self-hosted one with KVM)",
      ]);
    }
    return { state: "missing", message };
  }
  if (deps.writable(dev)) return { state: "usable", message: `${dev} is readable and writable by ${who}` };
  if (mode === "false") {
    return {
      state: "not-writable",
      message: `${dev} exists but ${who} cannot open it; enable-kvm is false, so it was left as it is and ${TCG}`,
    };
  }
  if (!(await deps.canBeRoot())) {
    const why = `${dev} exists but ${who} cannot open it, and granting access needs root (sudo asks for a password)`;
    if (mode === "true") {
      throw unavailable(`enable-kvm is true, but ${why}`, [
        "add the runner user to the kvm group",
        "or give it passwordless sudo",
      ]);
    }
    return {
      state: "not-writable",
      message: `${why}: ${TCG} (add the runner user to the kvm group for KVM)`,
    };
  }

  const tried: string[] = [];
  const setfacl = deps.which("setfacl");
  if (setfacl) {
    const argv = [setfacl, "-m", `u:${deps.uid}:rw`, dev];
    try {
      await deps.asRoot(argv);
      if (deps.writable(dev)) {
        return { state: "enabled", message: `granted ${who} rw on ${dev} with an ACL (until reboot)` };
      }
      tried.push(`setfacl -m u:${deps.uid}:rw ${dev} ran, but the device is still not writable`);
    } catch (err) {
      tried.push(`setfacl -m u:${deps.uid}:rw ${dev} failed: ${firstLine(err)}`);
    }
  } else {
    tried.push("setfacl is not installed (package acl)");
  }
  // The fallback, where there is no setfacl (or the filesystem refuses ACLs):
  // `chmod o+rw`, the mode upstream systemd's own udev rule gives /dev/kvm
  // (0666). Like the ACL it lasts until reboot (devtmpfs is recreated), but
  // it lets every user on the machine open the device, not only this one.
  // It is still the least invasive of the non-persistent choices: `chown
  // <uid>` would take the device from another runner user who holds it the
  // same way (several runners on one machine), `chgrp` would drop the kvm
  // group's access, and adding the user to the kvm group persists (and does
  // not reach this already running process anyway).
  try {
    await deps.asRoot(["chmod", "o+rw", dev]);
    if (deps.writable(dev)) {
      return {
        state: "enabled",
        message: `made ${dev} readable and writable by every user with chmod o+rw (until reboot), since ${tried.join("; ")}`,
      };
    }
    tried.push(`chmod o+rw ${dev} ran, but the device is still not writable`);
  } catch (err) {
    tried.push(`chmod o+rw ${dev} failed: ${firstLine(err)}`);
  }
  const why = `${dev} is still not usable by ${who} after trying: ${tried.join("; ")}`;
  if (mode === "true") {
    throw unavailable(`enable-kvm is true, but ${why}`, [
      "install acl (setfacl) or add the runner user to the kvm group",
    ]);
  }
  return { state: "not-writable", message: `${why}: ${TCG}` };
}

function unavailable(message: string, fixes: string[]): EngineError {
  return new EngineError("KVM_UNAVAILABLE", message, {
    hint: `${fixes.join(", ")}; or set enable-kvm: auto to fall back to software emulation (TCG)`,
  });
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0] ?? "";
}
