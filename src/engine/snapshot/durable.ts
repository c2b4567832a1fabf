/**
 * Durability helpers: what "written" means for files a crash must not
 * half-publish. Data is fsynced before anything that points at it (a marker, a
 * rename) is made durable in turn.
 */
import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

/** Hex of `bytes` random bytes: suffixes for temporary names. */
export function randomHex(bytes = 4): string {
  return randomBytes(bytes).toString("hex");
}

/** fsync a regular file's data and metadata. */
export async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * fsync a directory so the names created, renamed or removed in it survive a
 * crash. Some platforms and file systems refuse fsync on a directory handle
 * (EINVAL, EISDIR, EPERM, EBADF); there is nothing more to do there.
 */
export async function fsyncDir(path: string): Promise<void> {
  let fh;
  try {
    fh = await open(path, "r");
    await fh.sync();
  } catch (err) {
    if (!isErrno(err, "EINVAL", "EISDIR", "EPERM", "EBADF", "ENOTSUP")) throw err;
  } finally {
    await fh?.close();
  }
}

/** Write (create or truncate) and fsync. `exclusive` fails with EEXIST if the file exists. */
export async function writeFileDurable(
  path: string,
  data: string | Uint8Array,
  { exclusive = false }: { exclusive?: boolean } = {},
): Promise<void> {
  const fh = await open(path, exclusive ? "wx" : "w");
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replace `path` atomically: readers see the old content or the new, never a mix. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${randomHex()}`;
  try {
    await writeFileDurable(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(path));
}

export function isErrno(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && codes.includes((err as NodeJS.ErrnoException).code ?? "");
}
