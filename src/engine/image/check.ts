/**
 * The image, checked before anything is launched: a QEMU started on a file
 * that is not a qcow2 fails deep in a capture and again in the cold boot
 * that follows, with QEMU's words. One error up front names the problem.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { basename } from "node:path";
import { EngineError } from "../errors.js";
import type { Arch } from "../qemu/argv.js";

/** "QFI\xfb": the first four bytes of every qcow2 (QEMU's docs/interop/qcow2.txt). */
const QCOW2_MAGIC = 0x514649fb;

export interface ImageFacts {
  /** qcow2 header version (2 or 3). */
  qcow2Version: number;
  virtualBytes: number;
}

export function checkImage(path: string, arch: Arch): ImageFacts {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new EngineError(
      "IMAGE_NOT_FOUND",
      code === "ENOENT" ? `the image ${path} does not exist` : `the image ${path} cannot be read (${code})`,
      { hint: "give the path of a stack-emulator-<arch>.qcow2 (hexclave-emulator pull downloads one)" },
    );
  }
  if (!st.isFile()) {
    throw new EngineError("IMAGE_INVALID", `the image ${path} is not a regular file`, {
      hint: "give the path of a qcow2 file, not a directory or device",
    });
  }
  const header = Buffer.alloc(32);
  let got = 0;
  try {
    const fd = openSync(path, "r");
    try {
      got = readSync(fd, header, 0, header.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new EngineError(
      "IMAGE_NOT_FOUND",
      `the image ${path} cannot be read (${(err as NodeJS.ErrnoException).code})`,
      { hint: "check the file's permissions for the user running the emulator" },
    );
  }
  if (got < header.length || header.readUInt32BE(0) !== QCOW2_MAGIC) {
    throw new EngineError("IMAGE_INVALID", `the image ${path} is not a qcow2 file`, {
      hint: "the emulator boots qcow2 images only: convert a raw one with `qemu-img convert -O qcow2 IN OUT`, or download the release image with hexclave-emulator pull",
    });
  }
  const named = /stack-emulator-(amd64|arm64)\.qcow2$/.exec(basename(path))?.[1];
  if (named && named !== arch) {
    throw new EngineError(
      "IMAGE_ARCH_MISMATCH",
      `the image ${path} is the ${named} image, but arch is ${arch}`,
      {
        hint: `use stack-emulator-${arch}.qcow2, or set EMULATOR_ARCH=${named} (it then runs under TCG unless the host is ${named})`,
      },
    );
  }
  return { qcow2Version: header.readUInt32BE(4), virtualBytes: Number(header.readBigUInt64BE(24)) };
}
