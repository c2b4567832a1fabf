/**
 * HTTP for the image download, through @actions/http-client (the client
 * tc.downloadTool uses), so the runner's proxy settings apply as they do to
 * every toolkit download: https_proxy / http_proxy (or upper case), and
 * no_proxy.
 *
 * A token goes only where it belongs: a request carries it only when its
 * origin is one the caller allows (this workflow's GitHub server and its
 * API), and never past a redirect to another origin. Redirects are followed
 * here, hop by hop, so that rule is this file's and not the library's
 * (release assets redirect to signed URLs on another host, which must not
 * see the token). Errors and logs name URLs without their query string (a
 * signed URL's signature is a credential too), and never a header.
 */
import { createHash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { pipeline } from "node:stream/promises";
import { HttpClient } from "@actions/http-client";
import { z } from "zod";
import { EngineError } from "../engine/index.js";

export const USER_AGENT = "hexclave-emulator-action";

/** Hops followed before giving up (GitHub's release downloads take one or two). */
const MAX_REDIRECTS = 10;
/** A response that sends nothing for this long is given up on (then retried). */
export const IDLE_TIMEOUT_MS = 120_000;

/** A token, and the origins (scheme://host[:port]) it may be sent to. */
export interface Auth {
  token: string;
  origins: ReadonlySet<string>;
}

/** This workflow's GitHub: GITHUB_SERVER_URL and GITHUB_API_URL, github.com's by default. */
export interface GitHubServer {
  /** e.g. https://github.com, or a GitHub Enterprise Server's URL. */
  serverUrl: string;
  /** e.g. https://api.github.com, or <server>/api/v3. */
  apiUrl: string;
}

export function githubServerOf(env: NodeJS.ProcessEnv): GitHubServer {
  const serverUrl = (env.GITHUB_SERVER_URL || "https://github.com").replace(/\/+$/, "");
  const dotcom = hostnameOf(serverUrl) === "github.com";
  const apiUrl = (env.GITHUB_API_URL || (dotcom ? "https://api.github.com" : `${serverUrl}/api/v3`)).replace(
    /\/+$/,
    "",
  );
  return { serverUrl, apiUrl };
}

/** The origins a token for this server may go to: the server and its API, nothing else. */
export function authFor(token: string, gh: GitHubServer): Auth {
  return { token, origins: new Set([originOf(gh.serverUrl), originOf(gh.apiUrl)]) };
}

export function originOf(url: string): string {
  return new URL(url).origin;
}

function hostnameOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return "";
  }
}

/** A URL as errors and logs show it: no query string, no fragment, no user:password. */
export function shown(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return "<an invalid URL>";
  }
}

/** A failed request: DOWNLOAD_FAILED, and whether trying again could help. */
export class DownloadError extends EngineError {
  readonly retryable: boolean;
  readonly status: number | undefined;
  constructor(
    message: string,
    options: { hint: string; retryable: boolean; status?: number | undefined; cause?: unknown },
  ) {
    super("DOWNLOAD_FAILED", message, {
      hint: options.hint,
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
    this.retryable = options.retryable;
    this.status = options.status;
  }
}

export interface GetOptions {
  accept?: string | undefined;
  /** Sent as `Authorization: Bearer` to the allowed origins only, and to no hop after a move to another origin. */
  auth?: Auth | undefined;
  /** What the request is for, in an error ("the image", "the checksum"). */
  what: string;
  /** Extra headers (never the token: that is auth's). */
  headers?: Record<string, string> | undefined;
}

export interface Got {
  res: IncomingMessage;
  /** The URL that answered (after redirects). */
  url: string;
  status: number;
}

/**
 * GET, following redirects by hand. Resolves with the final response
 * whatever its status (the caller reads or drains its body); rejects
 * (DownloadError) when the server cannot be reached or redirects badly.
 */
export async function httpGet(url: string, opts: GetOptions): Promise<Got> {
  let current = new URL(url);
  let auth = opts.auth;
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.accept) headers["accept"] = opts.accept;
    if (auth && auth.origins.has(current.origin)) headers["authorization"] = `Bearer ${auth.token}`;
    // One client per hop: the library caches one agent per client, whatever the scheme or proxy.
    const client = new HttpClient(USER_AGENT, [], {
      allowRedirects: false,
      allowRetries: false,
      keepAlive: false,
      socketTimeout: IDLE_TIMEOUT_MS,
    });
    let r;
    try {
      r = await client.get(current.href, headers);
    } catch (err) {
      throw new DownloadError(
        `could not reach ${shown(current.href)} for ${opts.what}: ${(err as Error).message}`,
        {
          hint: "check the network (and https_proxy / no_proxy on a runner behind a proxy)",
          retryable: true,
          cause: err,
        },
      );
    }
    const status = r.message.statusCode ?? 0;
    const location = r.message.headers.location;
    if (![301, 302, 303, 307, 308].includes(status) || !location) {
      return { res: r.message, url: current.href, status };
    }
    r.message.resume();
    if (hop >= MAX_REDIRECTS) {
      throw new DownloadError(`${shown(url)} redirected more than ${MAX_REDIRECTS} times for ${opts.what}`, {
        hint: "check the image input's URL",
        retryable: false,
      });
    }
    let next: URL;
    try {
      next = new URL(location, current);
    } catch (err) {
      throw new DownloadError(`${shown(current.href)} redirected ${opts.what} to an invalid URL`, {
        hint: "check the image input's URL",
        retryable: false,
        cause: err,
      });
    }
    if (current.protocol === "https:" && next.protocol !== "https:") {
      throw new DownloadError(
        `${shown(current.href)} redirected ${opts.what} from https to ${shown(next.href)}: refused`,
        { hint: "use a URL whose redirects stay on https", retryable: false },
      );
    }
    // Once the request has left for another origin, the token stays behind for good.
    if (next.origin !== current.origin) auth = undefined;
    current = next;
  }
}

/** An error for a response that is not the 200 asked for. */
export function statusError(got: Got, what: string, hint: string): DownloadError {
  got.res.resume();
  const s = got.status;
  return new DownloadError(`${shown(got.url)} answered ${s} for ${what}`, {
    hint,
    status: s,
    retryable: s >= 500 || s === 408 || s === 429,
  });
}

/** A small body (a checksum, a JSON document), as text; more than `limit` bytes is refused. */
export async function readText(got: Got, what: string, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of got.res as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) {
        got.res.destroy();
        throw new DownloadError(`${shown(got.url)} sent more than ${limit} bytes for ${what}`, {
          hint: "check the URL: this is not what it should be",
          retryable: false,
        });
      }
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof DownloadError) throw err;
    throw new DownloadError(`${shown(got.url)} broke off ${what}: ${(err as Error).message}`, {
      hint: "retry; check the network",
      retryable: true,
      cause: err,
    });
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Writes a response's body to a new file (created here, mode 0644, refused
 * if it exists), hashing it as it is written; fsynced before it resolves.
 * A body cut short (the connection dropped, fewer bytes than Content-Length,
 * nothing for IDLE_TIMEOUT_MS) rejects; the caller removes the file.
 */
export async function writeHashed(
  got: Got,
  file: string,
  what: string,
  idleTimeoutMs = IDLE_TIMEOUT_MS,
): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash("sha256");
  let bytes = 0;
  let idle: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(
      () => got.res.destroy(new Error(`nothing was received for ${Math.round(idleTimeoutMs / 1000)} s`)),
      idleTimeoutMs,
    );
  };
  const declared = Number(got.res.headers["content-length"] ?? NaN);
  let fh: FileHandle;
  try {
    fh = await open(file, "wx", 0o644);
  } catch (err) {
    got.res.destroy();
    throw err;
  }
  try {
    await fh.chmod(0o644); // whatever the umask: images are not secret
    arm();
    try {
      // Each chunk is hashed and written before the next is read: when this
      // rejects, no write is still in flight on the file.
      await pipeline(got.res, async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          arm();
          hash.update(chunk);
          await fh.write(chunk);
          bytes += chunk.length;
        }
      });
    } catch (err) {
      throw new DownloadError(
        `${shown(got.url)} broke off ${what} after ${bytes} bytes: ${(err as Error).message}`,
        { hint: "retry; check the network", retryable: true, cause: err },
      );
    }
    if (Number.isFinite(declared) && bytes !== declared) {
      throw new DownloadError(`${shown(got.url)} sent ${bytes} of the ${declared} bytes of ${what}`, {
        hint: "retry; check the network",
        retryable: true,
      });
    }
    await fh.sync();
  } finally {
    clearTimeout(idle);
    got.res.destroy();
    await fh.close();
  }
  return { sha256: hash.digest("hex"), bytes };
}

const ReleaseSchema = z.object({
  assets: z.array(z.object({ name: z.string(), url: z.string().url() })),
});
export type ReleaseAsset = z.infer<typeof ReleaseSchema>["assets"][number];

/** A release, as the GitHub API names it: GET {api}/repos/{owner}/{repo}/releases/tags/{tag}. */
export interface ReleaseRef {
  apiUrl: string;
  owner: string;
  repo: string;
  tag: string;
}

const API_HEADERS = { "x-github-api-version": "2022-11-28" };

/** The release's assets, from the API with the token (a private repository's release included). */
export async function releaseAssets(ref: ReleaseRef, auth: Auth): Promise<ReleaseAsset[]> {
  const url = `${ref.apiUrl}/repos/${ref.owner}/${ref.repo}/releases/tags/${encodeURIComponent(ref.tag)}`;
  const what = `release ${ref.tag} of ${ref.owner}/${ref.repo}`;
  const got = await httpGet(url, {
    accept: "application/vnd.github+json",
    auth,
    what,
    headers: API_HEADERS,
  });
  if (got.status === 404) {
    got.res.resume();
    throw new DownloadError(`${what} was not found (${shown(url)} answered 404)`, {
      hint:
        `check the tag, and that the token input can read ${ref.owner}/${ref.repo} (contents: read); ` +
        "an empty token input downloads the public release asset instead",
      status: 404,
      retryable: false,
    });
  }
  if (got.status === 401) {
    throw statusError(
      got,
      what,
      "the token input was refused: check it, or set it empty for a public release",
    );
  }
  if (got.status !== 200) {
    throw statusError(got, what, "retry later (403 or 429: the API's rate limit)");
  }
  const text = await readText(got, what, 16 * 1024 * 1024);
  let parsed;
  try {
    parsed = ReleaseSchema.safeParse(JSON.parse(text));
  } catch {
    parsed = undefined;
  }
  if (!parsed?.success) {
    throw new DownloadError(`${shown(url)} did not answer with a release for ${what}`, {
      hint: "check GITHUB_API_URL",
      retryable: false,
    });
  }
  return parsed.data.assets;
}

/** GET a release asset's content through the API (`Accept: application/octet-stream`). */
export function getAsset(asset: ReleaseAsset, auth: Auth, what: string): Promise<Got> {
  return httpGet(asset.url, { accept: "application/octet-stream", auth, what, headers: API_HEADERS });
}

/** The sha256 in a sha256sum-format body (`<hex>  <name>`), or undefined. */
export function checksumIn(text: string): string | undefined {
  return /^([0-9a-fA-F]{64})\b/.exec(text.trim())?.[1]?.toLowerCase();
}
