import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { findQemuImg } from "../../src/engine/host/probe.js";
import { findFirmware, AARCH64_FIRMWARE_PATHS } from "../../src/engine/host/firmware.js";
import { checkImage } from "../../src/engine/image/check.js";

function dirWith(...names: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "hxe-tools-"));
  for (const n of names) {
    writeFileSync(join(dir, n), "#!/bin/sh\n");
    chmodSync(join(dir, n), 0o755);
  }
  return dir;
}

describe("finding qemu-img", () => {
  it("takes the one beside the QEMU binary first", () => {
    const prefix = dirWith("qemu-system-x86_64", "qemu-img");
    const other = dirWith("qemu-img");
    expect(findQemuImg(join(prefix, "qemu-system-x86_64"), undefined, { PATH: other })).toBe(
      join(prefix, "qemu-img"),
    );
  });

  it("falls back to PATH when a wrapper has no qemu-img beside it", () => {
    const wrapper = dirWith("qemu10");
    const bin = dirWith("qemu-img");
    expect(findQemuImg(join(wrapper, "qemu10"), undefined, { PATH: `/nonexistent:${bin}` })).toBe(
      join(bin, "qemu-img"),
    );
  });

  it("prefers an explicit QEMU_IMG", () => {
    const prefix = dirWith("qemu-system-x86_64", "qemu-img");
    const chosen = join(dirWith("my-qemu-img"), "my-qemu-img");
    expect(findQemuImg(join(prefix, "qemu-system-x86_64"), chosen, { PATH: "" })).toBe(chosen);
  });

  it("names every place it looked when there is none", () => {
    const wrapper = dirWith("qemu10");
    expect(() => findQemuImg(join(wrapper, "qemu10"), undefined, { PATH: "/nonexistent" })).toThrow(
      expect.objectContaining({
        code: "QEMU_IMG_NOT_FOUND",
        message: expect.stringContaining(join(wrapper, "qemu-img")),
        hint: expect.stringContaining("QEMU_IMG"),
      }),
    );
  });

  it("refuses a QEMU_IMG that does not exist rather than guessing", () => {
    expect(() => findQemuImg("/usr/bin/qemu-system-x86_64", "/nope/qemu-img", {})).toThrow(
      expect.objectContaining({
        code: "QEMU_IMG_NOT_FOUND",
        message: expect.stringContaining("/nope/qemu-img"),
      }),
    );
  });
});

describe("checking the image before any launch", () => {
  const dir = mkdtempSync(join(tmpdir(), "hxe-image-"));

  it("reports a missing image with the pull hint", () => {
    expect(() => checkImage(join(dir, "missing.qcow2"), "amd64")).toThrow(
      expect.objectContaining({ code: "IMAGE_NOT_FOUND", hint: expect.stringContaining("pull") }),
    );
  });

  it("refuses a directory", () => {
    expect(() => checkImage(dir, "amd64")).toThrow(expect.objectContaining({ code: "IMAGE_INVALID" }));
  });

  it("refuses a file that is not qcow2 (e.g. /etc/passwd) with the convert hint", () => {
    expect(() => checkImage("/etc/passwd", "amd64")).toThrow(
      expect.objectContaining({
        code: "IMAGE_INVALID",
        message: "the image /etc/passwd is not a qcow2 file",
        hint: expect.stringContaining("qemu-img convert -O qcow2"),
      }),
    );
  });

  it("refuses a raw disk image", () => {
    const raw = join(dir, "disk.raw");
    writeFileSync(raw, Buffer.alloc(1 << 20));
    expect(() => checkImage(raw, "amd64")).toThrow(expect.objectContaining({ code: "IMAGE_INVALID" }));
  });

  it("accepts a qcow2 and reads its virtual size", () => {
    const img = join(dir, "ok.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", img, "64M"]);
    expect(checkImage(img, "amd64")).toEqual({ qcow2Version: 3, virtualBytes: 64 * 1024 * 1024 });
  });

  it("refuses the release image of the other architecture by its name", () => {
    const sub = join(dir, "rel");
    mkdirSync(sub, { recursive: true });
    const img = join(sub, "stack-emulator-arm64.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", img, "1M"]);
    expect(() => checkImage(img, "amd64")).toThrow(
      expect.objectContaining({
        code: "IMAGE_ARCH_MISMATCH",
        hint: expect.stringContaining("EMULATOR_ARCH=arm64"),
      }),
    );
    expect(checkImage(img, "arm64").qcow2Version).toBe(3);
  });
});

describe("arm64 UEFI firmware", () => {
  const only =
    (...present: string[]) =>
    (p: string) =>
      present.includes(p);

  it("is not used on amd64", () => {
    expect(findFirmware("amd64", undefined, "/usr/bin/qemu-system-x86_64", () => true)).toBeUndefined();
  });

  it("is found where the seed looks, in order", () => {
    expect(
      findFirmware("arm64", undefined, "qemu-system-aarch64", only("/usr/share/AAVMF/AAVMF_CODE.fd")),
    ).toBe("/usr/share/AAVMF/AAVMF_CODE.fd");
    expect(
      findFirmware(
        "arm64",
        undefined,
        "qemu-system-aarch64",
        only("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", "/opt/homebrew/share/qemu/edk2-aarch64-code.fd"),
      ),
    ).toBe("/opt/homebrew/share/qemu/edk2-aarch64-code.fd");
  });

  it("prefers the firmware a private QEMU prefix ships", () => {
    const mine = "/opt/q/share/qemu/edk2-aarch64-code.fd";
    expect(
      findFirmware(
        "arm64",
        undefined,
        "/opt/q/bin/qemu-system-aarch64",
        only(mine, AARCH64_FIRMWARE_PATHS[3]),
      ),
    ).toBe(mine);
  });

  it("takes an explicit setting, and refuses one that does not exist", () => {
    expect(findFirmware("arm64", "/fw/efi.fd", "x", only("/fw/efi.fd"))).toBe("/fw/efi.fd");
    expect(() => findFirmware("arm64", "/fw/none.fd", "x", only())).toThrow(
      expect.objectContaining({
        code: "FIRMWARE_NOT_FOUND",
        message: expect.stringContaining("/fw/none.fd"),
      }),
    );
  });

  it("names every place looked and how to install it when there is none", () => {
    expect(() => findFirmware("arm64", undefined, "qemu-system-aarch64", only())).toThrow(
      expect.objectContaining({
        code: "FIRMWARE_NOT_FOUND",
        message: expect.stringContaining("/usr/share/AAVMF/AAVMF_CODE.fd"),
        hint: expect.stringContaining("qemu-efi-aarch64"),
      }),
    );
  });
});
