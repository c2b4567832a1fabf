/** qcow2 overlays and the small files a layout needs, made with qemu-img. */
import {
  chmodSync,
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { run } from "../exec.js";

export async function virtualSize(qemuImg: string, image: string): Promise<number> {
  const { stdout } = await run(qemuImg, ["info", "--output=json", "-U", image], { timeoutMs: 30_000 });
  return (JSON.parse(stdout) as { "virtual-size": number })["virtual-size"];
}

const QCOW2_MAGIC = 0x514649fb;

/**
 * The virtual size a qcow2 header records (big-endian u64 at byte 24, after
 * the magic and version), or undefined for a file that is not qcow2 2 or 3.
 * For the engine's own overlays, whose size is their base image's: a resume
 * reads it here instead of spawning `qemu-img info`.
 */
export function qcow2VirtualSize(path: string): number | undefined {
  const header = Buffer.alloc(32);
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    if (readSync(fd, header, 0, header.length, 0) < header.length) return undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const version = header.readUInt32BE(4);
  if (header.readUInt32BE(0) !== QCOW2_MAGIC || (version !== 2 && version !== 3)) return undefined;
  const size = Number(header.readBigUInt64BE(24));
  return Number.isSafeInteger(size) && size > 0 ? size : undefined;
}

/**
 * A qcow2 overlay on `backing`. Created with -u and an explicit size so the
 * backing chain need not resolve from the paths recorded inside it (QEMU is
 * given the chain explicitly at launch).
 */
export async function createOverlay(
  qemuImg: string,
  path: string,
  backing: string,
  size: number,
): Promise<void> {
  rmSync(path, { force: true });
  await run(
    qemuImg,
    ["create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "qcow2", path, String(size)],
    {
      timeoutMs: 30_000,
    },
  );
  // The guest writes its live secrets to its disk: the overlay is the user's alone.
  chmodSync(path, 0o600);
}

/** The 1 MiB read-only placeholders in the slots the image's build-time ISOs had. */
export function ensurePhantoms(paths: readonly [string, string]): void {
  for (const p of paths) {
    if (!existsSync(p) || statSync(p).size !== 1024 * 1024)
      writeFileSync(p, Buffer.alloc(1024 * 1024), { mode: 0o600 });
  }
}

/** size:mtime of the base image: a cold overlay is reused only over the same base. */
export function baseFingerprint(image: string): string {
  const st = statSync(image);
  return `${st.size}:${Math.floor(st.mtimeMs)}:${st.ino}`;
}

export function readFingerprint(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}
