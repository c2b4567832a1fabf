/** The host: architecture, OS, and which accelerator a guest can use. */
import { accessSync, constants, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import type { Accelerator, Arch } from "../qemu/argv.js";

export type HostOs = "linux" | "darwin" | "windows" | "other";

export interface HostInfo {
  arch: Arch;
  os: HostOs;
  /** /dev/kvm exists and this user can open it read-write. */
  kvmWritable: boolean;
  /**
   * The CPU advertises hardware virtualization (vmx/svm on x86). Some
   * sandboxes expose a /dev/kvm that opens but cannot run a guest.
   */
  cpuVirtualization: boolean;
}

export function hostArch(nodeArch: string = process.arch): Arch {
  if (nodeArch === "x64") return "amd64";
  if (nodeArch === "arm64") return "arm64";
  throw new Error(`unsupported host architecture ${nodeArch}: the emulator runs on amd64 and arm64 hosts`);
}

export function hostOs(platform: string = process.platform): HostOs {
  if (platform === "linux") return "linux";
  if (platform === "darwin") return "darwin";
  if (platform === "win32") return "windows";
  return "other";
}

export function detectHost(): HostInfo {
  let kvmWritable = false;
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    kvmWritable = true;
  } catch {
    kvmWritable = false;
  }
  const arch = hostArch();
  const flags = /^flags\s*:(.*)$/m.exec(safeRead("/proc/cpuinfo"))?.[1] ?? "";
  const cpuVirtualization = arch === "arm64" || /\b(vmx|svm)\b/.test(flags);
  return { arch, os: hostOs(), kvmWritable, cpuVirtualization };
}

export interface AcceleratorChoice {
  accelerator: Accelerator;
  reason: string;
}

/**
 * The accelerator to ask for, before QEMU confirms it (see probe.ts: QEMU's
 * `query-kvm` has the last word, because a writable /dev/kvm on a host
 * without VT-x still cannot run a VM).
 */
export function chooseAccelerator(
  host: HostInfo,
  guestArch: Arch,
  qemu: { kvmUsable?: boolean; hvfListed?: boolean },
): AcceleratorChoice {
  if (guestArch !== host.arch) {
    return { accelerator: "tcg", reason: `an ${guestArch} guest on an ${host.arch} host runs under TCG` };
  }
  if (host.os === "linux") {
    if (!host.kvmWritable) return { accelerator: "tcg", reason: "/dev/kvm is missing or not writable" };
    if (!host.cpuVirtualization) {
      return {
        accelerator: "tcg",
        reason: "/dev/kvm is writable but the CPU advertises no VT-x/AMD-V (vmx/svm)",
      };
    }
    if (qemu.kvmUsable === false) {
      return {
        accelerator: "tcg",
        reason: "/dev/kvm is writable but QEMU could not enable KVM (no VT-x/AMD-V?)",
      };
    }
    return { accelerator: "kvm", reason: "/dev/kvm is writable and QEMU enabled KVM" };
  }
  if (host.os === "darwin" && qemu.hvfListed) return { accelerator: "hvf", reason: "QEMU lists hvf" };
  return { accelerator: "tcg", reason: `no hardware accelerator on ${host.os}` };
}

export interface CpuFingerprint {
  vendor: string;
  model: string;
  flagsHash: string;
  /** What goes into the snapshot key. */
  id: string;
}

/**
 * Under TCG the host CPU is invisible to the guest (QEMU emulates the model),
 * so the fingerprint is the model alone and a TCG snapshot moves between
 * runners. Under KVM/HVF the host's vendor, model and flags matter (from
 * /proc/cpuinfo; macOS has none, so an HVF fingerprint names only the model).
 */
export function cpuFingerprint(accelerator: Accelerator, cpuModel: string, cpuinfo?: string): CpuFingerprint {
  if (accelerator === "tcg") {
    return { vendor: "tcg", model: cpuModel, flagsHash: "-", id: `tcg:${cpuModel}` };
  }
  const text = cpuinfo ?? safeRead("/proc/cpuinfo");
  const field = (name: string): string =>
    new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(text)?.[1]?.trim() ?? "unknown";
  // x86 names its CPU by vendor_id, model name and flags; arm64 Linux by its
  // implementer and part (the core: KVM runs the guest on exactly that) and
  // Features, and the part goes into the id.
  const arm = !/^vendor_id\s*:/m.test(text) && /^CPU implementer\s*:/m.test(text);
  const flags = field(arm ? "Features" : "flags")
    .split(/\s+/)
    .sort()
    .join(" ");
  const flagsHash = createHash("sha256").update(flags).digest("hex").slice(0, 12);
  if (arm) {
    const vendor = `arm:${field("CPU implementer")}`;
    const model = field("CPU part");
    return { vendor, model, flagsHash, id: `${accelerator}:${cpuModel}:${vendor}:${model}:${flagsHash}` };
  }
  const vendor = field("vendor_id");
  const model = field("model name");
  return { vendor, model, flagsHash, id: `${accelerator}:${cpuModel}:${vendor}:${flagsHash}` };
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
