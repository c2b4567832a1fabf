/**
 * arm64 guests on `virt` boot UEFI firmware, given to QEMU with `-bios` as
 * the seed does (QEMU loads it read-only into the first flash bank, so no
 * writable vars file is needed and the ROM travels with the snapshot).
 * Found where the seed looks, unless set explicitly.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { EngineError } from "../errors.js";
import type { Arch } from "../qemu/argv.js";

/** Homebrew's, Debian's qemu-efi-aarch64 / AAVMF, QEMU's own share dir. */
export const AARCH64_FIRMWARE_PATHS = [
  "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
  "/usr/local/share/qemu/edk2-aarch64-code.fd",
  "/usr/share/qemu/edk2-aarch64-code.fd",
  "/usr/share/AAVMF/AAVMF_CODE.fd",
  "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
] as const;

/**
 * The firmware for `arch`: undefined for amd64 (SeaBIOS is QEMU's built-in
 * default there). `qemuBinary` adds its own prefix's share dir first, so a
 * private QEMU uses the firmware it ships with.
 */
export function findFirmware(
  arch: Arch,
  explicit: string | undefined,
  qemuBinary: string,
  exists: (path: string) => boolean = existsSync,
): string | undefined {
  if (arch !== "arm64") return undefined;
  if (explicit !== undefined) {
    if (exists(explicit)) return explicit;
    throw new EngineError("FIRMWARE_NOT_FOUND", `the arm64 firmware ${explicit} does not exist`, {
      hint: "point EMULATOR_FIRMWARE (--firmware) at an aarch64 UEFI .fd, or unset it to search the usual places",
    });
  }
  const own = qemuBinary.includes("/")
    ? [join(qemuBinary, "..", "..", "share", "qemu", "edk2-aarch64-code.fd")]
    : [];
  const candidates = [...own, ...AARCH64_FIRMWARE_PATHS];
  const found = candidates.find((p) => exists(p));
  if (found) return found;
  throw new EngineError(
    "FIRMWARE_NOT_FOUND",
    `no arm64 UEFI firmware found (looked at: ${candidates.join(", ")})`,
    {
      hint: "install it (Debian/Ubuntu: apt-get install qemu-efi-aarch64; macOS: brew install qemu), or set EMULATOR_FIRMWARE",
    },
  );
}
