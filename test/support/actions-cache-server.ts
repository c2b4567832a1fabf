/**
 * A local stand-in for the GitHub Actions cache service, faithful to what the
 * real `@actions/cache` (v6) speaks, in both of its protocols over one store
 * of entries (`envFor` gives a step the environment for either):
 *
 * Cache service v2 (github.com; ACTIONS_RESULTS_URL + ACTIONS_CACHE_SERVICE_V2):
 *  - Twirp JSON RPCs under `/twirp/github.actions.results.api.v1.CacheService/`
 *    (CreateCacheEntry, FinalizeCacheEntryUpload, GetCacheEntryDownloadURL),
 *    bearer-token authenticated, with proto field names on the wire
 *    (`signed_upload_url`, `restore_keys`, `size_bytes`, …) and Twirp error
 *    bodies (`{"code":"already_exists","msg":…}`) on failure;
 *  - the Azure Blob requests that follow, against the signed URLs it hands
 *    out: a single-shot `PUT` (x-ms-blob-type: BlockBlob), or `PUT
 *    ?comp=block&blockid=…` per block then `PUT ?comp=blocklist` with the XML
 *    block list; `HEAD` (properties) and `GET` with `x-ms-range`/`Range` (206)
 *    for downloads. The signature (`sig`) and permission (`sp`) of each URL are
 *    checked, as a SAS would be.
 *
 * The legacy service (GitHub Enterprise Server, other runner implementations;
 * ACTIONS_CACHE_URL, which names a per-repository path, and no
 * ACTIONS_CACHE_SERVICE_V2): REST under `<ACTIONS_CACHE_URL>_apis/artifactcache/`,
 * bearer-token authenticated (401 without it), every call asking for
 * `Accept: application/json;api-version=6.0-preview.1` (400 without an
 * api-version), errors as the service's JSON exception bodies (`message`,
 * `typeKey`, …):
 *  - `GET cache?keys=k1,k2&version=v` → 200 `{scope, cacheKey, cacheVersion,
 *    creationTime, archiveLocation}` or 204 (no entry); `archiveLocation` is a
 *    signed, read-only blob URL as above, fetched without the token;
 *  - `GET caches?key=k` → 200 `{totalCount, artifactCaches}` (the client's
 *    diagnostics on a miss in debug mode);
 *  - `POST caches {key, version, cacheSize}` → 201 `{cacheId}`, or 409
 *    ArtifactCacheAlreadyExistsException ("Cache already exists. Scope: …,
 *    Key: …, Version: …") when the key and version are taken;
 *  - `PATCH caches/{id}`, one request per chunk (application/octet-stream,
 *    `Content-Range: bytes start-end/*`, chunks in parallel and in any order)
 *    → 204;
 *  - `POST caches/{id} {size}` commits → 204, when the chunks cover exactly
 *    [0, size) (400 otherwise).
 *
 * Entries are immutable per (key, version): a second CreateCacheEntry or
 * reservation for a key that exists (or is being uploaded) is refused, as the
 * real service does. Lookup (both protocols): the primary key exactly, then
 * each key as a prefix, the primary key first, then the restore keys in order;
 * among the entries a prefix matches, the newest; the version must match.
 *
 * Blob URLs are on 127.0.0.1 by default. With `blobHost: "azure"` they name a
 * `*.blob.core.windows.net` host, which makes `@actions/cache` download as on
 * a real runner: with the Azure SDK (HEAD + parallel ranged GETs) over v2, with
 * its own HTTP client (HEAD + parallel ranged GETs) over v1. The client then
 * needs HTTP_PROXY pointing at this server (see `envFor`), which serves
 * proxied requests for that host: absolute-form (the Azure SDK) and CONNECT
 * tunnels (@actions/http-client).
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

const SERVICE = "/twirp/github.actions.results.api.v1.CacheService/";
const LEGACY_API = "_apis/artifactcache/";
/** What @actions/cache asks the legacy service for, in every call's Accept header. */
const LEGACY_API_VERSION = "6.0-preview.1";
/** The branch scope legacy entries report (this service has one scope). */
const SCOPE = "refs/heads/main";
const AZURE_HOST = "hexclavecache.blob.core.windows.net";
const CONTAINER = "actions-cache";

/** The two protocols @actions/cache speaks: "v2" (Twirp + blob storage), "v1" (the legacy REST service). */
export type CacheProtocol = "v1" | "v2";

/** Every variable `envFor` may set: clear these before applying it, so no other protocol's leftovers steer the client. */
export const CACHE_CLIENT_ENV = [
  "ACTIONS_CACHE_SERVICE_V2",
  "ACTIONS_RESULTS_URL",
  "ACTIONS_CACHE_URL",
  "ACTIONS_RUNTIME_TOKEN",
  "HTTP_PROXY",
  "http_proxy",
] as const;

/**
 * What a cache test changes besides CACHE_CLIENT_ENV, to be saved and put
 * back: a GitHub Enterprise Server URL would force the legacy protocol, the
 * cache mode can forbid reads, and a runner's directories.
 */
export const CACHE_TEST_ENV = [
  ...CACHE_CLIENT_ENV,
  "GITHUB_SERVER_URL",
  "ACTIONS_CACHE_MODE",
  "RUNNER_TEMP",
  "GITHUB_WORKSPACE",
] as const;

export interface CacheEntry {
  id: number;
  key: string;
  version: string;
  blob: string;
  finalized: boolean;
  sizeBytes?: number;
  /** Creation order (a logical clock): "newest" in prefix lookups. */
  createdAt: number;
  /** Creation time, as the legacy service reports it (`creationTime`). */
  creationTime: string;
}

interface Blob {
  /** Uncommitted blocks by block id (base64): v2 block uploads. */
  blocks: Map<string, Buffer>;
  /** Uploaded chunks by start offset: v1 `PATCH caches/{id}` uploads. */
  chunks: Map<number, Buffer>;
  data?: Buffer;
  etag?: string;
  lastModified?: Date;
}

export interface RecordedCall {
  method: string;
  /**
   * v2: "CreateCacheEntry", "FinalizeCacheEntryUpload", "GetCacheEntryDownloadURL";
   * v1 (named as @actions/cache names them): "getCacheEntry", "listCache", "reserveCache",
   * "uploadChunk", "commitCache";
   * blob storage: "blob:PUT", "blob:PUT block", "blob:PUT blocklist", "blob:GET", "blob:HEAD".
   */
  op: string;
  status: number;
  /** The request body (Twirp, v1 JSON), the v1 lookup's query or chunk's range, or the blob range asked for. */
  detail?: unknown;
  /** Which protocol the call was; undefined for blob storage, which both use. */
  protocol?: CacheProtocol;
}

export interface CacheServerOptions {
  /** Where signed blob URLs point (see the file comment). Default "loopback". */
  blobHost?: "loopback" | "azure";
  /** The runtime token clients must send. */
  token?: string;
}

export interface FailureMode {
  /**
   * Answer every cache-service call with this HTTP status, in either protocol:
   * v2's Twirp RPCs (a Twirp "internal" error) and all of v1's REST calls
   * (its JSON exception body), the chunk uploads included.
   */
  service?: number;
  /** The older name of `service` (same effect). */
  twirp?: number;
  /**
   * Answer every request that carries the archive's bytes with this HTTP
   * status: the blob requests (v2 uploads, both protocols' downloads) and v1's
   * chunk uploads (`PATCH caches/{id}`).
   */
  blob?: number;
}

export class ActionsCacheServer {
  readonly entries: CacheEntry[] = [];
  readonly calls: RecordedCall[] = [];
  /** Set to make the service fail; clear to heal it. */
  fail: FailureMode = {};
  readonly token: string;
  /** The opaque per-repository path segment of ACTIONS_CACHE_URL (as the legacy service's URLs have). */
  readonly repoKey = randomBytes(9).toString("base64url");
  private readonly blobs = new Map<string, Blob>();
  private readonly secret = randomBytes(16);
  private readonly tunnels = new Set<Socket>();
  private nextId = 1;
  private clock = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly blobHost: "loopback" | "azure",
    token: string,
  ) {
    this.token = token;
  }

  static async start(options: CacheServerOptions = {}): Promise<ActionsCacheServer> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    const token = options.token ?? `hxe-test-token-${randomBytes(6).toString("hex")}`;
    const s = new ActionsCacheServer(server, port, options.blobHost ?? "loopback", token);
    server.on("request", (req, res) => {
      s.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(String(err));
      });
    });
    server.on("connect", (req, socket, head) => s.tunnel(req, socket as Socket, head));
    return s;
  }

  /** ACTIONS_RESULTS_URL: where the Twirp service is. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  /** ACTIONS_CACHE_URL: where the legacy (v1) service is, a per-repository path as on a real runner. */
  get legacyUrl(): string {
    return `http://127.0.0.1:${this.port}/${this.repoKey}/`;
  }

  /**
   * The environment a runner gives a step so `@actions/cache` talks to this
   * service over `protocol`: v2 is ACTIONS_RESULTS_URL with
   * ACTIONS_CACHE_SERVICE_V2; v1 is ACTIONS_CACHE_URL, and ACTIONS_CACHE_SERVICE_V2
   * must then be unset (clear CACHE_CLIENT_ENV first). Both carry the token.
   */
  envFor(protocol: CacheProtocol): Record<string, string> {
    const env: Record<string, string> =
      protocol === "v2"
        ? { ACTIONS_CACHE_SERVICE_V2: "true", ACTIONS_RESULTS_URL: this.url }
        : { ACTIONS_CACHE_URL: this.legacyUrl };
    env.ACTIONS_RUNTIME_TOKEN = this.token;
    if (this.blobHost === "azure") {
      env.HTTP_PROXY = `http://127.0.0.1:${this.port}`;
      env.http_proxy = env.HTTP_PROXY;
    }
    return env;
  }

  /** The v2 environment (`envFor("v2")`). */
  clientEnv(): Record<string, string> {
    return this.envFor("v2");
  }

  /** The stored bytes of a finalized entry (for tests that inspect or tamper with the cache). */
  entryData(key: string): Buffer | undefined {
    const e = this.entries.find((x) => x.key === key && x.finalized);
    return e ? this.blobs.get(e.blob)?.data : undefined;
  }

  /** Replace a finalized entry's bytes in place (a cache that hands back damaged content). */
  replaceEntryData(key: string, data: Buffer): void {
    const e = this.entries.find((x) => x.key === key && x.finalized);
    const blob = e && this.blobs.get(e.blob);
    if (!e || !blob) throw new Error(`no entry ${key}`);
    blob.data = data;
    blob.etag = etagOf(data);
    e.sizeBytes = data.length;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    for (const socket of this.tunnels) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- dispatch

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A proxied request names the absolute URL; a direct (or tunnelled) one only the path.
    const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "127.0.0.1"}`);
    const body = await readBody(req);
    if (url.pathname.startsWith(SERVICE))
      return this.twirp(req, res, url.pathname.slice(SERVICE.length), body);
    const legacy = `/${this.repoKey}/${LEGACY_API}`;
    if (url.pathname.startsWith(legacy))
      return this.legacy(req, res, url.pathname.slice(legacy.length), url.searchParams, body);
    if (url.pathname.includes(`/${CONTAINER}/`)) return this.blob(req, res, url, body);
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
  }

  /**
   * A proxy's CONNECT (how @actions/http-client reaches a host through
   * HTTP_PROXY): for the blob host, the tunnel is served by this server.
   */
  private tunnel(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const host = (req.url ?? "").replace(/:\d+$/, "");
    if (host !== AZURE_HOST) {
      socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    this.tunnels.add(socket);
    socket.once("close", () => this.tunnels.delete(socket));
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length > 0) socket.unshift(head);
    this.server.emit("connection", socket);
  }

  // ---------------------------------------------------------------- Twirp

  private twirp(req: IncomingMessage, res: ServerResponse, method: string, raw: Buffer): void {
    const reply = (status: number, payload: unknown, detail?: unknown) => {
      this.calls.push({ method: req.method ?? "", op: method, status, detail, protocol: "v2" });
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(payload));
    };
    const error = (status: number, code: string, msg: string, detail?: unknown) =>
      reply(status, { code, msg }, detail);

    if (req.method !== "POST") return error(404, "bad_route", `no handler for ${req.method} ${method}`);
    if (req.headers.authorization !== `Bearer ${this.token}`)
      return error(401, "unauthenticated", "invalid or missing runtime token");
    if (!String(req.headers["content-type"] ?? "").startsWith("application/json"))
      return error(415, "bad_route", "this service speaks the Twirp JSON protocol only");
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw.toString("utf8") || "{}") as Record<string, unknown>;
    } catch {
      return error(400, "malformed", "the request body is not JSON");
    }
    const failing = this.fail.service ?? this.fail.twirp;
    if (failing) return error(failing, "internal", "the cache service is failing (test)", body);
    const key = typeof body.key === "string" ? body.key : "";
    const version = typeof body.version === "string" ? body.version : "";

    switch (method) {
      case "CreateCacheEntry": {
        if (!key || !version) return error(400, "invalid_argument", "key and version are required", body);
        if (this.entries.some((e) => e.key === key && e.version === version)) {
          return error(
            409,
            "already_exists",
            "cache entry with the same key, version, and scope already exists",
            body,
          );
        }
        const entry = this.createEntry(key, version);
        return reply(200, { ok: true, signed_upload_url: this.signedUrl(entry.blob, "cw") }, body);
      }
      case "FinalizeCacheEntryUpload": {
        const entry = this.entries.find((e) => e.key === key && e.version === version && !e.finalized);
        if (!entry) return error(404, "not_found", `no pending cache entry for ${key}`, body);
        const data = this.blobs.get(entry.blob)?.data;
        if (!data) return error(400, "failed_precondition", "the blob was not uploaded", body);
        if (String(body.size_bytes) !== String(data.length)) {
          return error(
            400,
            "invalid_argument",
            `size_bytes ${String(body.size_bytes)} does not match the uploaded ${data.length}`,
            body,
          );
        }
        entry.finalized = true;
        entry.sizeBytes = data.length;
        return reply(200, { ok: true, entry_id: String(entry.id) }, body);
      }
      case "GetCacheEntryDownloadURL": {
        if (!key || !version) return error(400, "invalid_argument", "key and version are required", body);
        const restoreKeys = Array.isArray(body.restore_keys) ? (body.restore_keys as string[]) : [];
        const found = this.lookup([key, ...restoreKeys], version);
        if (!found) return reply(200, { ok: false, signed_download_url: "", matched_key: "" }, body);
        return reply(
          200,
          { ok: true, signed_download_url: this.signedUrl(found.blob, "r"), matched_key: found.key },
          body,
        );
      }
      default:
        return error(404, "bad_route", `no such method ${method}`, body);
    }
  }

  private createEntry(key: string, version: string): CacheEntry {
    const entry: CacheEntry = {
      id: this.nextId++,
      key,
      version,
      blob: randomBytes(12).toString("hex"),
      finalized: false,
      createdAt: ++this.clock,
      creationTime: new Date().toISOString(),
    };
    this.entries.push(entry);
    this.blobs.set(entry.blob, { blocks: new Map(), chunks: new Map() });
    return entry;
  }

  /** `keys`: the primary key, then the restore keys (see the file comment). */
  private lookup(keys: readonly string[], version: string): CacheEntry | undefined {
    const ready = this.entries.filter((e) => e.finalized && e.version === version);
    const exact = ready.find((e) => e.key === keys[0]);
    if (exact) return exact;
    for (const prefix of keys) {
      const matches = ready.filter((e) => e.key.startsWith(prefix)).sort((a, b) => b.createdAt - a.createdAt);
      if (matches[0]) return matches[0];
    }
    return undefined;
  }

  // ---------------------------------------------------------------- legacy (v1) REST

  private legacy(
    req: IncomingMessage,
    res: ServerResponse,
    resource: string,
    query: URLSearchParams,
    raw: Buffer,
  ): void {
    const method = req.method ?? "";
    const idMatch = /^caches\/(\d+)$/.exec(resource);
    const op =
      method === "GET" && resource === "cache"
        ? "getCacheEntry"
        : method === "GET" && resource === "caches"
          ? "listCache"
          : method === "POST" && resource === "caches"
            ? "reserveCache"
            : method === "PATCH" && idMatch
              ? "uploadChunk"
              : method === "POST" && idMatch
                ? "commitCache"
                : `${method} ${resource}`;
    const reply = (status: number, payload?: unknown, detail?: unknown) => {
      this.calls.push({ method, op, status, detail, protocol: "v1" });
      if (payload === undefined) {
        res.writeHead(status);
        return void res.end();
      }
      res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
      res.end(JSON.stringify(payload));
    };
    // The service's exception body; @actions/http-client surfaces its `message`.
    const error = (status: number, typeKey: string, message: string, detail?: unknown) =>
      reply(
        status,
        {
          $id: "1",
          innerException: null,
          message,
          typeName: `Microsoft.Azure.DevOps.PipelineCache.WebApi.${typeKey}, Microsoft.Azure.DevOps.PipelineCache.WebApi`,
          typeKey,
          errorCode: 0,
          eventId: 3000,
        },
        detail,
      );

    if (op.includes(" "))
      return error(404, "ResourceNotFoundException", `no route for ${method} ${resource}`);
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      return error(
        401,
        "UnauthorizedRequestException",
        "TF400813: The user '' is not authorized to access this resource.",
      );
    }
    const accept = String(req.headers.accept ?? "");
    const apiVersion = /(?:^|;)\s*api-version=([^;,\s]+)/.exec(accept)?.[1];
    if (!accept.startsWith("application/json") || !apiVersion) {
      return error(
        400,
        "VssVersionNotSpecifiedException",
        `this resource needs an api-version in the Accept header (application/json;api-version=${LEGACY_API_VERSION})`,
      );
    }
    if (apiVersion !== LEGACY_API_VERSION) {
      return error(
        400,
        "VssVersionOutOfRangeException",
        `the requested REST API version ${apiVersion} is not supported; this service speaks ${LEGACY_API_VERSION}`,
      );
    }
    const failing =
      this.fail.service ?? this.fail.twirp ?? (op === "uploadChunk" ? this.fail.blob : undefined);
    if (failing)
      return error(failing, "ArtifactCacheServiceException", "the cache service is failing (test)");

    const json = (): Record<string, unknown> | undefined => {
      try {
        const v = JSON.parse(raw.toString("utf8") || "{}") as unknown;
        return v && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
      } catch {
        return undefined;
      }
    };
    const entryOf = (id: number) => this.entries.find((e) => e.id === id);

    switch (op) {
      case "getCacheEntry": {
        const keys = (query.get("keys") ?? "").split(",").filter((k) => k !== "");
        const version = query.get("version") ?? "";
        const detail = { keys, version };
        if (keys.length === 0 || !version)
          return error(400, "ArgumentException", "keys and version are required", detail);
        const found = this.lookup(keys, version);
        if (!found) return reply(204, undefined, detail);
        return reply(
          200,
          {
            scope: SCOPE,
            cacheKey: found.key,
            cacheVersion: found.version,
            creationTime: found.creationTime,
            archiveLocation: this.signedUrl(found.blob, "r"),
          },
          detail,
        );
      }
      case "listCache": {
        const key = query.get("key") ?? "";
        const listed = this.entries
          .filter((e) => e.finalized && e.key.startsWith(key))
          .sort((a, b) => b.createdAt - a.createdAt)
          .map((e) => ({
            cacheKey: e.key,
            cacheVersion: e.version,
            scope: SCOPE,
            creationTime: e.creationTime,
          }));
        return reply(200, { totalCount: listed.length, artifactCaches: listed }, { key });
      }
      case "reserveCache": {
        const body = json();
        if (!body) return error(400, "ArgumentException", "the request body is not a JSON object");
        const key = typeof body.key === "string" ? body.key : "";
        const version = typeof body.version === "string" ? body.version : "";
        if (!key || !version) return error(400, "ArgumentException", "key and version are required", body);
        if (this.entries.some((e) => e.key === key && e.version === version)) {
          return error(
            409,
            "ArtifactCacheAlreadyExistsException",
            `Cache already exists. Scope: ${SCOPE}, Key: ${key}, Version: ${version}`,
            body,
          );
        }
        return reply(201, { cacheId: this.createEntry(key, version).id }, body);
      }
      case "uploadChunk": {
        const id = Number(idMatch?.[1]);
        const entry = entryOf(id);
        const blob = entry && this.blobs.get(entry.blob);
        const range = /^bytes (\d+)-(\d+)\/(?:\*|\d+)$/.exec(String(req.headers["content-range"] ?? ""));
        const detail = range ? { id, start: Number(range[1]), end: Number(range[2]) } : { id };
        if (!entry || !blob) return error(404, "ArtifactCacheNotFoundException", `no cache ${id}`, detail);
        if (entry.finalized)
          return error(400, "ArtifactCacheAlreadyCommittedException", `cache ${id} is committed`, detail);
        if (!String(req.headers["content-type"] ?? "").startsWith("application/octet-stream")) {
          return error(415, "ArgumentException", "chunks are application/octet-stream", detail);
        }
        if (!range) {
          return error(
            400,
            "ArgumentException",
            `Content-Range must be "bytes start-end/*", not "${String(req.headers["content-range"] ?? "")}"`,
            detail,
          );
        }
        const start = Number(range[1]);
        const end = Number(range[2]);
        if (end < start || raw.length !== end - start + 1) {
          return error(
            400,
            "ArgumentException",
            `Content-Range bytes ${start}-${end} does not match the ${raw.length} bytes sent`,
            detail,
          );
        }
        blob.chunks.set(start, raw);
        return reply(204, undefined, detail);
      }
      case "commitCache": {
        const id = Number(idMatch?.[1]);
        const body = json();
        const entry = entryOf(id);
        const blob = entry && this.blobs.get(entry.blob);
        if (!entry || !blob) return error(404, "ArtifactCacheNotFoundException", `no cache ${id}`, body);
        if (entry.finalized)
          return error(400, "ArtifactCacheAlreadyCommittedException", `cache ${id} is committed`, body);
        if (!body || typeof body.size !== "number")
          return error(400, "ArgumentException", "size is required", body);
        const parts = [...blob.chunks.entries()].sort((a, b) => a[0] - b[0]);
        let offset = 0;
        for (const [start, part] of parts) {
          if (start !== offset) {
            return error(
              400,
              "ArgumentException",
              `the chunks do not cover the archive: ${start < offset ? "overlap" : "gap"} at byte ${Math.min(start, offset)}`,
              body,
            );
          }
          offset += part.length;
        }
        if (offset !== body.size) {
          return error(
            400,
            "ArgumentException",
            `size ${String(body.size)} does not match the ${offset} bytes uploaded`,
            body,
          );
        }
        this.commit(blob, Buffer.concat(parts.map(([, part]) => part)));
        blob.chunks.clear();
        entry.finalized = true;
        entry.sizeBytes = offset;
        return reply(204, undefined, body);
      }
    }
    return error(404, "ResourceNotFoundException", `no route for ${method} ${resource}`);
  }

  // ---------------------------------------------------------------- blobs

  private signedUrl(blob: string, permissions: "r" | "cw"): string {
    const expiry = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d{3}Z$/, "Z");
    const sig = this.sign(blob, permissions, expiry);
    const query = new URLSearchParams({ sv: "2024-11-04", se: expiry, sr: "b", sp: permissions, sig });
    const base =
      this.blobHost === "azure"
        ? `http://${AZURE_HOST}/${CONTAINER}/${blob}`
        : `http://127.0.0.1:${this.port}/devstoreaccount1/${CONTAINER}/${blob}`;
    return `${base}?${query.toString()}`;
  }

  private sign(blob: string, permissions: string, expiry: string): string {
    return createHmac("sha256", this.secret).update(`${blob}\n${permissions}\n${expiry}`).digest("base64");
  }

  private blob(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer): void {
    const method = req.method ?? "";
    const comp = url.searchParams.get("comp");
    const op = `blob:${method}${comp ? ` ${comp}` : ""}`;
    const fail = (status: number, code: string, message: string) => {
      this.calls.push({ method, op, status });
      const xml = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
      res.writeHead(status, {
        "content-type": "application/xml",
        "x-ms-error-code": code,
        "x-ms-request-id": randomBytes(8).toString("hex"),
      });
      res.end(method === "HEAD" ? undefined : xml);
    };
    const name = url.pathname.split("/").pop() ?? "";
    const blob = this.blobs.get(name);
    const sp = url.searchParams.get("sp") ?? "";
    const se = url.searchParams.get("se") ?? "";
    const sig = url.searchParams.get("sig") ?? "";
    if (!blob || sig !== this.sign(name, sp, se)) {
      return fail(403, "AuthenticationFailed", "Server failed to authenticate the request (bad signature).");
    }
    if (Date.parse(se) < Date.now())
      return fail(403, "AuthenticationFailed", "Signed expiry time has passed.");
    const writing = method === "PUT";
    if (writing ? !sp.includes("w") : !sp.includes("r")) {
      return fail(403, "AuthorizationPermissionMismatch", "This request is not authorized by the SAS.");
    }
    if (this.fail.blob) {
      const code =
        this.fail.blob === 403
          ? "AuthenticationFailed"
          : this.fail.blob === 503
            ? "ServerBusy"
            : "InternalError";
      return fail(this.fail.blob, code, "The blob service is failing (test).");
    }

    const headers = (extra: Record<string, string> = {}) => ({
      "x-ms-request-id": randomBytes(8).toString("hex"),
      "x-ms-version": String(req.headers["x-ms-version"] ?? "2024-11-04"),
      "x-ms-client-request-id": String(req.headers["x-ms-client-request-id"] ?? ""),
      date: new Date().toUTCString(),
      ...extra,
    });

    if (method === "PUT") {
      if (comp === "block") {
        const id = url.searchParams.get("blockid");
        if (!id) return fail(400, "InvalidQueryParameterValue", "blockid is required");
        blob.blocks.set(id, body);
        this.calls.push({ method, op, status: 201, detail: { blockid: id, bytes: body.length } });
        res.writeHead(201, headers({ "content-length": "0", "x-ms-request-server-encrypted": "true" }));
        return void res.end();
      }
      if (comp === "blocklist") {
        const ids = [...body.toString("utf8").matchAll(/<(Latest|Committed|Uncommitted)>([^<]*)<\/\1>/g)].map(
          (m) => m[2] ?? "",
        );
        const parts: Buffer[] = [];
        for (const id of ids) {
          const part = blob.blocks.get(id);
          if (!part) return fail(400, "InvalidBlockList", `block ${id} was never staged`);
          parts.push(part);
        }
        this.commit(blob, Buffer.concat(parts));
        this.calls.push({ method, op, status: 201, detail: { blocks: ids.length } });
        res.writeHead(201, headers(this.commitHeaders(blob)));
        return void res.end();
      }
      if (comp) return fail(400, "InvalidQueryParameterValue", `comp=${comp} is not supported here`);
      if (req.headers["x-ms-blob-type"] !== "BlockBlob") {
        return fail(400, "MissingRequiredHeader", "x-ms-blob-type: BlockBlob is required");
      }
      this.commit(blob, body);
      this.calls.push({ method, op, status: 201, detail: { bytes: body.length } });
      res.writeHead(201, headers(this.commitHeaders(blob)));
      return void res.end();
    }

    if (method === "GET" || method === "HEAD") {
      const data = blob.data;
      if (!data) return fail(404, "BlobNotFound", "The specified blob does not exist.");
      const props = {
        "content-type": "application/octet-stream",
        etag: blob.etag ?? "",
        "last-modified": (blob.lastModified ?? new Date()).toUTCString(),
        "accept-ranges": "bytes",
        "x-ms-blob-type": "BlockBlob",
        "x-ms-lease-state": "available",
        "x-ms-lease-status": "unlocked",
        "x-ms-server-encrypted": "true",
      };
      const rangeHeader = String(req.headers["x-ms-range"] ?? req.headers.range ?? "");
      const range = parseRange(rangeHeader, data.length);
      if (range === "invalid") return fail(416, "InvalidRange", "The range specified is invalid.");
      if (method === "HEAD") {
        this.calls.push({ method, op, status: 200 });
        res.writeHead(200, headers({ ...props, "content-length": String(data.length) }));
        return void res.end();
      }
      if (!range) {
        this.calls.push({ method, op, status: 200, detail: { bytes: data.length } });
        res.writeHead(200, headers({ ...props, "content-length": String(data.length) }));
        return void res.end(data);
      }
      const [start, end] = range;
      this.calls.push({ method, op, status: 206, detail: { start, end } });
      res.writeHead(
        206,
        headers({
          ...props,
          "content-length": String(end - start + 1),
          "content-range": `bytes ${start}-${end}/${data.length}`,
        }),
      );
      return void res.end(data.subarray(start, end + 1));
    }
    return fail(405, "UnsupportedHttpVerb", `${method} is not supported`);
  }

  private commit(blob: Blob, data: Buffer): void {
    blob.data = data;
    blob.blocks.clear();
    blob.etag = etagOf(data);
    blob.lastModified = new Date();
  }

  private commitHeaders(blob: Blob): Record<string, string> {
    return {
      etag: blob.etag ?? "",
      "last-modified": (blob.lastModified ?? new Date()).toUTCString(),
      "content-md5": createHash("md5")
        .update(blob.data ?? Buffer.alloc(0))
        .digest("base64"),
      "content-length": "0",
      "x-ms-request-server-encrypted": "true",
    };
  }
}

function etagOf(data: Buffer): string {
  return `"0x${createHash("sha256").update(data).digest("hex").slice(0, 16).toUpperCase()}"`;
}

/** "bytes=a-b" / "bytes=a-" → inclusive [a, b]; undefined when absent; "invalid" when unsatisfiable. */
function parseRange(header: string, size: number): [number, number] | undefined | "invalid" {
  if (!header) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return "invalid";
  const start = Number(m[1]);
  const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  if (start >= size || end < start) return "invalid";
  return [start, end];
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
