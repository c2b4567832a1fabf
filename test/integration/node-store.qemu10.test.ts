/**
 * The node store shared by Pods, on real QEMU: an engine killed mid-capture
 * in a Pod-like namespace (pid 1, the fixed host name) leaves nothing that
 * blocks its replacement, and a running VM's snapshot survives garbage
 * collection until the VM stops. Host ports 27460-27464.
 */
import { hostname } from "node:os";
import { afterAll, describe, expect, it } from "vitest";
import { start } from "../../src/engine/lifecycle/start.js";
import { gcStore } from "../../src/engine/snapshot/gc-verb.js";
import { isLocked } from "../../src/engine/snapshot/flock.js";
import { usePath } from "../../src/engine/snapshot/layout.js";
import { storeUsage } from "../../src/engine/snapshot/usage.js";
import { readPck, sha256, testEmulator } from "../support/emulator.js";
import { canUnshare, engineModule, podChild } from "../support/pod-child.js";
import { qemuTargets } from "../support/tools.js";

/** The engine's start, held for ever (the thread blocked, no CPU spent) as the phase argv[1] begins. */
const ENGINE_HELD_AT = `import { start } from ${engineModule("lifecycle/start.ts")};
start(JSON.parse(argv[0]), (e) => {
  if (e.kind === "phase-start" && e.phase === argv[1]) {
    process.stdout.write("ready " + JSON.stringify({ pid: process.pid }) + "\\n");
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  }
});`;

for (const target of qemuTargets().filter((q) => q.label === "qemu-10")) {
  describe.skipIf(!canUnshare)(`the node store on ${target.label}`, () => {
    const emu = testEmulator(target, "nodestore", 0, 27460);
    const config = emu.config();
    afterAll(() => emu.cleanup());
    let key: string | undefined;

    it("lets the next start capture after an engine in a Pod is killed mid-capture (pid 1, the same host name)", async () => {
      const pod = await podChild(ENGINE_HELD_AT, [JSON.stringify(config), "capture-migrate"], {
        pod: { hostname: hostname() },
      });
      expect(pod.pid).toBe(1);
      // The container dies (OOM mid-capture): its engine, and the capture QEMU with it.
      await pod.kill();
      const r = await start(config);
      expect([r.bootMode, r.captured, r.fallbackReason]).toEqual(["resume", true, undefined]);
      const listing = (await storeUsage(config.snapshotDir)).snapshots.map((s) => s.key);
      expect(listing).toEqual([r.snapshotKey]);
      expect(await emu.fingerprint(config)).toBe(sha256(readPck(config)));
      key = r.snapshotKey;
    });

    it("keeps the snapshot a running VM resumed from through gc, and evicts it once the VM stops", async () => {
      expect(key).toBeDefined();
      const k = key!;
      // The engine has returned: what holds the use lock now is the QEMU that inherited it.
      expect(await isLocked(usePath(config.snapshotDir, k), "shared")).toBe(true);
      const kept = await gcStore(config.snapshotDir, "0");
      expect(kept.removed).toEqual([]);
      expect(kept.inUse).toEqual([k]);
      await emu.stop(config);
      const gone = await gcStore(config.snapshotDir, "0");
      expect(gone.removed.map((e) => e.name)).toEqual([k]);
      expect((await storeUsage(config.snapshotDir)).snapshots).toEqual([]);
    });
  });
}
