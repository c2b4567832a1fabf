/**
 * The snapshot store on a small tmpfs: a template capture is refused up front
 * (its RAM file could not fit), a stream capture runs out of space while it
 * migrates. Either way: a clear error, a readable store, nothing visible.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { start } from "../../../src/engine/lifecycle/start.js";
import { status } from "../../../src/engine/lifecycle/status.js";
import { openSnapshotStore } from "../../../src/engine/snapshot/store.js";
import type { TestEmulator } from "../../support/emulator.js";
import type { reliabilityFigures } from "../../support/reliability.js";

type Figures = ReturnType<typeof reliabilityFigures>;

export function diskFullScenario(emu: TestEmulator, rel: Figures): void {
  let mountPoint: string | undefined;
  let skipReason: string | undefined;

  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), "hxe-tmpfs-"));
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", dir], { stdio: "pipe" });
      mountPoint = dir;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      skipReason = `cannot mount a tmpfs here (${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message}); needs root or CAP_SYS_ADMIN`;
    }
  });
  afterAll(() => {
    if (!mountPoint) return; // nothing mounted (the tests skipped, saying why): nothing to undo
    execFileSync("umount", [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  const expectEmptyReadableStore = async (root: string) => {
    const listing = await openSnapshotStore(root).list();
    expect(listing.snapshots).toEqual([]);
    expect(listing.inProgress).toEqual([]);
    expect(readdirSync(root).filter((n) => n !== ".locks")).toEqual([]);
    expect(readdirSync(join(root, ".locks"))).toEqual([]);
  };

  it("refuses a template capture into a store without room for its RAM, before booting", async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    await emu.stop(emu.config());
    await rel.fault("store too small for a template capture", async () => {
      const c = emu.config({ snapshotDir: mountPoint!, snapshot: "required" });
      const err = (await start(c).catch((e: unknown) => e)) as {
        code: string;
        message: string;
        hint: string;
      };
      expect(err.code).toBe("SNAPSHOT_STORE_FULL");
      expect(err.message).toMatch(/the snapshot store has \d+ MiB free, a template capture needs 576 MiB/);
      expect(err.hint).toContain("HEXCLAVE_EMULATOR_SNAPSHOT_DIR");
      expect((await status(c)).vm.running).toBe(false);
      await expectEmptyReadableStore(mountPoint!);
      return err.message;
    });
  });

  it("fails a stream capture that fills the disk with a clear error and leaves nothing behind", async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    await emu.stop(emu.config());
    await rel.fault("disk full during a capture", async () => {
      const c = emu.config({ snapshotDir: mountPoint!, snapshot: "required", strategy: "stream" });
      const err = (await start(c).catch((e: unknown) => e)) as { code: string; message: string };
      expect(err.message).toMatch(/No space left on device|ENOSPC/);
      expect((await status(c)).vm.running).toBe(false);
      await expectEmptyReadableStore(mountPoint!);
      const fs = statfsSync(mountPoint!);
      expect(fs.bfree * fs.bsize).toBeGreaterThan(23 * 1024 * 1024); // the partial files are gone
      return `${err.code}: ${err.message.split("\n")[0]}`;
    });
  });
}
