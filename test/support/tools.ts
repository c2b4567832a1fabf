import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/** Where scripts/install-qemu.sh and test/guest/build.sh put their outputs. */
export const CACHE_ROOT = process.env.HEXCLAVE_CACHE ?? join(homedir(), ".cache", "hexclave-emulator");
const TOOLS_DIR = process.env.HEXCLAVE_TOOLS_DIR ?? join(CACHE_ROOT, "tools");
export const REPO_ROOT = resolve(import.meta.dirname, "..", "..");

export interface QemuTarget {
  /** "qemu-7.2" or "qemu-10": used in test names. */
  label: string;
  /** qemu-system-x86_64 (may be a wrapper script). */
  binary: string;
  /** The matching qemu-img. */
  img: string;
}

/**
 * The QEMUs every QEMU scenario runs against: the host's bookworm 7.2 and the
 * private-prefix trixie 10. HEXCLAVE_TEST_QEMU=7.2 or =10 narrows the list.
 */
export function qemuTargets(): QemuTarget[] {
  const all: QemuTarget[] = [
    { label: "qemu-7.2", binary: "/usr/bin/qemu-system-x86_64", img: "/usr/bin/qemu-img" },
    {
      label: "qemu-10",
      binary: join(TOOLS_DIR, "qemu-10", "bin", "qemu-system-x86_64"),
      img: join(TOOLS_DIR, "qemu-10", "bin", "qemu-img"),
    },
  ];
  const only = process.env.HEXCLAVE_TEST_QEMU;
  const chosen = only ? all.filter((t) => t.label === `qemu-${only}`) : all;
  for (const t of chosen) {
    if (!existsSync(t.binary)) {
      throw new Error(`${t.label} is not installed at ${t.binary}: run bash scripts/install-qemu.sh`);
    }
  }
  return chosen;
}

/**
 * The aarch64 QEMUs the arm64 scenarios run against: bookworm's 7.2
 * (qemu-system-arm) and the private-prefix trixie 10, both installed by
 * scripts/install-qemu.sh (without --host-only). `binary` is
 * qemu-system-aarch64. HEXCLAVE_TEST_QEMU narrows the list as for qemuTargets().
 */
export function arm64QemuTargets(): QemuTarget[] {
  const all: QemuTarget[] = [
    { label: "qemu-7.2", binary: "/usr/bin/qemu-system-aarch64", img: "/usr/bin/qemu-img" },
    {
      label: "qemu-10",
      binary: join(TOOLS_DIR, "qemu-10", "bin", "qemu-system-aarch64"),
      img: join(TOOLS_DIR, "qemu-10", "bin", "qemu-img"),
    },
  ];
  const only = process.env.HEXCLAVE_TEST_QEMU;
  const chosen = only ? all.filter((t) => t.label === `qemu-${only}`) : all;
  for (const t of chosen) {
    if (!existsSync(t.binary)) {
      throw new Error(`${t.label} aarch64 is not installed at ${t.binary}: run bash scripts/install-qemu.sh`);
    }
  }
  return chosen;
}

const guestPaths = new Map<string, string>();
/**
 * The test guest image (built and cached by test/guest/build.sh): the full
 * flavour, or "contract", which offers the engine the guest contract and
 * nothing more (no hwclock or date, no mount-host-fs --path). `arch` arm64:
 * the UEFI guest for virt (stack-emulator-arm64.qcow2), built from Debian's
 * arm64 packages; its first build takes a few minutes.
 */
export function testGuestImage(
  flavour: "full" | "contract" = "full",
  arch: "amd64" | "arm64" = "amd64",
): string {
  const id = arch === "amd64" ? flavour : `${arch}:${flavour}`;
  let path = guestPaths.get(id);
  if (path === undefined) {
    const args = [join(REPO_ROOT, "test/guest/build.sh"), "--print-path", "--flavour", flavour];
    if (arch !== "amd64") args.push("--arch", arch);
    path = execFileSync("bash", args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
    guestPaths.set(id, path);
  }
  return path;
}
