/**
 * The local Actions cache service, driven by the real `@actions/cache` (and
 * the Azure Blob SDK it uploads and downloads with): keys, versions, restore
 * keys, immutability, block uploads, ranged downloads; over cache service v2
 * and over the legacy v1 protocol (chunked PATCH uploads, commit, lookup by
 * keys and version), which share one store.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as cache from "@actions/cache";
import { BlockBlobClient } from "@azure/storage-blob";
import { afterEach, describe, expect, it } from "vitest";
import { callCache } from "../../src/action/cache-client.js";
import { ActionsCacheServer, CACHE_CLIENT_ENV, type CacheProtocol } from "../support/actions-cache-server.js";
import { useCacheService } from "../support/cache-service.js";
import { saveEnv } from "../support/env.js";

const ENV_NAMES = [
  ...CACHE_CLIENT_ENV,
  // A GitHub Enterprise Server URL would force the legacy protocol.
  "GITHUB_SERVER_URL",
  "ACTIONS_CACHE_MODE",
  "CACHE_UPLOAD_CHUNK_SIZE",
  "CACHE_UPLOAD_CONCURRENCY",
  "RUNNER_TEMP",
  "GITHUB_WORKSPACE",
];
const restoreEnv = saveEnv(ENV_NAMES);

function useServer(server: ActionsCacheServer, root: string, protocol: CacheProtocol = "v2"): void {
  for (const n of ENV_NAMES) delete process.env[n];
  Object.assign(process.env, server.envFor(protocol));
  process.env.RUNNER_TEMP = join(root, "temp");
  process.env.GITHUB_WORKSPACE = join(root, "work");
  mkdirSync(process.env.RUNNER_TEMP, { recursive: true });
  mkdirSync(process.env.GITHUB_WORKSPACE, { recursive: true });
}

async function twirp(server: ActionsCacheServer, method: string, body: unknown, token = server.token) {
  const res = await fetch(`${server.url}twirp/github.actions.results.api.v1.CacheService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("the local Actions cache service", () => {
  let root: string;
  let server: ActionsCacheServer;

  // The client is pointed at it per test (useServer), by protocol.
  useCacheService(
    "hxe-cache-server-",
    ENV_NAMES,
    (s, r) => {
      server = s;
      root = r;
    },
    { pointClient: false },
  );
  afterEach(() => {
    server.fail = {};
  });

  it("saves with @actions/cache and restores the same bytes by exact key", async () => {
    useServer(server, root);
    const file = join(root, "work", "payload.bin");
    const data = randomBytes(300_000);
    writeFileSync(file, data);
    const id = await cache.saveCache([file], "hxe-test-exact-1");
    expect(id).toBeGreaterThan(0);
    const ops = server.calls.map((c) => c.op);
    expect(ops).toEqual(["CreateCacheEntry", "blob:PUT", "FinalizeCacheEntryUpload"]);
    const create = server.calls[0]?.detail as { key: string; version: string };
    expect(create.key).toBe("hxe-test-exact-1");
    expect(create.version).toMatch(/^[0-9a-f]{64}$/);

    rmSync(file);
    expect(await cache.restoreCache([file], "hxe-test-exact-1")).toBe("hxe-test-exact-1");
    expect(readFileSync(file).equals(data)).toBe(true);
  });

  it("misses when the version (paths + compression) differs, and when the key is unknown", async () => {
    useServer(server, root);
    const other = join(root, "work", "other-name.bin");
    expect(await cache.restoreCache([other], "hxe-test-exact-1")).toBeUndefined();
    expect(await cache.restoreCache([join(root, "work", "payload.bin")], "hxe-test-nope")).toBeUndefined();
    const lookup = server.calls.filter((c) => c.op === "GetCacheEntryDownloadURL").at(-1);
    expect(lookup?.status).toBe(200);
  });

  it("matches restore keys as prefixes, newest entry first", async () => {
    useServer(server, root);
    const file = join(root, "work", "prefixed.txt");
    writeFileSync(file, "old");
    expect(await cache.saveCache([file], "hxe-prefix-a-1")).toBeGreaterThan(0);
    writeFileSync(file, "new");
    expect(await cache.saveCache([file], "hxe-prefix-a-2")).toBeGreaterThan(0);
    rmSync(file);
    expect(await cache.restoreCache([file], "hxe-prefix-a-3", ["hxe-prefix-b-", "hxe-prefix-a-"])).toBe(
      "hxe-prefix-a-2",
    );
    expect(readFileSync(file, "utf8")).toBe("new");
  });

  it("keeps entries immutable: a second save of a key is refused and the first stays", async () => {
    useServer(server, root);
    const file = join(root, "work", "immutable.txt");
    writeFileSync(file, "first");
    expect(await cache.saveCache([file], "hxe-immutable")).toBeGreaterThan(0);
    const before = server.entryData("hxe-immutable");
    writeFileSync(file, "second");
    expect(await cache.saveCache([file], "hxe-immutable")).toBe(-1);
    expect(server.calls.at(-1)).toMatchObject({ op: "CreateCacheEntry", status: 409 });
    expect(server.entryData("hxe-immutable")?.equals(before ?? Buffer.alloc(0))).toBe(true);
  });

  it("refuses a wrong runtime token, a forged blob signature and a read-only URL used for writing", async () => {
    const denied = await twirp(server, "GetCacheEntryDownloadURL", { key: "k", version: "v" }, "wrong");
    expect(denied).toMatchObject({ status: 401, body: { code: "unauthenticated" } });

    const created = await twirp(server, "CreateCacheEntry", { key: "hxe-sas", version: "v1" });
    const upload = String(created.body.signed_upload_url);
    const forged = upload.replace(/sig=[^&]+/, "sig=AAAA");
    expect((await fetch(forged, { method: "PUT", headers: { "x-ms-blob-type": "BlockBlob" } })).status).toBe(
      403,
    );
    const readOnly = upload.replace("sp=cw", "sp=r");
    expect(
      (await fetch(readOnly, { method: "PUT", headers: { "x-ms-blob-type": "BlockBlob" } })).status,
    ).toBe(403);
  });

  it("takes a block upload (stage blocks, commit the list) and serves ranged downloads", async () => {
    const data = randomBytes(1_300_000);
    const created = await twirp(server, "CreateCacheEntry", { key: "hxe-blocks", version: "v1" });
    const client = new BlockBlobClient(String(created.body.signed_upload_url));
    await client.uploadData(data, { maxSingleShotSize: 256 * 1024, blockSize: 256 * 1024, concurrency: 3 });
    const staged = server.calls.filter((c) => c.op === "blob:PUT block");
    expect(staged.length).toBe(Math.ceil(data.length / (256 * 1024)));
    expect(server.calls.some((c) => c.op === "blob:PUT blocklist" && c.status === 201)).toBe(true);

    const early = await twirp(server, "FinalizeCacheEntryUpload", {
      key: "hxe-blocks",
      version: "v1",
      size_bytes: "12",
    });
    expect(early).toMatchObject({ status: 400, body: { code: "invalid_argument" } });
    const done = await twirp(server, "FinalizeCacheEntryUpload", {
      key: "hxe-blocks",
      version: "v1",
      size_bytes: String(data.length),
    });
    expect(done.body).toMatchObject({ ok: true });
    expect(Number(done.body.entry_id)).toBeGreaterThan(0);

    const found = await twirp(server, "GetCacheEntryDownloadURL", {
      key: "hxe-blocks",
      restore_keys: [],
      version: "v1",
    });
    expect(found.body).toMatchObject({ ok: true, matched_key: "hxe-blocks" });
    const reader = new BlockBlobClient(String(found.body.signed_download_url));
    expect((await reader.getProperties()).contentLength).toBe(data.length);
    const part = await reader.downloadToBuffer(100_000, 700_000, { blockSize: 200_000, concurrency: 2 });
    expect(part.equals(data.subarray(100_000, 800_000))).toBe(true);
    expect(server.calls.filter((c) => c.status === 206).length).toBeGreaterThanOrEqual(4);
  });

  it("answers 500 with a Twirp error body while failing, and recovers", async () => {
    server.fail = { twirp: 500 };
    const failing = await twirp(server, "GetCacheEntryDownloadURL", { key: "k", version: "v" });
    expect(failing).toMatchObject({ status: 500, body: { code: "internal" } });
    server.fail = {};
    const ok = await twirp(server, "GetCacheEntryDownloadURL", { key: "k", version: "v" });
    expect(ok).toMatchObject({ status: 200, body: { ok: false } });
  });
});

describe("the local Actions cache service with *.blob.core.windows.net URLs", () => {
  it("makes @actions/cache download with the Azure SDK (HEAD, then ranged GETs through the proxy)", async () => {
    const root = mkdtempSync(join(tmpdir(), "hxe-cache-azure-"));
    const server = await ActionsCacheServer.start({ blobHost: "azure" });
    try {
      useServer(server, root);
      const file = join(root, "work", "azure.bin");
      const data = randomBytes(5_000_000);
      writeFileSync(file, data);
      expect(await cache.saveCache([file], "hxe-azure")).toBeGreaterThan(0);
      rmSync(file);
      expect(await cache.restoreCache([file], "hxe-azure")).toBe("hxe-azure");
      expect(readFileSync(file).equals(data)).toBe(true);
      const ops = server.calls.map((c) => `${c.op} ${c.status}`);
      expect(ops).toContain("blob:HEAD 200");
      expect(ops).toContain("blob:GET 206");
    } finally {
      await server.close();
      restoreEnv();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

/** A raw call to the legacy REST API, as @actions/cache makes it (token, api-version in Accept). */
async function legacy(
  server: ActionsCacheServer,
  method: string,
  resource: string,
  init: { body?: Buffer | string; headers?: Record<string, string>; token?: string } = {},
) {
  const res = await fetch(`${server.legacyUrl}_apis/artifactcache/${resource}`, {
    method,
    headers: {
      accept: "application/json;api-version=6.0-preview.1",
      authorization: `Bearer ${init.token ?? server.token}`,
      ...(typeof init.body === "string" ? { "content-type": "application/json" } : {}),
      ...init.headers,
    },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

describe("the local Actions cache service over the legacy (v1) protocol", () => {
  let root: string;
  let server: ActionsCacheServer;

  // The client is pointed at it per test (useServer), by protocol.
  useCacheService(
    "hxe-cache-v1-",
    ENV_NAMES,
    (s, r) => {
      server = s;
      root = r;
    },
    { pointClient: false },
  );
  afterEach(() => {
    server.fail = {};
  });

  it("saves with @actions/cache in Content-Range chunks sent in parallel, commits, and restores the same bytes", async () => {
    useServer(server, root, "v1");
    process.env.CACHE_UPLOAD_CHUNK_SIZE = "1"; // MiB: the archive goes up in several chunks
    process.env.CACHE_UPLOAD_CONCURRENCY = "4";
    const file = join(root, "work", "payload.bin");
    const data = randomBytes(3_500_000);
    writeFileSync(file, data);
    const id = await cache.saveCache([file], "hxe-v1-exact");
    expect(id).toBeGreaterThan(0);

    expect(server.calls.every((c) => c.protocol !== "v2")).toBe(true);
    const [reserve, ...rest] = server.calls;
    const commit = rest.at(-1);
    const chunks = rest.slice(0, -1);
    expect(reserve).toMatchObject({ op: "reserveCache", status: 201, detail: { key: "hxe-v1-exact" } });
    const reserved = reserve?.detail as { version: string; cacheSize: number };
    expect(reserved.version).toMatch(/^[0-9a-f]{64}$/);
    expect(commit).toMatchObject({ op: "commitCache", status: 204, detail: { size: reserved.cacheSize } });
    expect(chunks.map((c) => `${c.op} ${c.status}`)).toEqual(
      Array.from({ length: Math.ceil(reserved.cacheSize / 2 ** 20) }, () => "uploadChunk 204"),
    );
    // The chunks tile the archive exactly.
    const ranges = chunks
      .map((c) => c.detail as { start: number; end: number })
      .sort((a, b) => a.start - b.start);
    expect(ranges.map((r) => r.start)).toEqual([0, ...ranges.slice(0, -1).map((r) => r.end + 1)]);
    expect(ranges.at(-1)?.end).toBe(reserved.cacheSize - 1);
    expect(server.entries).toMatchObject([
      { key: "hxe-v1-exact", finalized: true, sizeBytes: reserved.cacheSize },
    ]);

    rmSync(file);
    const before = server.calls.length;
    expect(await cache.restoreCache([file], "hxe-v1-exact")).toBe("hxe-v1-exact");
    expect(readFileSync(file).equals(data)).toBe(true);
    expect(server.calls.slice(before).map((c) => `${c.op} ${c.status}`)).toEqual([
      "getCacheEntry 200",
      "blob:GET 200",
    ]);
    expect(server.calls[before]?.detail).toEqual({ keys: ["hxe-v1-exact"], version: reserved.version });
  });

  it("restores the primary key exactly, else each key as a prefix (primary first), the newest entry of a prefix", async () => {
    useServer(server, root, "v1");
    const file = join(root, "work", "prefixed.txt");
    for (const [key, text] of [
      ["hxe-v1-p-1", "old"],
      ["hxe-v1-p-2", "new"],
      ["hxe-v1-q-1", "other"],
    ] as const) {
      writeFileSync(file, text);
      expect(await cache.saveCache([file], key)).toBeGreaterThan(0);
    }
    const restore = async (key: string, restoreKeys: string[]) => {
      rmSync(file, { force: true });
      const hit = await cache.restoreCache([file], key, restoreKeys);
      return { hit, text: hit === undefined ? undefined : readFileSync(file, "utf8") };
    };
    expect(await restore("hxe-v1-p-3", ["hxe-v1-x-", "hxe-v1-p-"])).toEqual({
      hit: "hxe-v1-p-2",
      text: "new",
    });
    expect(await restore("hxe-v1-p-1", ["hxe-v1-p-"])).toEqual({ hit: "hxe-v1-p-1", text: "old" });
    expect(await restore("hxe-v1-p-", [])).toEqual({ hit: "hxe-v1-p-2", text: "new" });
    expect(await restore("hxe-v1-x-1", ["hxe-v1-q-", "hxe-v1-p-"])).toEqual({
      hit: "hxe-v1-q-1",
      text: "other",
    });
    const lookup = server.calls.filter((c) => c.op === "getCacheEntry").at(-1);
    expect(lookup?.detail).toMatchObject({ keys: ["hxe-v1-x-1", "hxe-v1-q-", "hxe-v1-p-"] });
  });

  it("misses (204) when the version (paths + compression) differs, and when no key matches", async () => {
    useServer(server, root, "v1");
    const file = join(root, "work", "versioned.txt");
    writeFileSync(file, "v");
    expect(await cache.saveCache([file], "hxe-v1-versioned")).toBeGreaterThan(0);
    const other = join(root, "work", "other-name.txt");
    expect(await cache.restoreCache([other], "hxe-v1-versioned", ["hxe-v1-"])).toBeUndefined();
    expect(server.calls.at(-1)).toMatchObject({ op: "getCacheEntry", status: 204 });
    expect(await cache.restoreCache([file], "hxe-v1-nope", ["hxe-v1-nope-"])).toBeUndefined();
    expect(server.calls.at(-1)).toMatchObject({ op: "getCacheEntry", status: 204 });
    // The same lookup with the saved paths hits: the miss above was the version.
    expect(await cache.restoreCache([file], "hxe-v1-versioned")).toBe("hxe-v1-versioned");
  });

  it("refuses a step without the runtime token (401), and a call that names no api-version (400)", async () => {
    useServer(server, root, "v1");
    const file = join(root, "work", "denied.txt");
    writeFileSync(file, "denied");
    delete process.env.ACTIONS_RUNTIME_TOKEN;
    const entries = server.entries.length;
    expect(await cache.restoreCache([file], "hxe-v1-denied")).toBeUndefined();
    expect(server.calls.at(-1)).toMatchObject({ op: "getCacheEntry", status: 401 });
    expect(await cache.saveCache([file], "hxe-v1-denied")).toBe(-1);
    expect(server.calls.at(-1)).toMatchObject({ op: "reserveCache", status: 401 });
    expect(server.entries.length).toBe(entries);

    const version = "0".repeat(64);
    const wrongToken = await legacy(server, "GET", `cache?keys=k&version=${version}`, { token: "wrong" });
    expect(wrongToken).toMatchObject({ status: 401, body: { message: expect.stringContaining("TF400813") } });
    const noVersion = await legacy(server, "GET", `cache?keys=k&version=${version}`, {
      headers: { accept: "application/json" },
    });
    expect(noVersion.status).toBe(400);
    const ok = await legacy(server, "GET", `cache?keys=k&version=${version}`);
    expect(ok.status).toBe(204);
  });

  it("keeps entries immutable: a second reservation is refused (409 Cache already exists) and the first stays", async () => {
    useServer(server, root, "v1");
    const dir = join(root, "work");
    writeFileSync(join(dir, "immutable.txt"), "first");
    expect(
      (await callCache(dir, () => cache.saveCache(["immutable.txt"], "hxe-v1-immutable"))).value,
    ).toBeGreaterThan(0);
    const before = server.entryData("hxe-v1-immutable");
    writeFileSync(join(dir, "immutable.txt"), "second");
    const again = await callCache(dir, () => cache.saveCache(["immutable.txt"], "hxe-v1-immutable"));
    expect(again.value).toBe(-1);
    const refused = server.calls.at(-1);
    expect(refused).toMatchObject({ op: "reserveCache", status: 409 });
    const { version } = refused?.detail as { version: string };
    // What @actions/cache makes of it (an info line, not an annotation).
    expect(again.messages.filter((m) => m.kind !== "debug")).toEqual([
      {
        kind: "info",
        message:
          "Failed to save: Unable to reserve cache with key hxe-v1-immutable, another job may be creating this cache. " +
          `More details: Cache already exists. Scope: refs/heads/main, Key: hxe-v1-immutable, Version: ${version}`,
      },
    ]);
    expect(server.entryData("hxe-v1-immutable")?.equals(before ?? Buffer.alloc(0))).toBe(true);
  });

  it("takes chunks in any order, commits only an exactly covered archive, and hands out a signed read-only archiveLocation", async () => {
    const data = randomBytes(12);
    const version = "1".repeat(64);
    const reserved = await legacy(server, "POST", "caches", {
      body: JSON.stringify({ key: "hxe-v1-raw", version, cacheSize: 12 }),
    });
    expect(reserved.status).toBe(201);
    const id = Number(reserved.body?.cacheId);
    expect(id).toBeGreaterThan(0);
    const chunk = (start: number, end: number, range = `bytes ${start}-${end}/*`, bytes = data) =>
      legacy(server, "PATCH", `caches/${id}`, {
        body: bytes.subarray(start, end + 1),
        headers: { "content-type": "application/octet-stream", "content-range": range },
      });
    expect((await chunk(4, 7)).status).toBe(204);
    expect((await chunk(0, 3)).status).toBe(204);
    expect((await chunk(0, 3, "bytes=0-3")).status).toBe(400);
    expect((await chunk(8, 11, "bytes 8-12/*")).status).toBe(400);
    const commit = (size: number) =>
      legacy(server, "POST", `caches/${id}`, { body: JSON.stringify({ size }) });
    expect(await commit(12)).toMatchObject({
      status: 400,
      body: { message: expect.stringContaining("does not match") },
    });
    expect((await chunk(10, 11)).status).toBe(204);
    expect(await commit(12)).toMatchObject({
      status: 400,
      body: { message: expect.stringContaining("gap at byte 8") },
    });
    expect((await chunk(8, 9)).status).toBe(204);
    expect((await commit(12)).status).toBe(204);
    expect((await commit(12)).status).toBe(400);

    const found = await legacy(server, "GET", `cache?keys=hxe-v1-raw&version=${version}`);
    expect(found).toMatchObject({
      status: 200,
      body: { cacheKey: "hxe-v1-raw", cacheVersion: version, scope: "refs/heads/main" },
    });
    expect(Date.parse(String(found.body?.creationTime))).not.toBeNaN();
    const location = String(found.body?.archiveLocation);
    const download = await fetch(location);
    expect(Buffer.from(await download.arrayBuffer()).equals(data)).toBe(true);
    expect(
      (await fetch(location, { method: "PUT", headers: { "x-ms-blob-type": "BlockBlob" } })).status,
    ).toBe(403);
    expect((await fetch(location.replace(/sig=[^&]+/, "sig=AAAA"))).status).toBe(403);

    const listed = await legacy(server, "GET", "caches?key=hxe-v1-ra");
    expect(listed.body).toMatchObject({ totalCount: 1, artifactCaches: [{ cacheKey: "hxe-v1-raw" }] });
    const again = await legacy(server, "POST", "caches", {
      body: JSON.stringify({ key: "hxe-v1-raw", version }),
    });
    expect(again).toMatchObject({ status: 409, body: { typeKey: "ArtifactCacheAlreadyExistsException" } });
  });

  it("fails its calls while failing (the chunk uploads too when blob storage fails), and recovers", async () => {
    const version = "2".repeat(64);
    server.fail = { service: 500 };
    const failing = await legacy(server, "GET", `cache?keys=k&version=${version}`);
    expect(failing).toMatchObject({ status: 500, body: { message: expect.stringContaining("failing") } });
    server.fail = { blob: 500 };
    const reserved = await legacy(server, "POST", "caches", {
      body: JSON.stringify({ key: "hxe-v1-fail", version }),
    });
    expect(reserved.status).toBe(201);
    const patch = () =>
      legacy(server, "PATCH", `caches/${String(reserved.body?.cacheId)}`, {
        body: Buffer.from("x"),
        headers: { "content-type": "application/octet-stream", "content-range": "bytes 0-0/*" },
      });
    expect((await patch()).status).toBe(500);
    server.fail = {};
    expect((await legacy(server, "GET", `cache?keys=k&version=${version}`)).status).toBe(204);
    expect((await patch()).status).toBe(204);
  });

  it("serves one store to both protocols: what v2 saved, v1 restores, and the reverse", async () => {
    const file = join(root, "work", "shared.txt");
    useServer(server, root, "v2");
    writeFileSync(file, "from v2");
    expect(await cache.saveCache([file], "hxe-shared-1")).toBeGreaterThan(0);
    expect(server.calls.at(-1)).toMatchObject({ op: "FinalizeCacheEntryUpload", protocol: "v2" });

    useServer(server, root, "v1");
    rmSync(file);
    expect(await cache.restoreCache([file], "hxe-shared-1")).toBe("hxe-shared-1");
    expect(readFileSync(file, "utf8")).toBe("from v2");
    expect(await cache.saveCache([file], "hxe-shared-1")).toBe(-1);
    expect(server.calls.at(-1)).toMatchObject({ op: "reserveCache", status: 409 });
    writeFileSync(file, "from v1");
    expect(await cache.saveCache([file], "hxe-shared-2")).toBeGreaterThan(0);

    useServer(server, root, "v2");
    rmSync(file);
    expect(await cache.restoreCache([file], "hxe-shared-3", ["hxe-shared-"])).toBe("hxe-shared-2");
    expect(readFileSync(file, "utf8")).toBe("from v1");
    expect(server.calls.at(-2)).toMatchObject({ op: "GetCacheEntryDownloadURL", protocol: "v2" });
  });
});

describe("the local Actions cache service over v1 with *.blob.core.windows.net URLs", () => {
  it("makes @actions/cache download with its HTTP client (HEAD, then ranged GETs through a CONNECT tunnel)", async () => {
    const root = mkdtempSync(join(tmpdir(), "hxe-cache-v1-azure-"));
    const server = await ActionsCacheServer.start({ blobHost: "azure" });
    try {
      useServer(server, root, "v1");
      const file = join(root, "work", "azure.bin");
      const data = randomBytes(5_000_000);
      writeFileSync(file, data);
      expect(await cache.saveCache([file], "hxe-v1-azure")).toBeGreaterThan(0);
      rmSync(file);
      expect(await cache.restoreCache([file], "hxe-v1-azure")).toBe("hxe-v1-azure");
      expect(readFileSync(file).equals(data)).toBe(true);
      const ops = server.calls.map((c) => `${c.op} ${c.status}`);
      expect(ops).toContain("blob:HEAD 200");
      expect(ops.filter((o) => o === "blob:GET 206").length).toBe(2); // 4 MiB segments
    } finally {
      await server.close();
      restoreEnv();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
