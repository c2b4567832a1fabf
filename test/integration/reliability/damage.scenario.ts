/**
 * Each part of a snapshot damaged in turn — truncated, one bit flipped,
 * missing — beyond the cases lifecycle.scenario.ts already covers (truncated
 * RAM, overwritten device state, foreign manifest, missing disk layer).
 * snapshot=required makes each case cheap: the damage must be found and the
 * snapshot quarantined before anything boots. One case runs with
 * snapshot=auto to show the cold-boot fallback end to end.
 */
import { execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { start } from "../../../src/engine/lifecycle/start.js";
import { status } from "../../../src/engine/lifecycle/status.js";
import { readPck, sha256, type TestEmulator } from "../../support/emulator.js";
import type { reliabilityFigures } from "../../support/reliability.js";
import { ensureSnapshot } from "./helpers.js";

type Figures = ReturnType<typeof reliabilityFigures>;
type Damage = "truncated" | "bit-flipped" | "missing";

const PARTS = [
  ["manifest", "manifest.json", /manifest/],
  ["device state", "device-state.bin", /device-state\.bin/],
  ["RAM", "ram.bin", /ram\.bin/],
  ["disk layer", "disk-layer.qcow2", /disk-layer\.qcow2/],
] as const;

/** Already covered by lifecycle.scenario.ts. */
const COVERED = new Set(["RAM truncated", "disk layer missing"]);

/** Flips one bit in the middle of the file's data (a hole would read back as zeros: find data). */
function flipBit(path: string): void {
  const size = statSync(path).size;
  const fd = openSync(path, "r+");
  try {
    const buf = Buffer.alloc(4096);
    const blocks = Math.ceil(size / 4096);
    for (let b = 0, off = Math.floor(size / 2 / 4096) * 4096; b < blocks; b++, off = (off + 4096) % size) {
      const n = readSync(fd, buf, 0, buf.length, off);
      const i = buf.subarray(0, n).findIndex((x) => x !== 0);
      if (i < 0) continue;
      writeSync(fd, Buffer.from([buf[i]! ^ 0x10]), 0, 1, off + i);
      return;
    }
  } finally {
    closeSync(fd);
  }
  throw new Error(`${path} holds no data to flip a bit in`);
}

function damage(path: string, how: Damage): void {
  if (how === "missing") rmSync(path);
  else if (how === "truncated") truncateSync(path, Math.floor(statSync(path).size / 2));
  else flipBit(path);
}

/** A copy of the snapshot made of hard links, except `copied` (a real, sparse copy to damage). */
function cloneSnapshot(from: string, to: string, copied: string): void {
  rmSync(to, { recursive: true, force: true });
  mkdirSync(to);
  for (const name of readdirSync(from)) {
    if (name === copied) execFileSync("cp", ["--sparse=always", join(from, name), join(to, name)]);
    else linkSync(join(from, name), join(to, name));
  }
}

export function damageScenario(emu: TestEmulator, rel: Figures): void {
  const config = emu.config();
  const required = emu.config({ snapshot: "required" });
  let key: string;
  let dir: string;
  let keep: string;

  // The intact snapshot is moved aside; each test damages a copy of it.
  beforeAll(async () => {
    key = await ensureSnapshot(emu, config);
    dir = join(config.snapshotDir, key);
    keep = join(emu.home, "intact-snapshot");
    renameSync(dir, keep);
  });
  afterAll(() => {
    if (existsSync(keep)) {
      rmSync(dir, { recursive: true, force: true });
      renameSync(keep, dir);
    }
  });

  const quarantined = () => {
    const q = join(config.snapshotDir, ".quarantine");
    return existsSync(q) ? readdirSync(q).filter((n) => n.startsWith(key)) : [];
  };
  /** The emulator stopped, none of this snapshot's copies in quarantine, a fresh copy of it with `file` damaged. */
  const damagedCopy = async (file: string, how: Damage) => {
    await emu.stop(config);
    for (const q of quarantined()) rmSync(join(config.snapshotDir, ".quarantine", q), { recursive: true });
    cloneSnapshot(keep, dir, file);
    damage(join(dir, file), how);
  };

  for (const [part, file, reason] of PARTS) {
    for (const how of ["truncated", "bit-flipped", "missing"] as const) {
      if (COVERED.has(`${part} ${how}`)) continue;
      it(`detects a ${how} ${part} before resuming, quarantines it and says why`, async () => {
        await rel.fault(`snapshot ${part} ${how}`, async () => {
          await damagedCopy(file, how);
          const err = (await start(required).catch((e: unknown) => e)) as { code: string; message: string };
          expect(err.code).toBe("SNAPSHOT_UNUSABLE");
          expect(err.message).toMatch(reason);
          expect(existsSync(dir)).toBe(false);
          expect(quarantined()).toHaveLength(1);
          return err.message;
        });
      });
    }
  }

  it("cold-boots, with the reason, when the RAM file was bit-flipped after publish", async () => {
    await rel.fault("snapshot RAM bit-flipped (auto: cold-boot fallback)", async () => {
      await damagedCopy("ram.bin", "bit-flipped");
      const r = await start(config);
      expect(r.bootMode).toBe("cold");
      expect(r.fallbackReason).toMatch(
        /ram\.bin does not match its checksum \(it was modified after the snapshot was published\)/,
      );
      expect(existsSync(dir)).toBe(false);
      expect(quarantined()).toHaveLength(1);
      expect((await status(config)).ok).toBe(true);
      expect(await emu.fingerprint(config)).toBe(sha256(readPck(config)));
      await emu.stop(config);
      return r.fallbackReason;
    });
  });
}
