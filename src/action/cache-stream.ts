/**
 * Restoring an Actions cache entry as a stream, straight into its consumer
 * (the snapshot store, the tool cache), with no copy of it on disk.
 *
 * Why not @actions/cache: its restoreCache downloads the whole entry to a
 * file, then tar extracts that to another file, and only then could we
 * unpack it; its lookup and download are internal (the package exports
 * restoreCache and saveCache only). So the lookup is spoken here, as
 * @actions/cache 6 speaks it: cache service v2's Twirp
 * GetCacheEntryDownloadURL, the legacy service's `GET _apis/artifactcache/
 * cache`, with the version @actions/cache's saveCache gives an entry of the
 * same paths (cacheVersion; a test holds it to the real getCacheVersion, and
 * the round trips run against saves made by the real saveCache). Saving
 * stays with saveCache. Then the entry's blob is fetched in ranges, a few at
 * a time and handed on in order, through the decompressor, and each of its
 * tar's members (the saved paths) goes to the consumer as it arrives:
 * download, decompression and the consumer's writes overlap instead of
 * following one another.
 *
 * Errors are closed: CACHE_UNAVAILABLE is an outage (network, 5xx, a refused
 * token: @actions/cache would fail too); CACHE_PROTOCOL is an answer this
 * client does not know, for which the caller falls back to restoreCache;
 * SNAPSHOT_ARCHIVE_INVALID-like damage of the entry itself is the consumer's
 * or CACHE_ENTRY_INVALID.
 */
import { createHash } from "node:crypto";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { HttpClient } from "@actions/http-client";
import pRetry from "p-retry";
import tar from "tar-stream";
import { EngineError, run, zstdDecompressStream } from "../engine/index.js";
import { DownloadError, httpGet, shown, statusError, USER_AGENT, type Got } from "./action-download.js";
import { cacheServiceOf } from "./cache-service.js";

/** The compression @actions/cache picks (and names in the version): zstd when it runs, else gzip. */
export type Compression = "zstd-without-long" | "gzip";

/** @actions/cache's version salt (cacheUtils.ts versionSalt). */
const VERSION_SALT = "1.0";

/** The version @actions/cache gives an entry of `paths` on Linux and macOS (getCacheVersion). */
export function cacheVersion(paths: readonly string[], compression: Compression): string {
  return createHash("sha256")
    .update([...paths, compression, VERSION_SALT].join("|"))
    .digest("hex");
}

let compressionFound: Promise<Compression> | undefined;

/**
 * As @actions/cache's getCompressionMethod: `zstd --quiet --version` printing
 * anything means zstd. Asked once per process (the snapshot and the image
 * restores both need it).
 */
export function compressionOnThisRunner(): Promise<Compression> {
  compressionFound ??= run("zstd", ["--quiet", "--version"], { timeoutMs: 15_000 }).then(
    (r) => (r.stdout.trim() ? "zstd-without-long" : "gzip"),
    () => "gzip",
  );
  return compressionFound;
}

export type EntryLookup =
  | { kind: "hit"; key: string; url: string }
  | { kind: "miss" }
  /** ACTIONS_CACHE_MODE forbids reads (as @actions/cache, a restore is skipped). */
  | { kind: "not-readable"; mode: string };

export interface LookupRequest {
  paths: readonly string[];
  primaryKey: string;
  restoreKeys: readonly string[];
  compression: Compression;
}

export interface RetryPolicy {
  /** Attempts after the first (default 2). */
  retries?: number | undefined;
  /** The first wait between attempts (default 1 s; doubled each time). */
  minTimeoutMs?: number | undefined;
}

const TWIRP_SERVICE = "github.actions.results.api.v1.CacheService";
const LEGACY_ACCEPT = "application/json;api-version=6.0-preview.1";
/** Cache modes as the runner exports them (@actions/cache config.ts): only these can forbid a read. */
const CACHE_MODES = new Set(["none", "read", "write", "write-only"]);

/** Find the entry `req` names, newest first among prefix matches (the service decides). */
export async function lookupEntry(
  req: LookupRequest,
  env: NodeJS.ProcessEnv,
  retry: RetryPolicy = {},
): Promise<EntryLookup> {
  const mode = (env.ACTIONS_CACHE_MODE ?? "").trim().toLowerCase();
  if (CACHE_MODES.has(mode) && mode !== "read" && mode !== "write") return { kind: "not-readable", mode };
  const service = cacheServiceOf(env);
  if (!service || !env.ACTIONS_RUNTIME_TOKEN) {
    throw unavailable("the Actions cache service is not configured for this step", undefined);
  }
  const token = env.ACTIONS_RUNTIME_TOKEN;
  const version = cacheVersion(req.paths, req.compression);
  const attempt = () =>
    service.protocol === "v2"
      ? lookupV2(service.url, token, req, version)
      : lookupV1(service.url, token, req, version);
  return pRetry(attempt, {
    retries: retry.retries ?? 2,
    minTimeout: retry.minTimeoutMs ?? 1000,
    factor: 2,
    shouldRetry: ({ error }) => error instanceof CacheError && error.retryable,
  });
}

/** A cache service call that failed: CACHE_UNAVAILABLE (an outage) or CACHE_PROTOCOL (an answer not understood). */
export class CacheError extends EngineError {
  constructor(
    code: "CACHE_UNAVAILABLE" | "CACHE_PROTOCOL",
    message: string,
    readonly retryable: boolean,
    cause?: unknown,
  ) {
    super(code, message, {
      hint:
        code === "CACHE_UNAVAILABLE"
          ? "the Actions cache service is failing or unreachable: the job goes on without the cache"
          : "the cache service answered in a way this Action does not know: the restore falls back to @actions/cache",
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

const unavailable = (message: string, cause: unknown, retryable = false) =>
  new CacheError("CACHE_UNAVAILABLE", message, retryable, cause);
const protocol = (message: string, cause?: unknown) =>
  new CacheError("CACHE_PROTOCOL", message, false, cause);

/** A status that is the service failing (or refusing the token), not this client speaking it wrong. */
const isOutageStatus = (s: number) => s >= 500 || s === 401 || s === 403 || s === 408 || s === 429;
// As @actions/cache: a 5xx is retried, a rate limit (429) is not.
const isRetryableStatus = (s: number) => s >= 500 || s === 408;

async function call(
  method: "GET" | "POST",
  url: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; text: string }> {
  const client = new HttpClient(USER_AGENT, [], {
    allowRetries: false,
    keepAlive: false,
    socketTimeout: 30_000,
  });
  try {
    const r =
      method === "POST" ? await client.post(url, body ?? "", headers) : await client.get(url, headers);
    return { status: r.message.statusCode ?? 0, text: await r.readBody() };
  } catch (err) {
    throw unavailable(
      `could not reach the cache service at ${shown(url)}: ${(err as Error).message}`,
      err,
      true,
    );
  }
}

function parseJson(text: string, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* below */
  }
  throw protocol(`${what} answered with something that is not a JSON object`);
}

function statusFailure(status: number, text: string, what: string): CacheError {
  let detail = "";
  try {
    const v = JSON.parse(text) as { msg?: unknown; message?: unknown };
    const m = v.msg ?? v.message;
    if (typeof m === "string") detail = `: ${m}`;
  } catch {
    /* no detail */
  }
  const message = `${what} answered ${status}${detail}`;
  return isOutageStatus(status)
    ? unavailable(message, undefined, isRetryableStatus(status))
    : protocol(message);
}

async function lookupV2(
  base: string,
  token: string,
  req: LookupRequest,
  version: string,
): Promise<EntryLookup> {
  const url = new URL(`/twirp/${TWIRP_SERVICE}/GetCacheEntryDownloadURL`, base).href;
  const what = "the cache service (GetCacheEntryDownloadURL)";
  // Proto field names, defaults left out: the JSON @actions/cache's Twirp client sends.
  const body: Record<string, unknown> = { key: req.primaryKey, version };
  if (req.restoreKeys.length > 0) body.restore_keys = [...req.restoreKeys];
  const r = await call(
    "POST",
    url,
    { "content-type": "application/json", authorization: `Bearer ${token}` },
    JSON.stringify(body),
  );
  if (r.status < 200 || r.status >= 300) throw statusFailure(r.status, r.text, what);
  const v = parseJson(r.text, what);
  if (v.ok !== true) return { kind: "miss" };
  const key = v.matched_key ?? v.matchedKey;
  const signed = v.signed_download_url ?? v.signedDownloadUrl;
  if (typeof key !== "string" || !key || typeof signed !== "string" || !signed)
    throw protocol(`${what} found an entry but named no key or download URL`);
  return { kind: "hit", key, url: signed };
}

async function lookupV1(
  base: string,
  token: string,
  req: LookupRequest,
  version: string,
): Promise<EntryLookup> {
  const keys = encodeURIComponent([req.primaryKey, ...req.restoreKeys].join(","));
  const url = `${base}_apis/artifactcache/cache?keys=${keys}&version=${version}`;
  const what = "the cache service (artifactcache lookup)";
  const r = await call("GET", url, { accept: LEGACY_ACCEPT, authorization: `Bearer ${token}` });
  if (r.status === 204) return { kind: "miss" };
  if (r.status < 200 || r.status >= 300) throw statusFailure(r.status, r.text, what);
  const v = parseJson(r.text, what);
  const key = v.cacheKey;
  const location = v.archiveLocation;
  if (typeof key !== "string" || !key || typeof location !== "string" || !location)
    throw protocol(`${what} found an entry but named no cacheKey or archiveLocation`);
  return { kind: "hit", key, url: location };
}

export interface RangeOptions {
  /** Bytes per ranged request (default 8 MiB). */
  chunkBytes?: number | undefined;
  /** Requests in flight (default 4): what a blob store needs to fill a runner's link. */
  concurrency?: number | undefined;
  /** Attempts after the first, per range (default 2). */
  retries?: number | undefined;
  minTimeoutMs?: number | undefined;
}

/**
 * The blob at `url` (a signed URL: no token), in order. Ranges of
 * `chunkBytes` are fetched `concurrency` at a time, each retried on its own;
 * a server that ignores Range sends the whole blob, which is streamed as is.
 * A response that stalls is given up by the HTTP client's socket timeout
 * (action-download.ts IDLE_TIMEOUT_MS), then retried.
 */
export async function* blobRanges(url: string, opts: RangeOptions = {}): AsyncGenerator<Buffer> {
  const chunk = opts.chunkBytes ?? 8 << 20;
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const retry = { retries: opts.retries ?? 2, minTimeout: opts.minTimeoutMs ?? 1000, factor: 2 };
  const what = "the cache entry";
  const first = await pRetry(() => httpGet(url, { what, headers: { range: `bytes=0-${chunk - 1}` } }), {
    ...retry,
    shouldRetry: ({ error }) => error instanceof DownloadError && error.retryable,
  });
  if (first.status === 200) {
    // No ranges here: the whole blob in one response.
    yield* body(first);
    return;
  }
  if (first.status === 416) {
    first.res.resume();
    return; // an empty blob has no byte 0
  }
  if (first.status !== 206) throw blobStatus(first);
  const total = totalOf(first);
  const ranges: Array<[number, number]> = [];
  for (let start = 0; start < total; start += chunk) ranges.push([start, Math.min(total, start + chunk) - 1]);
  const fetchRange = (i: number): Promise<Buffer> => {
    const [start, end] = ranges[i]!;
    const once = async (): Promise<Buffer> => {
      const got = await httpGet(url, { what, headers: { range: `bytes=${start}-${end}` } });
      if (got.status !== 206) throw blobStatus(got);
      return collect(got, end - start + 1);
    };
    const again = () =>
      pRetry(once, {
        ...retry,
        shouldRetry: ({ error }) => error instanceof DownloadError && error.retryable,
      });
    // The first range's response is already here; should its body break off, it is asked for again.
    return i === 0
      ? collect(first, end + 1).catch((err: unknown) => {
          if (err instanceof DownloadError && err.retryable && retry.retries > 0) return again();
          throw err;
        })
      : again();
  };
  const inFlight: Array<Promise<Buffer>> = [];
  let next = 0;
  const fill = () => {
    while (next < ranges.length && inFlight.length < concurrency) {
      const p = fetchRange(next++);
      p.catch(() => undefined); // awaited in order below; not unhandled meanwhile
      inFlight.push(p);
    }
  };
  fill();
  while (inFlight.length > 0) {
    const data = await inFlight.shift()!;
    fill();
    yield data;
  }
}

const blobStatus = (got: Got): DownloadError =>
  statusError(got, "the cache entry", "the entry's storage is failing: the job goes on without the cache");

function totalOf(got: Got): number {
  const m = /^bytes \d+-\d+\/(\d+)$/.exec(String(got.res.headers["content-range"] ?? ""));
  if (!m) {
    got.res.resume();
    throw new DownloadError(`${shown(got.url)} sent a range without its total size`, {
      hint: "the entry's storage answered an unexpected Content-Range",
      retryable: false,
    });
  }
  return Number(m[1]);
}

async function* body(got: Got): AsyncGenerator<Buffer> {
  try {
    for await (const piece of got.res as AsyncIterable<Buffer>) yield piece;
  } catch (err) {
    throw broke(got, err);
  }
  if (!got.res.complete) throw broke(got, new Error("the response ended early"));
}

async function collect(got: Got, expected: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  let n = 0;
  for await (const piece of body(got)) {
    pieces.push(piece);
    n += piece.length;
  }
  if (n !== expected) {
    throw new DownloadError(`${shown(got.url)} sent ${n} bytes of a ${expected}-byte range`, {
      hint: "retry; check the network",
      retryable: true,
    });
  }
  return Buffer.concat(pieces, n);
}

const broke = (got: Got, err: unknown) =>
  new DownloadError(`${shown(got.url)} broke off the cache entry: ${(err as Error).message}`, {
    hint: "retry; check the network",
    retryable: true,
    cause: err,
  });

export interface StreamedEntry {
  url: string;
  /** The tar's members, each to be handed on once: the paths given to saveCache. */
  members: readonly string[];
  compression: Compression;
  ranges?: RangeOptions | undefined;
}

/** Takes one member's bytes as they arrive; it is done with them when it resolves. */
export type MemberConsumer = (member: string, data: AsyncIterable<Buffer>) => Promise<void>;

/**
 * Fetch, decompress and untar the entry at `entry.url`, handing each member
 * to `consume` as it arrives, in the tar's order. Resolves once every member
 * came, each once; rejects with the first cause: the download's
 * DownloadError (an outage), CACHE_ENTRY_INVALID (a member missing,
 * repeated or unknown, or bytes the decompressor refuses), or `consume`'s
 * own error. Everything is torn down on the way out.
 */
export async function streamEntry(entry: StreamedEntry, consume: MemberConsumer): Promise<void> {
  const source = Readable.from(blobRanges(entry.url, entry.ranges), { objectMode: false });
  const dec = decompressor(entry.compression);
  const extract = tar.extract();
  let downloadError: unknown;
  const fed = pipeline(source, dec.stdin).catch((err: unknown) => {
    if (err instanceof DownloadError) downloadError ??= err;
    dec.stop();
    extract.destroy();
  });
  // tar-stream reads the decompressed bytes; a decompressor error surfaces as its own, below.
  const untarred = pipeline(dec.stdout, extract as unknown as Writable).catch(() => undefined);
  const seen = new Set<string>();
  const expected = entry.members.join(", ");
  let failure: unknown;
  let memberError: EngineError | undefined;
  // Whether the decompressor was cut off by us: its complaints (a broken pipe) are then our doing.
  let cutOff = false;
  try {
    for await (const e of extract) {
      const name = e.header.name.replace(/^\.\//, "");
      if (seen.has(name) || !entry.members.includes(name) || e.header.type !== "file") {
        memberError = invalidEntry(
          `it holds ${JSON.stringify(e.header.name)} (${e.header.type})${seen.has(name) ? " twice" : ""}; ${expected} expected`,
        );
        throw memberError;
      }
      seen.add(name);
      await consume(name, e as AsyncIterable<Buffer>);
    }
  } catch (err) {
    failure = err;
  } finally {
    if (failure !== undefined) {
      cutOff = !dec.stdout.readableEnded;
      source.destroy();
      dec.stop();
      extract.destroy();
    }
  }
  await fed;
  await untarred;
  const decoded = await dec.done;
  // The first cause wins: a download that failed, then what we found wrong ourselves,
  // then the decompressor's own complaint, then the tar's or the consumer's error.
  if (downloadError !== undefined) throw downloadError;
  if (memberError) throw memberError;
  if (decoded.complained && !cutOff)
    throw invalidEntry(`${entry.compression === "gzip" ? "gunzip" : "zstd"}: ${decoded.message}`);
  if (failure !== undefined) {
    if (failure instanceof EngineError) throw failure;
    throw invalidEntry(`its tar cannot be read: ${(failure as Error).message}`, failure);
  }
  const missing = entry.members.filter((m) => !seen.has(m));
  if (missing.length > 0) throw invalidEntry(`it holds no ${missing.join(", ")}`);
}

function invalidEntry(detail: string, cause?: unknown): EngineError {
  return new EngineError("CACHE_ENTRY_INVALID", `the cache entry cannot be used: ${detail}`, {
    hint: "the entry is damaged or was not saved by this Action: it is ignored, and the next save replaces it",
    ...(cause === undefined ? {} : { cause }),
  });
}

interface Decompressor {
  stdin: Writable;
  stdout: Readable;
  stop(): void;
  done: Promise<{ complained: boolean; message: string }>;
}

function decompressor(compression: Compression): Decompressor {
  if (compression === "zstd-without-long") return zstdDecompressStream();
  const gunzip = createGunzip();
  const done = new Promise<{ complained: boolean; message: string }>((resolve) => {
    gunzip.on("error", (err) => resolve({ complained: true, message: err.message }));
    gunzip.on("end", () => resolve({ complained: false, message: "" }));
    gunzip.on("close", () => resolve({ complained: false, message: "" }));
  });
  return { stdin: gunzip, stdout: gunzip, stop: () => gunzip.destroy(), done };
}

export type StreamLookup =
  | { kind: "miss" }
  | { kind: "not-readable"; mode: string }
  | {
      kind: "hit";
      key: string;
      /** Stream the entry's members into `consume` (streamEntry). */
      stream(consume: MemberConsumer): Promise<void>;
    };

/**
 * The lookup restoreCache(paths, primaryKey, restoreKeys) would make, for an
 * entry saved by saveCache(paths): on a hit, its members (the paths) streamed.
 */
export async function lookupStreamed(
  paths: readonly string[],
  primaryKey: string,
  restoreKeys: readonly string[],
  env: NodeJS.ProcessEnv,
  opts: { retry?: RetryPolicy; ranges?: RangeOptions } = {},
): Promise<StreamLookup> {
  if (paths.length === 0) throw new Error("a streamed restore needs the entry's paths");
  const compression = await compressionOnThisRunner();
  const found = await lookupEntry({ paths, primaryKey, restoreKeys, compression }, env, opts.retry);
  if (found.kind !== "hit") return found;
  return {
    kind: "hit",
    key: found.key,
    stream: (consume) =>
      streamEntry({ url: found.url, members: paths, compression, ranges: opts.ranges }, consume),
  };
}
