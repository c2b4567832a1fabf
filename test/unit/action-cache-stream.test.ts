/**
 * The streamed restore's own client (cache-stream.ts) against the local cache
 * service, for entries the real @actions/cache saveCache made: the version
 * it computes is @actions/cache's; the lookup finds the newest entry under
 * v2 and v1, with blob URLs on loopback and on an Azure host behind the
 * proxy; the member arrives whole and in order over many ranges; a blob
 * store that ignores Range, gzip entries, a stall-free failure of one range,
 * damaged entries and unknown answers each end as they should.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actionsCache, callCache } from "../../src/action/cache-client.js";
import {
  CacheError,
  blobRanges,
  cacheVersion,
  compressionOnThisRunner,
  lookupEntry,
  lookupStreamed,
  streamEntry,
} from "../../src/action/cache-stream.js";
import { ActionsCacheServer, CACHE_TEST_ENV, type CacheProtocol } from "../support/actions-cache-server.js";
import { saveEnv } from "../support/env.js";

const ENV = CACHE_TEST_ENV;
const restoreEnv = saveEnv(ENV);
const MEMBER = "entry.bin";

async function collect(data: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of data) parts.push(p);
  return Buffer.concat(parts);
}

/** A consumer that keeps each member's bytes, by name. */
function keeper() {
  const got = new Map<string, Buffer>();
  const consume = async (member: string, data: AsyncIterable<Buffer>) =>
    void got.set(member, await collect(data));
  return { got, consume };
}

/** A one-member tar, as @actions/cache's tar makes it (the test's gzip entries are built with it). */
async function tarOf(name: string, content: Buffer): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name, size: content.length }, content);
  pack.finalize();
  return collect(pack as AsyncIterable<Buffer>);
}

/** A plain HTTP blob store for one blob: `ranges` false ignores Range; `failRange` answers 500 for that start. */
async function blobServer(
  data: Buffer,
  opts: { ranges: boolean; failFrom?: number; breakFirst?: boolean },
): Promise<{ url: string; close: () => Promise<void>; asked: string[] }> {
  const asked: string[] = [];
  const server: Server = createServer((req, res) => {
    const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ""));
    asked.push(String(req.headers.range ?? "none"));
    if (!opts.ranges || !range) {
      res.writeHead(200, { "content-length": data.length });
      res.end(data);
      return;
    }
    const start = Number(range[1]);
    const end = Math.min(Number(range[2]), data.length - 1);
    if (opts.failFrom !== undefined && start >= opts.failFrom) {
      res.writeHead(500);
      res.end("failing (test)");
      return;
    }
    res.writeHead(206, {
      "content-range": `bytes ${start}-${end}/${data.length}`,
      "content-length": end - start + 1,
    });
    if (opts.breakFirst && start === 0 && asked.filter((a) => a.startsWith("bytes=0-")).length === 1) {
      // The first answer breaks off halfway (the connection drops).
      res.write(data.subarray(0, (end + 1) / 2), () => res.destroy());
      return;
    }
    res.end(data.subarray(start, end + 1));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/blob?sig=secret`,
    asked,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

afterAll(restoreEnv);

describe("the cache version", () => {
  it("is the one @actions/cache gives an entry of the same paths and compression", async () => {
    // Its internal module, by file: the package exports only its entry point.
    const internal = pathToFileURL(
      resolve(import.meta.dirname, "../../node_modules/@actions/cache/lib/internal/cacheUtils.js"),
    ).href;
    const { getCacheVersion } = (await import(internal)) as {
      getCacheVersion: (paths: string[], method: string, cross?: boolean) => string;
    };
    for (const method of ["zstd-without-long", "gzip"] as const) {
      expect(cacheVersion([MEMBER], method)).toBe(getCacheVersion([MEMBER], method, false));
    }
    expect(await compressionOnThisRunner()).toBe("zstd-without-long");
  });
});

describe.each([
  ["v2", "loopback"],
  ["v2", "azure"],
  ["v1", "loopback"],
  ["v1", "azure"],
] as Array<[CacheProtocol, "loopback" | "azure"]>)(
  "a streamed restore over cache protocol %s, blobs on %s",
  (protocol, blobHost) => {
    let root: string;
    let server: ActionsCacheServer;
    let env: Record<string, string>;
    const content = randomBytes(5 * 1024 * 1024 + 12345);

    beforeAll(async () => {
      root = mkdtempSync(join(tmpdir(), "hxe-cache-stream-"));
      server = await ActionsCacheServer.start({ blobHost });
      for (const n of ENV) delete process.env[n];
      env = server.envFor(protocol);
      Object.assign(process.env, env);
      process.env.RUNNER_TEMP = join(root, "temp");
      mkdirSync(process.env.RUNNER_TEMP, { recursive: true });
      const dir = join(root, "save");
      mkdirSync(dir, { recursive: true });
      // Two generations under one prefix, saved by the real saveCache.
      for (const [key, bytes] of [
        ["entry-g1", randomBytes(1000)],
        ["entry-g2", content],
      ] as const) {
        writeFileSync(join(dir, MEMBER), bytes);
        expect((await callCache(dir, () => actionsCache.saveCache([MEMBER], key))).value).toBeGreaterThan(0);
      }
    });
    afterAll(async () => {
      await server.close();
      rmSync(root, { recursive: true, force: true });
    });

    it("finds the newest entry for a prefix and streams its member whole, in order, over many ranges", async () => {
      const found = await lookupStreamed([MEMBER], "entry-g", ["entry-g"], env, {
        ranges: { chunkBytes: 256 * 1024, concurrency: 3 },
      });
      expect(found).toMatchObject({ kind: "hit", key: "entry-g2" });
      if (found.kind !== "hit") throw new Error("unreachable");
      const before = server.calls.filter((c) => c.op === "blob:GET").length;
      const k = keeper();
      await found.stream(k.consume);
      expect([...k.got.keys()]).toEqual([MEMBER]);
      expect(k.got.get(MEMBER)!.equals(content)).toBe(true);
      // The compressed entry (random data: about its own size) came in 256 KiB ranges.
      const gets = server.calls.filter((c) => c.op === "blob:GET").length - before;
      expect(gets).toBeGreaterThanOrEqual(Math.floor(server.entryData("entry-g2")!.length / (256 * 1024)));
    });

    it("misses when no entry has the key or a key with the prefix", async () => {
      expect(await lookupStreamed([MEMBER], "other", ["other-"], env)).toEqual({ kind: "miss" });
    });

    it("misses when the entry was saved for other paths (another version)", async () => {
      expect(await lookupStreamed(["elsewhere.bin"], "entry-g", ["entry-g"], env)).toEqual({ kind: "miss" });
    });

    it("skips the lookup when the runner's cache mode forbids reads", async () => {
      expect(
        await lookupStreamed([MEMBER], "entry-g", [], { ...env, ACTIONS_CACHE_MODE: "write-only" }),
      ).toEqual({ kind: "not-readable", mode: "write-only" });
    });

    it("says an outage (CACHE_UNAVAILABLE) when the service fails or refuses the token", async () => {
      server.fail = { service: 429 };
      try {
        await expect(lookupStreamed([MEMBER], "entry-g", [], env)).rejects.toMatchObject({
          code: "CACHE_UNAVAILABLE",
        });
      } finally {
        server.fail = {};
      }
      await expect(
        lookupStreamed([MEMBER], "entry-g", [], { ...env, ACTIONS_RUNTIME_TOKEN: "wrong" }),
      ).rejects.toMatchObject({ code: "CACHE_UNAVAILABLE", message: expect.stringContaining("401") });
    });

    it("refuses an entry whose tar holds another member than the one asked for", async () => {
      const found = await lookupStreamed([MEMBER], "entry-g", ["entry-g"], env);
      if (found.kind !== "hit") throw new Error(`expected a hit, got ${found.kind}`);
      const wrong = await lookupEntry(
        { paths: [MEMBER], primaryKey: "entry-g2", restoreKeys: [], compression: "zstd-without-long" },
        env,
      );
      if (wrong.kind !== "hit") throw new Error(`expected a hit, got ${wrong.kind}`);
      await expect(
        streamEntry(
          { url: wrong.url, members: ["other.bin"], compression: "zstd-without-long" },
          keeper().consume,
        ),
      ).rejects.toMatchObject({ code: "CACHE_ENTRY_INVALID", message: expect.stringContaining(MEMBER) });
    });

    it("refuses a damaged entry (CACHE_ENTRY_INVALID), whatever the consumer made of it", async () => {
      const good = server.entryData("entry-g2")!;
      const bad = Buffer.from(good);
      bad.fill(0x5a, Math.floor(bad.length / 2), Math.floor(bad.length / 2) + 4096);
      server.replaceEntryData("entry-g2", bad);
      try {
        const found = await lookupStreamed([MEMBER], "entry-g2", [], env);
        if (found.kind !== "hit") throw new Error(`expected a hit, got ${found.kind}`);
        await expect(found.stream(keeper().consume)).rejects.toMatchObject({ code: "CACHE_ENTRY_INVALID" });
      } finally {
        server.replaceEntryData("entry-g2", good);
      }
    });
  },
);

describe("the lookup against answers it does not know", () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      res.writeHead(req.url?.includes("teapot") ? 418 : 404, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "bad_route", msg: "no such method" }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("says CACHE_PROTOCOL (the caller falls back to @actions/cache), for v2 and v1", async () => {
    const req = { paths: [MEMBER], primaryKey: "k", restoreKeys: [], compression: "gzip" as const };
    for (const env of [
      { ACTIONS_CACHE_SERVICE_V2: "true", ACTIONS_RESULTS_URL: base, ACTIONS_RUNTIME_TOKEN: "t" },
      { ACTIONS_CACHE_URL: base, ACTIONS_RUNTIME_TOKEN: "t" },
    ]) {
      const err = await lookupEntry(req, env).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CacheError);
      expect(err).toMatchObject({
        code: "CACHE_PROTOCOL",
        message: expect.stringContaining("404: no such method"),
      });
    }
  });

  it("says CACHE_UNAVAILABLE when no service is configured", async () => {
    const req = { paths: [MEMBER], primaryKey: "k", restoreKeys: [], compression: "gzip" as const };
    await expect(lookupEntry(req, {})).rejects.toMatchObject({ code: "CACHE_UNAVAILABLE" });
  });
});

describe("the blob download", () => {
  const data = randomBytes(3 * 1024 * 1024 + 7);

  it("streams a blob from a store that ignores Range as one response", async () => {
    const s = await blobServer(data, { ranges: false });
    try {
      expect((await collect(blobRanges(s.url, { chunkBytes: 1 << 20 }))).equals(data)).toBe(true);
      expect(s.asked).toEqual(["bytes=0-1048575"]);
    } finally {
      await s.close();
    }
  });

  it("fetches every range once, in order, when the store honours Range", async () => {
    const s = await blobServer(data, { ranges: true });
    try {
      expect((await collect(blobRanges(s.url, { chunkBytes: 1 << 20, concurrency: 2 }))).equals(data)).toBe(
        true,
      );
      expect([...s.asked].sort()).toEqual(
        ["bytes=0-1048575", "bytes=1048576-2097151", "bytes=2097152-3145727", "bytes=3145728-3145734"].sort(),
      );
    } finally {
      await s.close();
    }
  });

  it("asks again for the first range when its answer breaks off", async () => {
    const s = await blobServer(data, { ranges: true, breakFirst: true });
    try {
      const got = await collect(blobRanges(s.url, { chunkBytes: 1 << 20, retries: 1, minTimeoutMs: 0 }));
      expect(got.equals(data)).toBe(true);
      expect(s.asked.filter((a) => a === "bytes=0-1048575")).toHaveLength(2);
    } finally {
      await s.close();
    }
  });

  it("fails with a DownloadError naming the URL without its signature when a range keeps failing", async () => {
    const s = await blobServer(data, { ranges: true, failFrom: 2 << 20 });
    try {
      const err = await collect(
        blobRanges(s.url, { chunkBytes: 1 << 20, retries: 1, minTimeoutMs: 0 }),
      ).catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: "DOWNLOAD_FAILED",
        message: expect.stringContaining("answered 500"),
      });
      expect(String((err as Error).message)).not.toContain("secret");
      // The failing range was tried twice (one retry), the others once.
      expect(s.asked.filter((a) => a === "bytes=2097152-3145727")).toHaveLength(2);
    } finally {
      await s.close();
    }
  });

  it("hands on a gzip entry's member (a runner without zstd saves gzip)", async () => {
    const s = await blobServer(gzipSync(await tarOf(MEMBER, data)), { ranges: true });
    try {
      const k = keeper();
      await streamEntry({ url: s.url, members: [MEMBER], compression: "gzip" }, k.consume);
      expect(k.got.get(MEMBER)!.equals(data)).toBe(true);
    } finally {
      await s.close();
    }
  });

  it("hands on every member of a several-path entry once, and refuses one with a member missing", async () => {
    const pack = tar.pack();
    pack.entry({ name: "image.qcow2", size: data.length }, data);
    pack.entry({ name: "image.json", size: 2 }, "{}");
    pack.finalize();
    const s = await blobServer(gzipSync(await collect(pack as AsyncIterable<Buffer>)), { ranges: true });
    try {
      const k = keeper();
      await streamEntry(
        { url: s.url, members: ["image.json", "image.qcow2"], compression: "gzip" },
        k.consume,
      );
      expect(k.got.get("image.qcow2")!.equals(data)).toBe(true);
      expect(k.got.get("image.json")!.toString()).toBe("{}");
      await expect(
        streamEntry(
          { url: s.url, members: ["image.qcow2", "image.json", "extra"], compression: "gzip" },
          keeper().consume,
        ),
      ).rejects.toMatchObject({
        code: "CACHE_ENTRY_INVALID",
        message: expect.stringContaining("holds no extra"),
      });
    } finally {
      await s.close();
    }
  });

  it("says a broken download is the download's failure (DOWNLOAD_FAILED), not a damaged entry", async () => {
    const s = await blobServer(gzipSync(await tarOf(MEMBER, data)), { ranges: true, failFrom: 1 << 20 });
    try {
      const err = await streamEntry(
        {
          url: s.url,
          members: [MEMBER],
          compression: "gzip",
          ranges: { chunkBytes: 1 << 20, retries: 0 },
        },
        keeper().consume,
      ).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "DOWNLOAD_FAILED" });
    } finally {
      await s.close();
    }
  });
});
