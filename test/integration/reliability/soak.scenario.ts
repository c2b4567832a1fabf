/**
 * Soak: resume–stop cycles in a row on one QEMU (20 by default,
 * HEXCLAVE_SOAK_CYCLES to change; HEXCLAVE_SKIP_SOAK=1 skips it locally, CI
 * runs it). After them: no QEMU process, socket, file descriptor or
 * temporary file more than before, and a store no bigger than the snapshot.
 * One file per QEMU (soak.qemu10/qemu72.test.ts), each with its own ports.
 *
 * The temp-file count reads the temporary directory, which other test
 * files running at the same time write to as well: each soak file (its own
 * worker process) gets a temporary directory of its own, set before anything
 * here or in the engine asks for it.
 */
import { mkdtempSync, readdirSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { start } from "../../../src/engine/lifecycle/start.js";
import { runPaths } from "../../../src/engine/lifecycle/run-dir.js";
import { readPck, sha256, testEmulator } from "../../support/emulator.js";
import { reliabilityFigures } from "../../support/reliability.js";
import type { QemuTarget } from "../../support/tools.js";
import { filesUnder, qemuProcessesMentioning } from "./helpers.js";

const ownTemp = mkdtempSync(join(tmpdir(), "hxe-soak-tmp-"));
process.env.TMPDIR = ownTemp;

const CYCLES = Number(process.env.HEXCLAVE_SOAK_CYCLES ?? 20);
const skip = process.env.HEXCLAVE_SKIP_SOAK === "1";

/** Bytes allocated on disk (sparse files count what they hold). */
const allocated = (dir: string) => filesUnder(dir).reduce((n, f) => n + statSync(f).blocks * 512, 0);
const openFds = () => readdirSync("/proc/self/fd").length;
const socketFds = () =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith("socket:");
    } catch {
      return false;
    }
  }).length;
/** What the engine itself may leave in the temp dir: socket dirs of long run dirs, half-written files. */
const ourTemp = () => readdirSync(tmpdir()).filter((n) => /^hxe-[0-9a-f]{12}$|\.tmp$/.test(n));
const socketsIn = (dir: string) =>
  readdirSync(dir).filter((n) => {
    try {
      return statSync(join(dir, n)).isSocket();
    } catch {
      return false;
    }
  });

/** Host ports portBase … portBase+4. */
export function soakSuite(target: QemuTarget, portBase: number): void {
  describe.skipIf(skip)(`soak on ${target.label}`, () => {
    const rel = reliabilityFigures(`soak-${target.label}`);
    const emu = testEmulator(target, "soak", 0, portBase);
    const config = emu.config({ stopGraceSec: 10 });
    const paths = runPaths(config.runDir);
    afterAll(() => {
      emu.cleanup();
      rmSync(ownTemp, { recursive: true, force: true });
    });

    it(`runs ${CYCLES} resume–stop cycles without leaking processes, sockets, fds, temp files or store space`, async () => {
      expect(tmpdir()).toBe(ownTemp);
      const first = await start(config);
      expect([first.bootMode, first.captured]).toEqual(["resume", true]);
      await emu.stop(config);
      // The baseline is taken after one full cycle: lazy module loads and caches are warm.
      const storeBytes = allocated(config.snapshotDir);
      const storeFiles = filesUnder(config.snapshotDir).sort();
      const fds = openFds();
      const sockets = socketFds();
      const temp = ourTemp().sort();
      const runDirFiles = readdirSync(config.runDir).sort();
      const pcks = new Set<string>();
      const t0 = performance.now();
      for (let i = 1; i <= CYCLES; i++) {
        const r = await start(config);
        expect([i, r.bootMode, r.captured, r.fallbackReason]).toEqual([i, "resume", false, undefined]);
        pcks.add(readPck(config));
        if (i === 1 || i === CYCLES) expect(await emu.fingerprint(config)).toBe(sha256(readPck(config)));
        await emu.stop(config);
      }
      const perCycle = Math.round((performance.now() - t0) / CYCLES);
      expect(pcks.size).toBe(CYCLES); // every resume got its own key

      const checks: [string, number, string][] = [
        [
          "QEMU processes",
          qemuProcessesMentioning(emu.home).length,
          `${qemuProcessesMentioning(emu.home).length} QEMU processes of this emulator alive after stop`,
        ],
        [
          "unix sockets in the run dir",
          socketsIn(config.runDir).length +
            (paths.qmpSocket.startsWith(config.runDir) ? 0 : socketsIn(join(paths.qmpSocket, "..")).length),
          `left: ${socketsIn(config.runDir).join(", ") || "none"}`,
        ],
        ["file descriptors", Math.max(0, openFds() - fds), `open fds ${fds} before, ${openFds()} after`],
        [
          "socket descriptors",
          Math.max(0, socketFds() - sockets),
          `socket fds ${sockets} before, ${socketFds()} after`,
        ],
        [
          "temporary files",
          ourTemp().filter((n) => !temp.includes(n)).length +
            readdirSync(config.runDir).filter((n) => !runDirFiles.includes(n)).length,
          `new in ${tmpdir()}: ${
            ourTemp()
              .filter((n) => !temp.includes(n))
              .join(", ") || "none"
          }; new in the run dir: ${
            readdirSync(config.runDir)
              .filter((n) => !runDirFiles.includes(n))
              .join(", ") || "none"
          }`,
        ],
        [
          "store growth",
          Math.max(0, allocated(config.snapshotDir) - storeBytes),
          `store ${storeBytes} bytes allocated before, ${allocated(config.snapshotDir)} after; files ${storeFiles.length} before, ${filesUnder(config.snapshotDir).length} after`,
        ],
      ];
      for (const [what, leaks, detail] of checks) rel.leak(`${what} after ${CYCLES} cycles`, leaks, detail);
      rel.figures.faults.push({
        name: `soak: ${CYCLES} resume–stop cycles`,
        survived: true,
        ms: perCycle * CYCLES,
        detail: `${perCycle} ms per cycle`,
      });
      expect(checks.map(([what, leaks, detail]) => [what, leaks === 0 ? 0 : detail])).toEqual(
        checks.map(([what]) => [what, 0]),
      );
      expect(filesUnder(config.snapshotDir).sort()).toEqual(storeFiles);
    }, 600_000);
  });
}
