import { mkdtempSync, existsSync, utimesSync } from "node:fs";
import { open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { main } from "../../src/engine/cli/main.js";
import { loadConfig } from "../../src/engine/config/index.js";
import { ConfigError } from "../../src/engine/errors.js";
import { budgetBytes, parseStoreBudget } from "../../src/engine/snapshot/budget.js";
import { collectGarbage, planEviction, type EvictionCandidate } from "../../src/engine/snapshot/evict.js";
import {
  SNAPSHOT_FORMAT_VERSION,
  snapshotKey,
  type SnapshotKeyParts,
} from "../../src/engine/snapshot/key.js";
import { openSnapshotStore, type SnapshotStore } from "../../src/engine/snapshot/store.js";
import { storeUsage } from "../../src/engine/snapshot/usage.js";
import { engineModule, podChild } from "../support/pod-child.js";

const made: string[] = [];
function newStore(): { root: string; store: SnapshotStore } {
  const dir = mkdtempSync(join(tmpdir(), "hxe-budget-"));
  made.push(dir);
  const root = join(dir, "snapshots");
  return { root, store: openSnapshotStore(root) };
}
afterAll(() => Promise.all(made.map((d) => rm(d, { recursive: true, force: true }))));

function partsOf(i: number): SnapshotKeyParts {
  return {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    arch: "amd64",
    accelerator: "tcg",
    qemuVersion: "7.2.22",
    machineType: "pc-q35-7.2",
    cpuModel: "max",
    cpuFingerprint: "f00d",
    ramMiB: 1024 + i,
    cpus: 2,
    imageDigest: "ab".repeat(32),
    firmwareDigest: "none",
    layoutHash: "layout-1",
    strategy: "template",
    hostPorts: { dashboard: 8101, backend: 8102, minio: 8103, inbucket: 8104, mockOauth: 8105 },
    portPrefix: "81",
  };
}
const keyOf = (i: number): string => snapshotKey(partsOf(i));

const FILES = [
  { name: "device-state", role: "device-state" as const },
  { name: "ram", role: "ram" as const },
  { name: "disk.qcow2", role: "disk-layer" as const },
];

/** Publishes snapshot `i`, dated `i` seconds into 2020 (so least recently used is well defined). */
async function publish(store: SnapshotStore, i: number): Promise<string> {
  const key = keyOf(i);
  const w = await store.begin(key);
  await writeFile(w.path("device-state"), Buffer.alloc(10_000, 1));
  const ram = await open(w.path("ram"), "w");
  await ram.write(Buffer.alloc(200_000, 2));
  await ram.close();
  await writeFile(w.path("disk.qcow2"), Buffer.alloc(50_000, 3));
  const snap = await w.publish({
    manifest: { keyParts: partsOf(i), captureTimings: {}, guest: {}, engineVersion: "0.1.0" },
    files: FILES,
  });
  const t = new Date(Date.UTC(2020, 0, 1) + i * 1000);
  utimesSync(join(snap.dir, "COMPLETE"), t, t);
  utimesSync(snap.dir, t, t);
  return key;
}

/** Holds the use lock of argv[1] in the store at argv[0], as a QEMU resumed from it (in another Pod) does. */
const VM_USING = `import { openSnapshotStore } from ${engineModule("snapshot/store.ts")};
const use = await openSnapshotStore(argv[0]).use(argv[1]);
process.stdout.write("ready " + JSON.stringify({ using: use !== undefined }) + "\\n");`;

describe("the store budget setting", () => {
  it("reads sizes, shares of the file system and unlimited", () => {
    expect(parseStoreBudget("20GiB")).toEqual({ kind: "bytes", bytes: 20 * 1024 ** 3 });
    expect(parseStoreBudget("20Gi")).toEqual({ kind: "bytes", bytes: 20 * 1024 ** 3 });
    expect(parseStoreBudget("1.5 GB")).toEqual({ kind: "bytes", bytes: 1.5e9 });
    expect(parseStoreBudget("512")).toEqual({ kind: "bytes", bytes: 512 });
    expect(parseStoreBudget("50%")).toEqual({ kind: "fraction", fraction: 0.5 });
    expect(parseStoreBudget("unlimited")).toEqual({ kind: "unlimited" });
    for (const bad of ["", "lots", "-1GiB", "0%", "150%", "20 parsecs", "1e9"]) {
      expect(parseStoreBudget(bad)).toBeUndefined();
    }
    expect(budgetBytes({ kind: "fraction", fraction: 0.5 }, 1000)).toBe(500);
    expect(budgetBytes({ kind: "unlimited" }, 1000)).toBeUndefined();
  });

  it("is half the store's file system by default, and comes from EMULATOR_STORE_BUDGET or --store-budget", () => {
    const load = (env: Record<string, string>, overrides = {}) =>
      loadConfig({ env, overrides, cwd: "/", homeDir: "/home/u", hostArch: "x64" });
    expect(load({}).storeBudget).toBe("50%");
    expect(load({ EMULATOR_STORE_BUDGET: "20GiB" }).storeBudget).toBe("20GiB");
    expect(load({}, { storeBudget: "unlimited" }).storeBudget).toBe("unlimited");
  });

  it("refuses a budget it cannot read, naming the variable and what it takes", () => {
    let err: unknown;
    try {
      loadConfig({ env: { EMULATOR_STORE_BUDGET: "lots" }, cwd: "/", homeDir: "/home/u", hostArch: "x64" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(
      /EMULATOR_STORE_BUDGET[\s\S]*20GiB[\s\S]*50%[\s\S]*unlimited/,
    );
  });
});

describe("eviction", () => {
  const c = (name: string, lastUsedMs: number, kind: EvictionCandidate["kind"] = "snapshot") => ({
    kind,
    name,
    bytes: 10,
    lastUsedMs,
  });

  it("removes quarantined entries first, then the least recently used, only as far as the budget needs", () => {
    const candidates = [c("new", 300), c("old", 100), c("bad", 500, "quarantined"), c("mid", 200)];
    expect(planEviction(candidates, 45, 20).map((e) => e.name)).toEqual(["bad", "old", "mid"]);
    expect(planEviction(candidates, 45, 45)).toEqual([]);
    expect(planEviction(candidates, 45, undefined)).toEqual([]);
  });

  it("holds a store under its budget through a churn of keys, keeping the recently used one", async () => {
    const { root, store } = newStore();
    const first = await publish(store, 0);
    const one = await storeUsage(root);
    const perSnapshot = one.snapshots[0]!.bytes;
    const budget = one.totalBytes + 2 * perSnapshot + perSnapshot / 2; // room for three
    for (let i = 1; i < 10; i++) {
      // The first snapshot is resumed now and then (its use marker is touched), so it is never the oldest.
      (await store.use(first))?.release();
      const key = await publish(store, i);
      await collectGarbage(store, { kind: "bytes", bytes: budget }, { protect: [key] });
      const usage = await storeUsage(root);
      expect(usage.totalBytes).toBeLessThanOrEqual(budget);
      expect(usage.snapshots.map((s) => s.key)).toContain(first);
    }
    const left = (await storeUsage(root)).snapshots.map((s) => s.key).sort();
    expect(left).toEqual([first, keyOf(8), keyOf(9)].sort());
  });

  it("never evicts a snapshot a running VM uses, in another process, until that VM is gone", async () => {
    const { root, store } = newStore();
    const used = await publish(store, 0);
    const other = await publish(store, 1);
    const vm = await podChild(VM_USING, [root, used]);
    expect(vm.said).toEqual({ using: true });
    try {
      const usage = await storeUsage(root);
      expect(usage.snapshots.map((s) => [s.key, s.inUse])).toEqual(
        [
          [used, true],
          [other, false],
        ].sort(),
      );
      const r = await collectGarbage(store, { kind: "bytes", bytes: 0 });
      expect(r.removed.map((e) => e.name)).toEqual([other]);
      expect(r.inUse).toEqual([used]);
      expect(r.overBudget).toBe(true);
      expect(await store.lookup(used)).toBeDefined();
    } finally {
      await vm.kill();
    }
    const after = await collectGarbage(store, { kind: "bytes", bytes: 0 });
    expect(after.removed.map((e) => e.name)).toEqual([used]);
  });

  it("keeps the temporary dir of a running capture and removes a dead capture's", async () => {
    const { root, store } = newStore();
    const live = await store.begin(keyOf(1));
    const dead = await podChild(
      `import { openSnapshotStore } from ${engineModule("snapshot/store.ts")};
const w = await openSnapshotStore(argv[0]).begin(argv[1]);
process.stdout.write("ready " + JSON.stringify({ tmp: w.dir }) + "\\n");`,
      [root, keyOf(2)],
    );
    await dead.kill();
    const r = await collectGarbage(store, { kind: "bytes", bytes: 0 });
    expect(existsSync(live.dir)).toBe(true);
    expect(existsSync((dead.said as { tmp: string }).tmp)).toBe(false);
    expect(r.swept.map((s) => s.why)).toContain("abandoned temporary dir");
    await live.abort();
  });
});

describe("hexclave-emulator gc", () => {
  afterEach(() => vi.restoreAllMocks());

  it("evicts down to the budget and prints what it removed and the sizes", async () => {
    const { root, store } = newStore();
    const a = await publish(store, 0);
    const b = await publish(store, 1);
    const out: string[] = [];
    vi.spyOn(console, "log").mockImplementation((s: string) => void out.push(String(s)));
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    expect(await main(["gc", "--snapshot-dir", root, "--store-budget", "0"], {})).toBe(0);
    const text = out.join("\n");
    expect(text).toMatch(/snapshot store: [\d.]+ KiB → [\d.]+ B?K?i?B?, budget 0 B \(0\)/);
    expect(text).toContain(`evicted snapshot ${a}: `);
    expect(text).toContain(`evicted snapshot ${b}: `);
    expect(text).toMatch(/last used 2020-01-01T00:00:00.000Z/);
    expect((await storeUsage(root)).snapshots).toEqual([]);
  });

  it("refuses a budget it cannot read, naming the flag", async () => {
    const err: string[] = [];
    vi.spyOn(console, "log").mockImplementation(() => undefined);
    vi.spyOn(console, "error").mockImplementation((s: string) => void err.push(String(s)));
    expect(await main(["gc", "--store-budget", "lots"], {})).toBe(1);
    expect(err.join("\n")).toMatch(/--store-budget[\s\S]*20GiB/);
  });
});
