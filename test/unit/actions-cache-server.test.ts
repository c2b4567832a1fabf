/**
 * The local Actions cache service, driven by the real `@actions/cache` (and
 * the Azure Blob SDK it uploads and downloads with): keys, versions, restore
 * keys, immutability, block uploads, ranged downloads.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as cache from "@actions/cache";
import { BlockBlobClient } from "@azure/storage-blob";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ActionsCacheServer } from "../support/actions-cache-server.js";

const ENV_NAMES = [
  "ACTIONS_CACHE_SERVICE_V2",
  "ACTIONS_RESULTS_URL",
  "ACTIONS_RUNTIME_TOKEN",
  "HTTP_PROXY",
  "http_proxy",
  "RUNNER_TEMP",
  "GITHUB_WORKSPACE",
];
const saved = Object.fromEntries(ENV_NAMES.map((n) => [n, process.env[n]]));

function useServer(server: ActionsCacheServer, root: string): void {
  for (const n of ENV_NAMES) delete process.env[n];
  Object.assign(process.env, server.clientEnv());
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

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "hxe-cache-server-"));
    server = await ActionsCacheServer.start();
  });
  afterEach(() => {
    server.fail = {};
  });
  afterAll(async () => {
    await server.close();
    for (const [n, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    }
    rmSync(root, { recursive: true, force: true });
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
      for (const [n, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[n];
        else process.env[n] = v;
      }
      rmSync(root, { recursive: true, force: true });
    }
  });
});
