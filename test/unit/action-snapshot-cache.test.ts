/**
 * Snapshots through the Actions cache: the Action's adapter with the real
 * @actions/cache against the local cache service. Save → restore into a
 * fresh store on a runner laid out elsewhere; the newest generation wins; a
 * damaged entry is refused (nothing published); a service that is down is an
 * outage, not a miss; a lost save race is benign. Each behaviour over cache
 * service v2 and over the legacy v1 protocol (GitHub Enterprise Server, other
 * runner implementations). And what the Action says when neither is there.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { open, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as cache from "@actions/cache";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { restoreSnapshot, saveSnapshot, type CacheLocation } from "../../src/action/snapshot-cache.js";
import {
  ARCHIVE_NAME,
  actionsCache,
  cacheServiceAvailable,
  cacheServiceUnavailableReason,
  callCache,
  type CacheClient,
} from "../../src/action/cache-client.js";
import { cacheKeyOf, cacheKeyPrefix, generationOf } from "../../src/action/cache-key.js";
import { CacheError } from "../../src/action/cache-stream.js";
import { snapshotKey } from "../../src/engine/snapshot/key.js";
import { openSnapshotStore, packSnapshot } from "../../src/engine/snapshot/index.js";
import { saveEnv } from "../support/env.js";
import { testKeyParts } from "../support/key-parts.js";
import { ActionsCacheServer, CACHE_TEST_ENV, type CacheProtocol } from "../support/actions-cache-server.js";

const ENV = CACHE_TEST_ENV;
const restoreEnv = saveEnv(ENV);

const parts = testKeyParts();
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

const PROTOCOLS: CacheProtocol[] = ["v2", "v1"];

describe.each(PROTOCOLS)("the snapshot cache adapter over cache protocol %s", (protocol) => {
  /** The variable that says where the service is, for this protocol. */
  const serviceUrlVar = protocol === "v2" ? "ACTIONS_RESULTS_URL" : "ACTIONS_CACHE_URL";
  let root: string;
  let server: ActionsCacheServer;
  /** A runner's layout: its own RUNNER_TEMP, GITHUB_WORKSPACE and the Action's cache dir under its temp. */
  const runner = (name: string) => {
    const temp = join(root, name, "_temp");
    const workspace = join(root, name, "repo", "repo");
    mkdirSync(temp, { recursive: true });
    mkdirSync(workspace, { recursive: true });
    process.env.RUNNER_TEMP = temp;
    process.env.GITHUB_WORKSPACE = workspace;
    return { dir: join(temp, "hexclave-emulator", "cache"), workspace };
  };
  const at = (
    name: string,
    storeRoot: string,
    log: CacheLocation["log"],
    extra: Partial<CacheLocation> = {},
  ): CacheLocation => ({ snapshotKey: KEY, storeRoot, dir: runner(name).dir, log, ...extra });

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "hxe-action-cache-"));
    server = await ActionsCacheServer.start();
    for (const n of ENV) delete process.env[n];
    Object.assign(process.env, server.envFor(protocol));
  });
  afterAll(async () => {
    await server.close();
    restoreEnv();
    rmSync(root, { recursive: true, force: true });
  });

  it("saves generation 1 and restores it, verified, on a runner with another RUNNER_TEMP and GITHUB_WORKSPACE", async () => {
    const first = join(root, "store-1");
    await publish(first);
    const { log, lines } = logger();
    const s = await saveSnapshot({ ...at("runner-a", first, log), generation: 1 });
    expect(s.kind).toBe("saved");
    expect(lines.warn).toEqual([]);
    expect(server.entries.map((e) => e.key)).toEqual([`hexclave-emulator-v2-${KEY}-g1`]);
    expect(server.calls.every((c) => c.protocol === undefined || c.protocol === protocol)).toBe(true);
    expect(cacheKeyOf(KEY, undefined, 1)).toBe(`hexclave-emulator-v2-${KEY}-g1`);

    // A container job (/__w/_temp) or a self-hosted runner elsewhere: other paths, same entry.
    const second = join(root, "store-2");
    const workspace = runner("elsewhere/deeper").workspace;
    const r = await restoreSnapshot(at("elsewhere/deeper", second, log));
    expect(r).toMatchObject({ kind: "restored", generation: 1, key: `hexclave-emulator-v2-${KEY}-g1` });
    expect(process.env.GITHUB_WORKSPACE).toBe(workspace);
    // Streamed into the store: no archive (nor @actions/cache's tar) was written on the runner.
    expect(lines.info.join("\n")).toMatch(/restored \S+-g1 streamed/);
    expect(readdirSync(join(root, "elsewhere/deeper", "_temp"))).toEqual([]);
    const snap = await openSnapshotStore(second).lookup(KEY);
    expect(snap).toBeDefined();
    expect(await openSnapshotStore(second).verify(snap!, { deep: true })).toBeUndefined();
    expect(
      readFileSync(join(second, KEY, "device-state")).equals(readFileSync(join(first, KEY, "device-state"))),
    ).toBe(true);
    // The entry's version is one string for every runner: the paths list is the fixed archive name.
    const versions = new Set(server.entries.map((e) => e.version));
    expect(versions.size).toBe(1);
    expect(ARCHIVE_NAME).not.toContain("/");
  });

  it("falls back to restoreCache and the archive file when the service's lookup answer is not understood", async () => {
    const { log, lines } = logger();
    const confused: CacheClient = {
      ...actionsCache,
      lookupStreamed: () =>
        Promise.reject(new CacheError("CACHE_PROTOCOL", "the service answered 418", false)),
    };
    const store = join(root, "store-fallback");
    const r = await restoreSnapshot(at("runner-fallback", store, log, { client: confused }));
    expect(r).toMatchObject({ kind: "restored", generation: 1 });
    expect(lines.warn.join("\n")).toContain("the service answered 418");
    expect(lines.warn.join("\n")).toContain("restoring through @actions/cache instead");
    const snap = await openSnapshotStore(store).lookup(KEY);
    expect(await openSnapshotStore(store).verify(snap!, { deep: true })).toBeUndefined();
  });

  it("says a download of the entry that fails is an outage, and publishes nothing", async () => {
    const { log, lines } = logger();
    const store = join(root, "store-blob-refused");
    // The signed URL refused (a SAS gone stale): not retried.
    server.fail = { blob: 403 };
    try {
      const r = await restoreSnapshot(at("runner-blob", store, log));
      expect(r.kind).toBe("unavailable");
    } finally {
      server.fail = {};
    }
    expect(lines.warn.join("\n")).toMatch(/the download of \S+ failed .*403.*outage, not a miss/);
    expect(await openSnapshotStore(store).lookup(KEY)).toBeUndefined();
  });

  it("does not ask the service when the store already has the snapshot", async () => {
    const before = server.calls.length;
    const r = await restoreSnapshot(at("runner-a", join(root, "store-1"), logger().log));
    expect(r.kind).toBe("in-store");
    expect(server.calls.length).toBe(before);
  });

  it("misses quietly when the cache has no entry for the key", async () => {
    const { log, lines } = logger();
    const other = KEY.replace(/.$/, (c) => (c === "0" ? "1" : "0"));
    const r = await restoreSnapshot({ ...at("runner-a", join(root, "store-3"), log), snapshotKey: other });
    expect(r.kind).toBe("miss");
    expect(lines.warn).toEqual([]);
  });

  it("keeps a salted key (cache-key-suffix) apart from the plain one", async () => {
    const r = await restoreSnapshot(
      at("runner-a", join(root, "store-salted"), logger().log, { suffix: "v7" }),
    );
    expect(r.kind).toBe("miss");
    expect(cacheKeyPrefix(KEY, "v7")).toBe(`hexclave-emulator-v2-${KEY}-sv7-g`);
    expect(generationOf(`hexclave-emulator-v2-${KEY}-sv7-g3`, cacheKeyPrefix(KEY, "v7"))).toBe(3);
    expect(generationOf(`hexclave-emulator-v2-${KEY}-sv7-g3`, cacheKeyPrefix(KEY))).toBeUndefined();
  });

  it("treats a lost save race (the key already exists) as benign, not as a failure", async () => {
    const { log, lines } = logger();
    const s = await saveSnapshot({ ...at("runner-b", join(root, "store-1"), log), generation: 1 });
    expect(s.kind).toBe("lost-race");
    expect(lines.warn).toEqual([]);
    expect(lines.info.join("\n")).toContain("another job saved");
  });

  it("refuses a damaged entry and publishes nothing; the next generation is then the one restored", async () => {
    // A genuine @actions/cache entry whose snapshot archive is damaged in the middle.
    const { dir } = runner("runner-c");
    mkdirSync(dir, { recursive: true });
    const archive = join(dir, ARCHIVE_NAME);
    await packSnapshot(join(root, "store-1", KEY), archive, { compression: "none" });
    const good = readFileSync(archive);
    const bytes = Buffer.from(good);
    bytes.fill(0x5a, Math.floor(bytes.length / 2), Math.floor(bytes.length / 2) + 4096);
    writeFileSync(archive, bytes);
    const scratch = await callCache(dir, () => cache.saveCache([ARCHIVE_NAME], "scratch"));
    expect(scratch.value).toBeGreaterThan(0);
    const g1 = cacheKeyOf(KEY, undefined, 1);
    const healthy = server.entryData(g1)!;
    server.replaceEntryData(g1, server.entryData("scratch")!);

    const store = join(root, "store-4");
    const { log, lines } = logger();
    const r = await restoreSnapshot(at("runner-c", store, log));
    expect(r).toMatchObject({ kind: "corrupt", generation: 1 });
    expect(lines.warn.join("\n")).toContain("is unusable");
    expect(await openSnapshotStore(store).lookup(KEY)).toBeUndefined();

    // A job that may save captured anew and saved generation 2: later jobs get it, not g1.
    const s = await saveSnapshot({ ...at("runner-c", join(root, "store-1"), log), generation: 2 });
    expect(s.kind).toBe("saved");
    const later = await restoreSnapshot(at("runner-d", join(root, "store-5"), logger().log));
    expect(later).toMatchObject({ kind: "restored", generation: 2 });
    server.replaceEntryData(g1, healthy);
  });

  it("says a failing service is an outage (not a miss), for restore and for save", async () => {
    const { log, lines } = logger();
    // Rate limited: @actions/cache does not retry it (over v2 a 5xx is retried for half a minute).
    server.fail = { service: 429 };
    try {
      const r = await restoreSnapshot(at("runner-e", join(root, "store-6"), log));
      expect(r.kind).toBe("unavailable");
      expect(lines.warn.join("\n")).toMatch(/outage, not a miss/);
      const s = await saveSnapshot({ ...at("runner-e", join(root, "store-1"), log), generation: 9 });
      expect(s).toMatchObject({ kind: "not-saved", outage: true });
      expect(lines.warn.join("\n")).toContain(
        "not saved to the Actions cache: the Actions cache service failed",
      );
    } finally {
      server.fail = {};
    }
  });

  // Over v1, @actions/cache waits 5 s after each of its two attempts at a call that cannot connect
  // (some 20 s for this test's restore and save); over v2 it does not retry a refused connection.
  it(
    "warns and goes on when the service is unreachable, for restore and for save",
    { timeout: 60_000 },
    async () => {
      const url = process.env[serviceUrlVar];
      process.env[serviceUrlVar] = "http://127.0.0.1:9/";
      try {
        const { log, lines } = logger();
        const r = await restoreSnapshot(at("runner-f", join(root, "store-7"), log));
        expect(r.kind).toBe("unavailable");
        const s = await saveSnapshot({ ...at("runner-f", join(root, "store-1"), log), generation: 9 });
        expect(s.kind).toBe("not-saved");
        expect(lines.warn.join("\n")).toContain("not saved to the Actions cache");
      } finally {
        process.env[serviceUrlVar] = url;
      }
    },
  );

  it("says a save whose upload failed after the reservation is an outage, not a saved entry", async () => {
    const { log, lines } = logger();
    const key = cacheKeyOf(KEY, undefined, 7);
    // Blob storage refuses the upload (a SAS gone stale): neither client retries a 403.
    server.fail = { blob: 403 };
    try {
      const s = await saveSnapshot({ ...at("runner-h", join(root, "store-1"), log), generation: 7 });
      expect(s).toMatchObject({ kind: "not-saved", outage: true });
    } finally {
      server.fail = {};
    }
    expect(lines.warn.join("\n")).toContain(
      "not saved to the Actions cache: the Actions cache service failed",
    );
    // The entry was reserved but never completed: nothing for a restore to find.
    expect(server.entries.find((e) => e.key === key)).toMatchObject({ finalized: false });
    expect(server.entryData(key)).toBeUndefined();
  });
});

describe("without a cache service", () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "hxe-action-nocache-"));
  });
  afterAll(() => {
    restoreEnv();
    rmSync(root, { recursive: true, force: true });
  });

  it("warns when no cache service is configured at all", async () => {
    const client: CacheClient = {
      isFeatureAvailable: () => false,
      restoreCache: () => Promise.reject(new Error("not called")),
      saveCache: () => Promise.reject(new Error("not called")),
    };
    const { log, lines } = logger();
    const r = await restoreSnapshot({
      snapshotKey: KEY,
      storeRoot: join(root, "store"),
      dir: join(root, "cache"),
      log,
      client,
    });
    expect(r).toMatchObject({ kind: "unavailable" });
    expect(lines.warn[0]).toContain("not available");
  });

  const TOKEN = { ACTIONS_RUNTIME_TOKEN: "t" };
  it.each<{ runner: string; env: Record<string, string>; names: RegExp[]; not?: RegExp[] }>([
    {
      runner: "gives no cache variables at all",
      env: {},
      names: [
        /ACTIONS_RESULTS_URL with ACTIONS_CACHE_SERVICE_V2/,
        /ACTIONS_CACHE_URL/,
        /ACTIONS_RUNTIME_TOKEN/,
      ],
    },
    {
      runner: "asks for cache service v2 without its URL",
      env: { ACTIONS_CACHE_SERVICE_V2: "true", ACTIONS_CACHE_URL: "http://legacy/", ...TOKEN },
      names: [/cache service v2 \(ACTIONS_CACHE_SERVICE_V2 is set\) needs ACTIONS_RESULTS_URL/],
      not: [/ACTIONS_RUNTIME_TOKEN/],
    },
    {
      runner: "gives v2's URL without ACTIONS_CACHE_SERVICE_V2 (the legacy service is then used)",
      env: { ACTIONS_RESULTS_URL: "http://results/", ...TOKEN },
      names: [/ACTIONS_CACHE_SERVICE_V2 is not/, /legacy cache service, which needs ACTIONS_CACHE_URL/],
    },
    {
      runner: "is GitHub Enterprise Server, where v2 is never used",
      env: {
        GITHUB_SERVER_URL: "https://ghes.example.com",
        ACTIONS_CACHE_SERVICE_V2: "true",
        ACTIONS_RESULTS_URL: "http://results/",
        ...TOKEN,
      },
      names: [
        /GitHub Enterprise Server \(GITHUB_SERVER_URL is ghes\.example\.com\)/,
        /needs ACTIONS_CACHE_URL/,
      ],
    },
  ])("says which variables are missing when the runner $runner", async ({ env, names, not = [] }) => {
    for (const n of ENV) delete process.env[n];
    Object.assign(process.env, env);
    // The cache client agrees that there is no service.
    expect(cache.isFeatureAvailable()).toBe(false);
    const reason = cacheServiceUnavailableReason(process.env);
    expect(reason).toMatch(/^the Actions cache service is not available to this step: /);
    for (const name of names) expect(reason).toMatch(name);
    for (const name of not) expect(reason).not.toMatch(name);
  });

  it("knows whether a service is configured as @actions/cache does, without loading it", () => {
    const urls = [
      {},
      { ACTIONS_CACHE_URL: "http://legacy/" },
      { ACTIONS_RESULTS_URL: "http://results/" },
      { ACTIONS_CACHE_URL: "http://legacy/", ACTIONS_RESULTS_URL: "http://results/" },
    ];
    const flags = [{}, { ACTIONS_CACHE_SERVICE_V2: "true" }];
    const servers = [
      {},
      { GITHUB_SERVER_URL: "https://github.com" },
      { GITHUB_SERVER_URL: "https://ghes.example.com" },
    ];
    let seen = 0;
    for (const u of urls)
      for (const f of flags)
        for (const g of servers) {
          for (const n of ENV) delete process.env[n];
          Object.assign(process.env, u, f, g);
          const label = JSON.stringify({ ...u, ...f, ...g });
          expect(actionsCache.isFeatureAvailable(), label).toBe(cache.isFeatureAvailable());
          expect(cacheServiceAvailable(process.env), label).toBe(cache.isFeatureAvailable());
          seen += cache.isFeatureAvailable() ? 1 : 0;
        }
    expect(seen).toBeGreaterThan(0); // both answers occurred
  });

  it("names the missing runtime token when the service URL is there, for either protocol", () => {
    const v1 = { ACTIONS_CACHE_URL: "http://legacy/" };
    const v2 = { ACTIONS_CACHE_SERVICE_V2: "true", ACTIONS_RESULTS_URL: "http://results/" };
    for (const env of [v1, v2]) {
      const reason = cacheServiceUnavailableReason(env);
      expect(reason).toContain("ACTIONS_RUNTIME_TOKEN, which every cache service needs, is not set");
      expect(reason).not.toMatch(/ACTIONS_(CACHE|RESULTS)_URL/);
    }
    // github.com, GHE.com and *.localhost hosts are not GitHub Enterprise Server: v2 stays v2.
    for (const server of ["https://github.com", "https://acme.ghe.com", "http://github.localhost"]) {
      expect(
        cacheServiceUnavailableReason({
          ...v2,
          ...TOKEN,
          GITHUB_SERVER_URL: server,
          ACTIONS_RESULTS_URL: "",
        }),
      ).toContain("needs ACTIONS_RESULTS_URL");
    }
    expect(cacheServiceUnavailableReason({ ...v1, ...TOKEN })).toBe(
      "the Actions cache service is not available to this step (the cache client said so, although ACTIONS_CACHE_URL and ACTIONS_RUNTIME_TOKEN are set)",
    );
  });
});
