/**
 * Snapshots through the Actions cache: the Action's adapter with the real
 * @actions/cache against the local cache service. Save → restore into a
 * fresh store; a damaged entry is refused (nothing published); a service that
 * is down only warns.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as cache from "@actions/cache";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cacheKeyOf, restoreSnapshot, saveSnapshot } from "../../src/action/snapshot-cache.js";
import {
  SNAPSHOT_FORMAT_VERSION,
  snapshotKey,
  type SnapshotKeyParts,
} from "../../src/engine/snapshot/key.js";
import { openSnapshotStore, packSnapshot } from "../../src/engine/snapshot/index.js";
import { ActionsCacheServer } from "../support/actions-cache-server.js";

const ENV = [
  "ACTIONS_CACHE_SERVICE_V2",
  "ACTIONS_RESULTS_URL",
  "ACTIONS_RUNTIME_TOKEN",
  "RUNNER_TEMP",
  "GITHUB_WORKSPACE",
];
const saved = Object.fromEntries(ENV.map((n) => [n, process.env[n]]));

const parts: SnapshotKeyParts = {
  formatVersion: SNAPSHOT_FORMAT_VERSION,
  arch: "amd64",
  accelerator: "tcg",
  qemuVersion: "10.0.13",
  machineType: "pc-q35-10.0",
  cpuModel: "qemu64",
  cpuFingerprint: "tcg:qemu64",
  ramMiB: 512,
  cpus: 1,
  imageDigest: "ab".repeat(32),
  firmwareDigest: "none",
  layoutHash: "lh",
  strategy: "template",
  hostPorts: { dashboard: 27400, backend: 27401, minio: 27402, inbucket: 27403, mockOauth: 27404 },
  portPrefix: "81",
};
const KEY = snapshotKey(parts);

async function publish(storeRoot: string): Promise<void> {
  const w = await openSnapshotStore(storeRoot).begin(KEY);
  const ram = await open(w.path("ram"), "w");
  await ram.truncate(64 * 1024 * 1024);
  await ram.write(randomBytes(1024 * 1024), 0, 1024 * 1024, 8 * 1024 * 1024);
  await ram.close();
  await writeFile(w.path("device-state"), randomBytes(100_000));
  await w.publish({
    manifest: { keyParts: parts, captureTimings: {}, guest: {}, engineVersion: "0.1.0" },
    files: [
      { name: "device-state", role: "device-state" },
      { name: "ram", role: "ram" },
    ],
  });
}

function logger() {
  const lines = { info: [] as string[], warn: [] as string[] };
  return { lines, log: { info: (m: string) => lines.info.push(m), warn: (m: string) => lines.warn.push(m) } };
}

describe("the snapshot cache adapter", () => {
  let root: string;
  let server: ActionsCacheServer;
  let archive: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "hxe-action-cache-"));
    server = await ActionsCacheServer.start();
    Object.assign(process.env, server.clientEnv());
    process.env.RUNNER_TEMP = join(root, "temp");
    process.env.GITHUB_WORKSPACE = join(root, "work");
    mkdirSync(process.env.RUNNER_TEMP, { recursive: true });
    mkdirSync(process.env.GITHUB_WORKSPACE, { recursive: true });
    archive = join(root, "temp", "hexclave-emulator", "cache", "snapshot.hxsnap");
  });
  afterAll(async () => {
    await server.close();
    for (const [n, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    }
    rmSync(root, { recursive: true, force: true });
  });

  it("saves a captured snapshot under hexclave-emulator-v1-<key> and restores it, verified, into a fresh store", async () => {
    const first = join(root, "store-1");
    await publish(first);
    const { log, lines } = logger();
    const s = await saveSnapshot({ snapshotKey: KEY, storeRoot: first, archive, log });
    expect(s.kind).toBe("saved");
    expect(lines.warn).toEqual([]);
    expect(server.entries.map((e) => e.key)).toEqual([`hexclave-emulator-v1-${KEY}`]);
    expect(cacheKeyOf(KEY)).toBe(`hexclave-emulator-v1-${KEY}`);

    const second = join(root, "store-2");
    const r = await restoreSnapshot({ snapshotKey: KEY, storeRoot: second, archive, log });
    expect(r.kind).toBe("restored");
    const snap = await openSnapshotStore(second).lookup(KEY);
    expect(snap).toBeDefined();
    expect(await openSnapshotStore(second).verify(snap!, { deep: true })).toBeUndefined();
    expect(
      readFileSync(join(second, KEY, "device-state")).equals(readFileSync(join(first, KEY, "device-state"))),
    ).toBe(true);
  });

  it("does not ask the service when the store already has the snapshot", async () => {
    const before = server.calls.length;
    const r = await restoreSnapshot({
      snapshotKey: KEY,
      storeRoot: join(root, "store-1"),
      archive,
      log: logger().log,
    });
    expect(r.kind).toBe("in-store");
    expect(server.calls.length).toBe(before);
  });

  it("misses quietly when the cache has no entry for the key", async () => {
    const { log, lines } = logger();
    const other = KEY.replace(/.$/, (c) => (c === "0" ? "1" : "0"));
    const r = await restoreSnapshot({ snapshotKey: other, storeRoot: join(root, "store-3"), archive, log });
    expect(r.kind).toBe("miss");
    expect(lines.warn).toEqual([]);
  });

  it("refuses a damaged entry and publishes nothing", async () => {
    // A genuine @actions/cache entry whose snapshot archive is damaged in the middle.
    await packSnapshot(join(root, "store-1", KEY), archive);
    const bytes = readFileSync(archive);
    bytes.fill(0x5a, Math.floor(bytes.length / 2), Math.floor(bytes.length / 2) + 4096);
    writeFileSync(archive, bytes);
    expect(await cache.saveCache([archive], "scratch")).toBeGreaterThan(0);
    server.replaceEntryData(cacheKeyOf(KEY), server.entryData("scratch")!);

    const store = join(root, "store-4");
    const { log, lines } = logger();
    const r = await restoreSnapshot({ snapshotKey: KEY, storeRoot: store, archive, log });
    expect(r.kind).toBe("corrupt");
    expect(lines.warn.join("\n")).toContain("is unusable");
    expect(await openSnapshotStore(store).lookup(KEY)).toBeUndefined();
  });

  it("warns and goes on when the service is unreachable, for restore and for save", async () => {
    const url = process.env.ACTIONS_RESULTS_URL;
    process.env.ACTIONS_RESULTS_URL = "http://127.0.0.1:9/";
    try {
      const { log, lines } = logger();
      const r = await restoreSnapshot({ snapshotKey: KEY, storeRoot: join(root, "store-5"), archive, log });
      expect(r.kind).toBe("miss");
      const s = await saveSnapshot({ snapshotKey: KEY, storeRoot: join(root, "store-1"), archive, log });
      expect(s.kind).toBe("not-saved");
      expect(lines.warn.join("\n")).toContain("not saved to the Actions cache");
    } finally {
      process.env.ACTIONS_RESULTS_URL = url;
    }
  });

  it("warns when no cache service is configured at all", async () => {
    const url = process.env.ACTIONS_RESULTS_URL;
    delete process.env.ACTIONS_RESULTS_URL;
    try {
      const { log, lines } = logger();
      const r = await restoreSnapshot({ snapshotKey: KEY, storeRoot: join(root, "store-6"), archive, log });
      expect(r).toMatchObject({ kind: "miss" });
      expect(lines.warn[0]).toContain("not available");
    } finally {
      process.env.ACTIONS_RESULTS_URL = url;
    }
  });
});
