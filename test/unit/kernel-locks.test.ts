import { existsSync, mkdtempSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { acquireRunLock } from "../../src/engine/lifecycle/run-lock.js";
import { openSnapshotStore, type StoreEvent } from "../../src/engine/snapshot/store.js";
import { canUnshare, engineModule, podChild } from "../support/pod-child.js";

const made: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "hxe-locks-"));
  made.push(dir);
  return dir;
}
afterAll(() => Promise.all(made.map((d) => rm(d, { recursive: true, force: true }))));

const KEY = "hxe-v1-amd64-tcg-test-key";

/** Takes the run lock of argv[0] and waits. */
const RUN_LOCK_HOLDER = `import { acquireRunLock } from ${engineModule("lifecycle/run-lock.ts")};
acquireRunLock(argv[0], "the run dir");
process.stdout.write("ready " + JSON.stringify({ pid: process.pid }) + "\\n");`;

/** Begins a capture of argv[1] in the store at argv[0], writes part of it, and waits. */
const CAPTURE_HOLDER = `import { openSnapshotStore } from ${engineModule("snapshot/store.ts")};
import { writeFile } from "node:fs/promises";
const w = await openSnapshotStore(argv[0]).begin(argv[1]);
await writeFile(w.path("ram"), Buffer.alloc(4096, 1));
process.stdout.write("ready " + JSON.stringify({ pid: process.pid, tmp: w.dir }) + "\\n");`;

describe("the run lock", () => {
  it("lets the next start in after the holder is SIGKILLed mid-start", async () => {
    const lock = join(tempDir(), "start.lock");
    const holder = await podChild(RUN_LOCK_HOLDER, [lock]);
    expect(() => acquireRunLock(lock, "the run dir")).toThrow(
      expect.objectContaining({
        code: "RUN_DIR_BUSY",
        message: expect.stringContaining(`pid ${holder.pid}`),
      }),
    );
    await holder.kill();
    expect(existsSync(lock)).toBe(true); // what a killed start leaves
    acquireRunLock(lock, "the run dir").release();
    expect(existsSync(lock)).toBe(false);
  });

  it.skipIf(!canUnshare)(
    "does not refuse a Pod's restarted agent (pid 1 again, the same host name) its own dead start's lock",
    async () => {
      const lock = join(tempDir(), "start.lock");
      const dead = await podChild(RUN_LOCK_HOLDER, [lock], { pod: { hostname: hostname() } });
      expect(dead.pid).toBe(1);
      await dead.kill();
      // The note says pid 1 on this host, and a pid 1 runs here: only the kernel knows it is free.
      acquireRunLock(lock, "the run dir").release();
    },
  );

  it.skipIf(!canUnshare)("refuses a second start while a start in another pid namespace runs", async () => {
    const lock = join(tempDir(), "start.lock");
    const live = await podChild(RUN_LOCK_HOLDER, [lock], { pod: { hostname: "pod-a" } });
    try {
      expect(() => acquireRunLock(lock, "the run dir")).toThrow(
        expect.objectContaining({ code: "RUN_DIR_BUSY", message: expect.stringContaining("pid 1") }),
      );
    } finally {
      await live.kill();
    }
    acquireRunLock(lock, "the run dir").release();
  });
});

describe("the capture lock of a shared store", () => {
  it("is taken over after its writer is SIGKILLed, and the writer's temporary dir is swept", async () => {
    const root = join(tempDir(), "snapshots");
    const events: StoreEvent[] = [];
    const store = openSnapshotStore(root, { onEvent: (e) => events.push(e) });
    const writer = await podChild(CAPTURE_HOLDER, [root, KEY]);
    await expect(store.begin(KEY)).rejects.toMatchObject({ code: "SNAPSHOT_LOCKED" });
    await writer.kill();
    expect((await store.list()).inProgress).toMatchObject([{ key: KEY, live: false }]);
    const w = await store.begin(KEY);
    expect(events.some((e) => e.type === "lock-broken" && e.holder?.pid === writer.pid)).toBe(true);
    await store.sweep();
    expect(existsSync((writer.said as { tmp: string }).tmp)).toBe(false);
    expect(existsSync(w.dir)).toBe(true);
    await w.abort();
  });

  it.skipIf(!canUnshare)(
    "does not stay locked for ever after a writer in another Pod (pid namespace, host name) dies",
    async () => {
      const root = join(tempDir(), "snapshots");
      const store = openSnapshotStore(root);
      const writer = await podChild(CAPTURE_HOLDER, [root, KEY], { pod: { hostname: "pod-a" } });
      const tmp = (writer.said as { tmp: string }).tmp;
      await writer.kill();
      await store.sweep();
      expect(existsSync(tmp)).toBe(false);
      const w = await store.begin(KEY);
      await w.abort();
    },
  );

  it.skipIf(!canUnshare)(
    "is never broken while its writer runs in another pid namespace, and its work is kept",
    async () => {
      const root = join(tempDir(), "snapshots");
      const store = openSnapshotStore(root);
      const writer = await podChild(CAPTURE_HOLDER, [root, KEY], { pod: { hostname: "pod-b" } });
      try {
        await expect(store.begin(KEY)).rejects.toMatchObject({
          code: "SNAPSHOT_LOCKED",
          message: expect.stringContaining("pid 1 on pod-b"),
        });
        await store.sweep();
        expect(existsSync((writer.said as { tmp: string }).tmp)).toBe(true);
        expect((await store.list()).inProgress).toMatchObject([{ key: KEY, live: true }]);
      } finally {
        await writer.kill();
      }
    },
  );

  it("is taken over when only a note is left, whatever pid and host it names", async () => {
    const root = join(tempDir(), "snapshots");
    const events: StoreEvent[] = [];
    const store = openSnapshotStore(root, { onEvent: (e) => events.push(e) });
    await mkdir(join(root, ".locks"), { recursive: true });
    // A dead Pod's agent: pid 1 (alive here: this machine's init) on this host's name, and one of another.
    for (const host of [hostname(), "pod-gone"]) {
      const holder = { pid: 1, host, startedAt: "2025-01-01T00:00:00.000Z", token: "deadbeef" };
      await writeFile(join(root, ".locks", `${KEY}.lock`), JSON.stringify(holder));
      const w = await store.begin(KEY);
      expect(events.at(-1)).toEqual({ type: "lock-broken", key: KEY, holder });
      await w.abort();
    }
  });
});
