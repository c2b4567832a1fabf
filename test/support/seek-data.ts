import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MiB = 1024 * 1024;

/**
 * Whether lseek(SEEK_DATA) finds the data past a hole here (perl present, a
 * platform with known SEEK_DATA, a file system that reports holes), asked of
 * perl directly rather than through the engine's dataMap(), so a dataMap()
 * that wrongly gives up makes the seek tests fail instead of skipping them.
 */
export async function seekDataWorks(): Promise<boolean> {
  const seekData = { linux: 3, darwin: 4 }[process.platform as string];
  if (seekData === undefined) return false;
  const dir = mkdtempSync(join(tmpdir(), "hxe-seek-probe-"));
  const path = join(dir, "sparse");
  try {
    const fh = await open(path, "w");
    await fh.truncate(16 * MiB);
    await fh.write(Buffer.alloc(4096, 1), 0, 4096, 8 * MiB);
    await fh.close();
    const script = `open(my $f, "<", $ARGV[0]) or die; my $d = sysseek($f, 0, ${seekData}); print defined $d ? $d + 0 : -1`;
    return execFileSync("perl", ["-e", script, path], { encoding: "utf8" }) === String(8 * MiB);
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const NEEDS_SEEK = "(runs only where SEEK_DATA reports holes)";
export const NEEDS_NO_SEEK = "(runs only where SEEK_DATA reports no holes)";
