/**
 * A local stand-in for the GitHub Actions cache service, faithful to what the
 * real `@actions/cache` (v6, cache service v2) speaks:
 *
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
 * Entries are immutable per (key, version): a second CreateCacheEntry for a
 * key that exists (or is being uploaded) is refused, as the real service does.
 * Lookup: the primary key exactly, then each restore key as a prefix (newest
 * first); the version must match.
 *
 * Blob URLs are on 127.0.0.1 by default. With `blobHost: "azure"` they name a
 * `*.blob.core.windows.net` host, which makes `@actions/cache` download with
 * the Azure SDK (HEAD + parallel ranged GETs) as on a real runner; the client
 * then needs HTTP_PROXY pointing at this server (see `clientEnv`), which
 * serves proxied (absolute-form) requests for that host.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

const SERVICE = "/twirp/github.actions.results.api.v1.CacheService/";
const AZURE_HOST = "hexclavecache.blob.core.windows.net";
const CONTAINER = "actions-cache";

export interface CacheEntry {
  id: number;
  key: string;
  version: string;
  blob: string;
  finalized: boolean;
  sizeBytes?: number;
  createdAt: number;
}

interface Blob {
  /** Uncommitted blocks by block id (base64). */
  blocks: Map<string, Buffer>;
  data?: Buffer;
  etag?: string;
  lastModified?: Date;
}

export interface RecordedCall {
  method: string;
  /** "CreateCacheEntry", …, or "blob:PUT", "blob:PUT block", "blob:PUT blocklist", "blob:GET", "blob:HEAD". */
  op: string;
  status: number;
  /** The Twirp request body, or the blob range asked for. */
  detail?: unknown;
}

export interface CacheServerOptions {
  /** Where signed blob URLs point (see the file comment). Default "loopback". */
  blobHost?: "loopback" | "azure";
  /** The runtime token clients must send. */
  token?: string;
}

export interface FailureMode {
  /** Answer every Twirp call with this HTTP status (a Twirp "internal" error). */
  twirp?: number;
  /** Answer every blob request with this HTTP status. */
  blob?: number;
}

export class ActionsCacheServer {
  readonly entries: CacheEntry[] = [];
  readonly calls: RecordedCall[] = [];
  /** Set to make the service fail; clear to heal it. */
  fail: FailureMode = {};
  readonly token: string;
  private readonly blobs = new Map<string, Blob>();
  private readonly secret = randomBytes(16);
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
    return s;
  }

  /** ACTIONS_RESULTS_URL: where the Twirp service is. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  /** The environment a runner gives a step so `@actions/cache` talks to this service. */
  clientEnv(): Record<string, string> {
    const env: Record<string, string> = {
      ACTIONS_CACHE_SERVICE_V2: "true",
      ACTIONS_RESULTS_URL: this.url,
      ACTIONS_RUNTIME_TOKEN: this.token,
    };
    if (this.blobHost === "azure") {
      env.HTTP_PROXY = `http://127.0.0.1:${this.port}`;
      env.http_proxy = env.HTTP_PROXY;
    }
    return env;
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
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- dispatch

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A proxied request names the absolute URL; a direct one only the path.
    const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "127.0.0.1"}`);
    const body = await readBody(req);
    if (url.pathname.startsWith(SERVICE))
      return this.twirp(req, res, url.pathname.slice(SERVICE.length), body);
    if (url.pathname.includes(`/${CONTAINER}/`)) return this.blob(req, res, url, body);
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
  }

  // ---------------------------------------------------------------- Twirp

  private twirp(req: IncomingMessage, res: ServerResponse, method: string, raw: Buffer): void {
    const reply = (status: number, payload: unknown, detail?: unknown) => {
      this.calls.push({ method: req.method ?? "", op: method, status, detail });
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
    if (this.fail.twirp)
      return error(this.fail.twirp, "internal", "the cache service is failing (test)", body);
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
        const entry: CacheEntry = {
          id: this.nextId++,
          key,
          version,
          blob: randomBytes(12).toString("hex"),
          finalized: false,
          createdAt: ++this.clock,
        };
        this.entries.push(entry);
        this.blobs.set(entry.blob, { blocks: new Map() });
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
        const found = this.lookup(key, restoreKeys, version);
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

  private lookup(key: string, restoreKeys: string[], version: string): CacheEntry | undefined {
    const ready = this.entries.filter((e) => e.finalized && e.version === version);
    const exact = ready.find((e) => e.key === key);
    if (exact) return exact;
    for (const prefix of restoreKeys) {
      const matches = ready.filter((e) => e.key.startsWith(prefix)).sort((a, b) => b.createdAt - a.createdAt);
      if (matches[0]) return matches[0];
    }
    return undefined;
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
    if (this.fail.blob) return fail(this.fail.blob, "InternalError", "The blob service is failing (test).");

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
