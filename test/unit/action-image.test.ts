/**
 * The image input's download form, against local HTTP servers standing in
 * for GitHub: `web` (GITHUB_SERVER_URL: release pages that redirect), `api`
 * (GITHUB_API_URL: releases by tag, assets with Accept:
 * application/octet-stream, redirecting), and `objects` (where redirects
 * land, with signed URLs; also a third party's host). Each server records
 * every request with its Authorization and Accept headers. Each test has a
 * tool cache of its own.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tc from "@actions/tool-cache";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGE_TOOL, resolveImage, toolVersion, type ImageOptions } from "../../src/action/image.js";
import { EngineError } from "../../src/engine/errors.js";

const image = randomBytes(2 * 1024 * 1024 + 5);
const digest = createHash("sha256").update(image).digest("hex");
const NAME = "stack-emulator-amd64.qcow2";
const TOKEN = "ghs_s3cr3tT0kenValue";
const SIGNATURE = "X-Amz-Signature=sig123secret";

interface Seen {
  server: string;
  path: string;
  authorization: string | undefined;
  accept: string | undefined;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe("the image input", () => {
  const servers: Server[] = [];
  const seen: Seen[] = [];
  let web = "";
  let api = "";
  let objects = "";
  let objectsPort = 0;
  let root = "";
  let flakyHits = 0;

  async function listen(name: string, handle: Handler): Promise<string> {
    const server = createServer((req, res) => {
      seen.push({
        server: name,
        path: req.url ?? "",
        authorization: req.headers.authorization,
        accept: req.headers.accept,
      });
      handle(req, res);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  }
  const redirect = (res: ServerResponse, to: string) => void res.writeHead(302, { location: to }).end();
  const sendImage = (res: ServerResponse) => {
    res.writeHead(200, { "content-length": String(image.length) });
    res.end(image);
  };
  const authorized = (req: IncomingMessage) => req.headers.authorization === `Bearer ${TOKEN}`;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "hxe-action-image-"));
    objects = await listen("objects", (req, res) => {
      const path = (req.url ?? "").split("?")[0];
      if (path === "/signed/image") return sendImage(res);
      if (path === "/signed/sha") return void res.end(`${digest}  ${NAME}\n`);
      if (path === "/signed/wrong-sha") return void res.end(`${"0".repeat(64)}  ${NAME}\n`);
      if (path === `/third/${NAME}`) return sendImage(res);
      if (path === `/third/${NAME}.sha256`) return void res.end(`${digest}  ${NAME}\n`);
      if (path === `/lying/${NAME}.sha256`) return void res.end(`${"0".repeat(64)}  x\n`);
      if (path?.endsWith(`/${NAME}`) && (path.startsWith("/lying/") || path.startsWith("/plain/"))) {
        return sendImage(res);
      }
      if (path === `/abort/${NAME}` || (path === `/flaky/${NAME}` && ++flakyHits === 1)) {
        // Half the body, then the connection drops.
        res.writeHead(200, { "content-length": String(image.length) });
        res.write(image.subarray(0, image.length / 2), () => res.socket?.destroy());
        return;
      }
      if (path === `/flaky/${NAME}`) return sendImage(res);
      if (path === `/flaky/${NAME}.sha256`) return void res.end(`${digest}  ${NAME}\n`);
      res.writeHead(404).end();
    });
    objectsPort = Number(new URL(objects).port);
    web = await listen("web", (req, res) => {
      const url = req.url ?? "";
      if (url === `/o/public/releases/download/v1/${NAME}`) {
        return redirect(res, `${objects}/signed/image?${SIGNATURE}`);
      }
      if (url === `/o/public/releases/download/v1/${NAME}.sha256`) {
        return redirect(res, `${objects}/signed/sha?${SIGNATURE}`);
      }
      if (url === `/o/public/releases/download/nosum/${NAME}`) {
        return redirect(res, `${objects}/signed/image?${SIGNATURE}`);
      }
      // A private repository's release page: not found, token or not (the API is the way).
      res.writeHead(404).end();
    });
    api = await listen("api", (req, res) => {
      const url = req.url ?? "";
      if (!authorized(req)) return void res.writeHead(404).end(); // private: invisible without the token
      const asset = (id: number, name: string) => ({
        name,
        url: `${api}/repos/o/private/releases/assets/${id}`,
      });
      const release = (assets: unknown[]) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ tag_name: "x", assets }));
      };
      if (url === "/repos/o/private/releases/tags/v1") {
        return release([asset(1, NAME), asset(2, `${NAME}.sha256`), asset(9, "notes.txt")]);
      }
      if (url === "/repos/o/private/releases/tags/nosum") return release([asset(1, NAME)]);
      if (url === "/repos/o/private/releases/tags/lying")
        return release([asset(1, NAME), asset(3, `${NAME}.sha256`)]);
      if (url === "/repos/o/private/releases/tags/noimage") return release([asset(9, "notes.txt")]);
      const m = /^\/repos\/o\/private\/releases\/assets\/(\d+)$/.exec(url);
      if (m && req.headers.accept === "application/octet-stream") {
        const to = { "1": "signed/image", "2": "signed/sha", "3": "signed/wrong-sha" }[m[1] ?? ""];
        if (to) return redirect(res, `${objects}/${to}?${SIGNATURE}`);
      }
      res.writeHead(404).end();
    });
  });
  afterAll(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
    rmSync(root, { recursive: true, force: true });
  });

  /** Options for one resolve, with a tool cache of its own (unless given one). */
  function opts(extra: Partial<ImageOptions> = {}) {
    const logs: string[] = [];
    const o: ImageOptions = {
      arch: "amd64",
      defaultPath: join(root, "nowhere.qcow2"),
      toolCacheDir: mkdtempSync(join(root, "tool-cache-")),
      env: { GITHUB_SERVER_URL: web, GITHUB_API_URL: api },
      attempts: 1,
      retryDelayMs: 0,
      log: (m) => logs.push(m),
      warn: (m) => logs.push(`warning: ${m}`),
      ...extra,
    };
    return { o, logs, toolCache: o.toolCacheDir! };
  }
  const filesUnder = (dir: string): string[] =>
    (readdirSync(dir, { recursive: true }) as string[]).filter((f) => statSync(join(dir, f)).isFile());
  const since = (n: number) => seen.slice(n);
  const failure = async (p: Promise<unknown>): Promise<EngineError> => {
    const e = await p.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(EngineError);
    return e as EngineError;
  };
  const privateTag = (tag: string) => ({ kind: "tag" as const, tag });
  const privateBase = () => `${web}/o/private/releases/download`;

  describe("release tags with a token", () => {
    it("download a private release's asset through the API, the token going to the API host only", async () => {
      const { o, logs } = opts({ token: TOKEN, releaseBase: privateBase() });
      const n = seen.length;
      const r = await resolveImage(privateTag("v1"), o);
      expect(r).toMatchObject({ source: "download", sha256: digest });
      expect(r.message).toContain(`sha256 ${digest} verified`);
      expect(readFileSync(r.path).equals(image)).toBe(true);
      const reqs = since(n);
      expect(reqs.map((s) => `${s.server} ${s.path.split("?")[0]}`)).toEqual([
        "api /repos/o/private/releases/tags/v1",
        "api /repos/o/private/releases/assets/2",
        "objects /signed/sha",
        "api /repos/o/private/releases/assets/1",
        "objects /signed/image",
      ]);
      for (const s of reqs.filter((x) => x.server === "api")) expect(s.authorization).toBe(`Bearer ${TOKEN}`);
      for (const s of reqs.filter((x) => x.path.includes("/assets/"))) {
        expect(s.accept).toBe("application/octet-stream");
      }
      // The redirect target (a signed URL on another host) never sees the token.
      for (const s of reqs.filter((x) => x.server === "objects")) expect(s.authorization).toBeUndefined();
      expect(logs.join("\n")).not.toContain(TOKEN);
      expect(logs.join("\n")).not.toContain(SIGNATURE);
    });

    it("never send the token to a URL input, or to a release base on another server", async () => {
      const third = opts({ token: TOKEN });
      const n = seen.length;
      const a = await resolveImage({ kind: "url", url: `${objects}/third/${NAME}` }, third.o);
      expect(a.message).toContain("verified");
      const other = opts({ token: TOKEN, releaseBase: `${objects}/o/r/releases/download` });
      // A release base that is not on GITHUB_SERVER_URL's server: the public asset, no token.
      await failure(resolveImage(privateTag("v1"), other.o));
      expect(other.logs.join("\n")).toContain("so the token is not sent");
      const reqs = since(n);
      expect(reqs.length).toBeGreaterThanOrEqual(3);
      expect(reqs.every((s) => s.server === "objects" && s.authorization === undefined)).toBe(true);
    });

    it("keep the token and the signed URL out of errors", async () => {
      const missing = opts({ token: TOKEN, releaseBase: privateBase() });
      const e1 = await failure(resolveImage(privateTag("nope"), missing.o));
      expect(e1.code).toBe("DOWNLOAD_FAILED");
      expect(e1.message).toContain("release nope of o/private was not found");
      expect(e1.hint).toContain("token input can read o/private");
      const noImage = opts({ token: TOKEN, releaseBase: privateBase() });
      const e2 = await failure(resolveImage(privateTag("noimage"), noImage.o));
      expect(e2.code).toBe("IMAGE_NOT_FOUND");
      expect(e2.hint).toContain("notes.txt");
      const aborted = opts({ token: TOKEN, releaseBase: privateBase() });
      const e3 = await failure(
        resolveImage({ kind: "url", url: `${objects}/abort/${NAME}?${SIGNATURE}` }, aborted.o),
      );
      for (const e of [e1, e2, e3]) {
        expect(`${e.message} ${e.hint}`).not.toContain(TOKEN);
        expect(`${e.message} ${e.hint}`).not.toContain(SIGNATURE);
      }
      expect(e3.message).toContain(`${objects}/abort/${NAME}`);
    });

    it("fail closed when the release publishes no .sha256, unless image-sha256 is given", async () => {
      const { o, toolCache } = opts({ token: TOKEN, releaseBase: privateBase() });
      const e = await failure(resolveImage(privateTag("nosum"), o));
      expect(e.code).toBe("CHECKSUM_INVALID");
      expect(e.message).toContain("release tag nosum publishes no checksum");
      expect(e.hint).toContain("image-sha256");
      expect(filesUnder(toolCache)).toEqual([]);
      const ok = await resolveImage(privateTag("nosum"), { ...o, expectedSha256: digest });
      expect(ok.message).toContain(`sha256 ${digest} verified`);
    });
  });

  describe("release tags without a token", () => {
    it("download the public release asset, following its redirect", async () => {
      const { o } = opts({ releaseBase: `${web}/o/public/releases/download` });
      const n = seen.length;
      const r = await resolveImage({ kind: "tag", tag: "v1" }, o);
      expect(r).toMatchObject({ source: "download", sha256: digest });
      expect(since(n).map((s) => `${s.server} ${s.path.split("?")[0]}`)).toEqual([
        `web /o/public/releases/download/v1/${NAME}.sha256`,
        "objects /signed/sha",
        `web /o/public/releases/download/v1/${NAME}`,
        "objects /signed/image",
      ]);
      expect(since(n).every((s) => s.authorization === undefined)).toBe(true);
    });

    it("fail closed when the release publishes no .sha256, unless image-sha256 is given", async () => {
      const tagged = { kind: "tag" as const, tag: "nosum" };
      const { o } = opts({ releaseBase: `${web}/o/public/releases/download` });
      const e = await failure(resolveImage(tagged, o));
      expect(e.code).toBe("CHECKSUM_INVALID");
      expect(e.message).toContain("release tag nosum publishes no checksum");
      expect(e.hint).toContain("image-sha256");
      const ok = await resolveImage(tagged, { ...o, expectedSha256: digest });
      expect(ok.message).toContain(`sha256 ${digest} verified`);
    });
  });

  describe("the tool cache", () => {
    it("gets the download in tool-cache's layout, mode 0644, with its digest beside it", async () => {
      const toolCache = mkdtempSync(join(root, "tool-cache-"));
      const url = `${objects}/third/${NAME}`;
      const { o } = opts({ toolCacheDir: undefined, env: { RUNNER_TOOL_CACHE: toolCache } });
      const r = await resolveImage({ kind: "url", url }, o);
      const entry = join(toolCache, IMAGE_TOOL, toolVersion(url, undefined), "amd64");
      expect(r.path).toBe(join(entry, NAME));
      expect(existsSync(`${entry}.complete`)).toBe(true);
      // The toolkit finds it where it would have put it itself.
      const saved = process.env.RUNNER_TOOL_CACHE;
      process.env.RUNNER_TOOL_CACHE = toolCache;
      try {
        expect(tc.find(IMAGE_TOOL, toolVersion(url, undefined), "amd64")).toBe(entry);
      } finally {
        if (saved === undefined) delete process.env.RUNNER_TOOL_CACHE;
        else process.env.RUNNER_TOOL_CACHE = saved;
      }
      expect(statSync(r.path).mode & 0o777).toBe(0o644);
      expect(filesUnder(toolCache).sort()).toEqual(
        [
          join(IMAGE_TOOL, toolVersion(url, undefined), "amd64.complete"),
          join(IMAGE_TOOL, toolVersion(url, undefined), "amd64", NAME),
          join(IMAGE_TOOL, toolVersion(url, undefined), "amd64", `${NAME}.digest.json`),
        ].sort(),
      );
    });

    it("takes a verified image from the restore hook (the Actions cache) instead of downloading it", async () => {
      const url = `${objects}/third/${NAME}`;
      const asked: string[] = [];
      const { o } = opts({
        restore: async (sha256, into) => {
          asked.push(sha256);
          writeFileSync(into, image);
          return true;
        },
      });
      const n = seen.length;
      const r = await resolveImage({ kind: "url", url }, o);
      expect(asked).toEqual([digest]);
      expect(r).toMatchObject({ source: "actions-cache", sha256: digest, verified: true });
      expect(readFileSync(r.path).equals(image)).toBe(true);
      // Only the checksum was fetched: the image itself came from the hook.
      expect(since(n).map((x) => x.path)).toEqual([`/third/${NAME}.sha256`]);
      // It is now the tool-cache entry a later run finds, digest and all.
      const again = await resolveImage({ kind: "url", url }, { ...o, restore: undefined });
      expect(again).toMatchObject({ source: "tool-cache", path: r.path, sha256: digest });
    });

    it("downloads when the restore hook has nothing, and never asks it for an unverified image", async () => {
      const url = `${objects}/third/${NAME}`;
      let asked = 0;
      const { o } = opts({ restore: async () => (asked++, false) });
      const r = await resolveImage({ kind: "url", url }, o);
      expect(asked).toBe(1);
      expect(r).toMatchObject({ source: "download", sha256: digest, verified: true });
      const plain = opts({ restore: async () => (asked++, true) });
      const unverified = await resolveImage({ kind: "url", url: `${objects}/plain/${NAME}` }, plain.o);
      expect(asked).toBe(1);
      expect(unverified).toMatchObject({ source: "download", verified: false });
    });

    it("answers a second run without downloading, with the digest recorded beside the image", async () => {
      const { o } = opts();
      const url = `${objects}/third/${NAME}`;
      const first = await resolveImage({ kind: "url", url }, o);
      const n = seen.length;
      const again = await resolveImage({ kind: "url", url }, o);
      expect(again).toMatchObject({ source: "tool-cache", path: first.path, sha256: digest });
      expect(since(n)).toEqual([]);
      // A touched image is still the cached one, but its recorded digest no longer vouches for it.
      const t = new Date(statSync(first.path).mtimeMs + 5000);
      utimesSync(first.path, t, t);
      const touched = await resolveImage({ kind: "url", url }, o);
      expect(touched.source).toBe("tool-cache");
      expect(touched.sha256).toBeUndefined();
      expect(since(n)).toEqual([]);
    });

    it("keeps nothing of a download whose digest does not match, from the release or image-sha256", async () => {
      const api1 = opts({ token: TOKEN, releaseBase: privateBase() });
      const e1 = await failure(resolveImage(privateTag("lying"), api1.o));
      expect(e1.code).toBe("CHECKSUM_MISMATCH");
      expect(e1.message).toContain(`has sha256 ${digest}, but the release's ${NAME}.sha256 says`);
      expect(filesUnder(api1.toolCache)).toEqual([]);

      const lying = `${objects}/lying/${NAME}`;
      const url1 = opts();
      const e2 = await failure(resolveImage({ kind: "url", url: lying }, url1.o));
      expect(e2.message).toContain(`${lying}.sha256 says`);
      expect(filesUnder(url1.toolCache)).toEqual([]);

      const given = opts({ expectedSha256: "1".repeat(64) });
      const e3 = await failure(resolveImage({ kind: "url", url: `${objects}/third/${NAME}` }, given.o));
      expect(e3.message).toContain("the image-sha256 input says");
      expect(filesUnder(given.toolCache)).toEqual([]);
    });

    it("keeps nothing of a download the server broke off, and a next run downloads afresh", async () => {
      const { o, toolCache } = opts({ expectedSha256: digest });
      const url = `${objects}/abort/${NAME}`;
      const e = await failure(resolveImage({ kind: "url", url }, o));
      expect(e.code).toBe("DOWNLOAD_FAILED");
      expect(e.message).toContain("broke off the image");
      expect(filesUnder(toolCache)).toEqual([]);
      const n = seen.length;
      await failure(resolveImage({ kind: "url", url }, o));
      expect(since(n).map((s) => s.path)).toEqual([`/abort/${NAME}`]);
    });

    it("tries a broken-off download again, and keeps the complete one", async () => {
      flakyHits = 0;
      const { o, logs } = opts({ attempts: 2 });
      const r = await resolveImage({ kind: "url", url: `${objects}/flaky/${NAME}` }, o);
      expect(r).toMatchObject({ source: "download", sha256: digest });
      expect(readFileSync(r.path).equals(image)).toBe(true);
      expect(flakyHits).toBe(2);
      expect(logs.join("\n")).toMatch(/broke off the image.*trying again in 0 s \(2 of 2\)/);
    });

    it("removes what a killed download left behind, and nothing a live one may be writing", async () => {
      const { o, toolCache } = opts();
      const dead = spawnSync("true").pid;
      const stale = join(toolCache, `.${IMAGE_TOOL}.0.0.0-abc.amd64.${dead}.0123456789ab.partial`);
      const live = join(toolCache, `.${IMAGE_TOOL}.0.0.0-abc.amd64.${process.ppid}.0123456789ab.partial`);
      const recent = join(toolCache, `.${IMAGE_TOOL}.0.0.0-abc.amd64.${dead}.ba9876543210.partial`);
      const anHourAgo = new Date(Date.now() - 3600_000);
      for (const f of [stale, live, recent]) writeFileSync(f, "half an image");
      for (const f of [stale, live]) utimesSync(f, anHourAgo, anHourAgo);
      await resolveImage({ kind: "url", url: `${objects}/third/${NAME}` }, o);
      expect(existsSync(stale)).toBe(false);
      // Its process is alive; or it was written to just now (a process this one cannot see).
      expect(existsSync(live)).toBe(true);
      expect(existsSync(recent)).toBe(true);
    });
  });

  describe("plain URLs", () => {
    it("are accepted without a published checksum, with a warning", async () => {
      const { o, logs } = opts();
      const r = await resolveImage({ kind: "url", url: `${objects}/plain/${NAME}` }, o);
      expect(r.message).toContain("no checksum published");
      expect(r.sha256).toBe(digest);
      expect(logs.join("\n")).toContain("not verified");
    });
  });

  describe("behind a proxy", () => {
    it("goes through the HTTP proxy named by http_proxy, the checksum too", async () => {
      const tunnels: string[] = [];
      const proxy = createServer((_req, res) => void res.writeHead(405).end());
      const sockets = new Set<Socket>();
      proxy.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => {
        tunnels.push(req.url ?? "");
        sockets.add(client);
        const [host, port] = (req.url ?? "").split(":");
        if (host !== "objects.hexclave.test") return void client.end("HTTP/1.1 502 Bad Gateway\r\n\r\n");
        const upstream = connect(Number(port), "127.0.0.1", () => {
          client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
          upstream.write(head);
          upstream.pipe(client);
          client.pipe(upstream);
        });
        sockets.add(upstream);
        upstream.on("error", () => client.destroy());
        client.on("error", () => upstream.destroy());
      });
      await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
      const saved = { http_proxy: process.env.http_proxy, no_proxy: process.env.no_proxy };
      process.env.http_proxy = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
      delete process.env.no_proxy;
      try {
        // A name only the proxy knows: the download cannot have gone around it.
        const url = `http://objects.hexclave.test:${objectsPort}/third/${NAME}`;
        const r = await resolveImage({ kind: "url", url }, opts().o);
        expect(r).toMatchObject({ source: "download", sha256: digest });
        expect(tunnels).toEqual([
          `objects.hexclave.test:${objectsPort}`,
          `objects.hexclave.test:${objectsPort}`,
        ]);
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => proxy.close(() => r()));
      }
    });
  });

  describe("paths", () => {
    it("are used as they are, and one that does not exist is refused", async () => {
      const { o } = opts();
      const p = join(root, "local.qcow2");
      writeFileSync(p, "x");
      expect(await resolveImage({ kind: "path", path: p }, o)).toMatchObject({ source: "path", path: p });
      await expect(resolveImage({ kind: "path", path: join(root, "missing.qcow2") }, o)).rejects.toThrow(
        /does not exist/,
      );
      await expect(resolveImage({ kind: "default" }, o)).rejects.toThrow(/no image input/);
    });
  });
});
