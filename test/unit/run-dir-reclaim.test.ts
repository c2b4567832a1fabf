import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ensureRunDir, runPaths, writeState, type RunState } from "../../src/engine/lifecycle/run-dir.js";
import { reclaimRunDir } from "../../src/engine/lifecycle/stop.js";
import { isAlive, processStartTicks, writePidFile, type PidRecord } from "../../src/engine/qemu/process.js";

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

/** A live process standing in for a QEMU left in the run directory. */
async function liveVm(startedAt: string) {
  const paths = runPaths(mkdtempSync(join(tmpdir(), "hxe-reclaim-")));
  ensureRunDir(paths);
  const child = spawn("sleep", ["300"], { stdio: "ignore" });
  children.push(child);
  await once(child, "spawn");
  const pid: PidRecord = {
    pid: child.pid!,
    startTicks: processStartTicks(child.pid!),
    binary: "sleep",
    startedAt,
  };
  writePidFile(paths.pidFile, pid);
  return { paths, pid };
}

const state = (startedAt: string): RunState => ({
  bootMode: "resume",
  layout: "resume",
  qemuBinary: "qemu",
  qemuVersion: "7.2.22",
  accelerator: "tcg",
  bindAddress: "127.0.0.1",
  ports: { dashboard: 26700 },
  placeholderSecrets: false,
  startedAt,
  timings: {},
});
const running = (pid: number) => new Error(`running ${pid}`);

describe("reclaiming a run directory before a start", () => {
  it("kills a QEMU whose start never wrote its state (an interrupted start)", async () => {
    const { paths, pid } = await liveVm(new Date().toISOString());
    expect(await reclaimRunDir(paths, running)).toBe(pid.pid);
    expect(isAlive(pid)).toBe(false);
  });

  it("refuses, and kills nothing, when a finished start's emulator runs", async () => {
    const { paths, pid } = await liveVm("2026-01-01T00:00:00.000Z");
    writeState(paths, state("2026-01-01T00:00:05.000Z"));
    await expect(reclaimRunDir(paths, running)).rejects.toThrow(`running ${pid.pid}`);
    expect(isAlive(pid)).toBe(true);
  });

  it("leaves the QEMU alone and says why when state.json cannot be trusted", async () => {
    const { paths, pid } = await liveVm("2026-01-01T00:00:00.000Z");
    for (const garbage of ["{not json", JSON.stringify({ bootMode: "warp" })]) {
      writeFileSync(paths.state, garbage);
      await expect(reclaimRunDir(paths, running)).rejects.toMatchObject({
        code: "RUN_STATE_INVALID",
        message: expect.stringContaining(`QEMU pid ${pid.pid}`),
      });
      expect(isAlive(pid)).toBe(true);
    }
  });
});
