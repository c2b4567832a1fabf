/**
 * Killing a VM ends its whole process group: what QEMU started (an exec:
 * migration's shell and cat) must not outlive it holding the snapshot's
 * files. A detached shell stands in for QEMU, with a child of its own.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { spawnDetached } from "../../src/engine/exec.js";
import { killVm } from "../../src/engine/lifecycle/stop.js";
import { isAlive, processStartTicks } from "../../src/engine/qemu/process.js";

const dir = mkdtempSync(join(tmpdir(), "hxe-pgroup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The live (not zombie) processes of group `pgid`. */
function liveInGroup(pgid: number): number[] {
  return readdirSync("/proc")
    .filter((n) => /^\d+$/.test(n))
    .filter((n) => {
      try {
        const stat = readFileSync(`/proc/${n}/stat`, "utf8");
        const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        return Number(pgrp) === pgid && state !== "Z";
      } catch {
        return false;
      }
    })
    .map(Number);
}

it.skipIf(process.platform !== "linux")(
  "kills what the VM started along with it, not only the VM",
  async () => {
    // The "VM" starts a child that keeps a file open (as cat > file does), then waits.
    const vm = spawnDetached("sh", ["-c", `sleep 600 > ${join(dir, "held")} & wait`], join(dir, "log"));
    // Wait on the state checked: the child is there once the group has two live members.
    for (let i = 0; liveInGroup(vm.pid).length < 2; i++) {
      if (i > 5000) throw new Error("the child never started");
      await new Promise((r) => setImmediate(r));
    }
    const record = {
      pid: vm.pid,
      startTicks: processStartTicks(vm.pid),
      binary: "sh",
      startedAt: new Date().toISOString(),
    };
    expect(isAlive(record)).toBe(true);
    await killVm(record);
    expect(isAlive(record)).toBe(false);
    expect(liveInGroup(vm.pid)).toEqual([]);
  },
);
