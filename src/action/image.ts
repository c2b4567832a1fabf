/**
 * The base image: a path on the runner, or a download (a URL, or a release
 * tag) kept in the runner's tool cache (RUNNER_TOOL_CACHE, which persists on
 * self-hosted runners).
 *
 * A download is checked against the `image-sha256` input, else the published
 * `<url>.sha256`; a mismatch fails the step and nothing is cached. A release
 * tag fails closed: without a published `.sha256` (and no image-sha256) the
 * step fails. A plain URL without one is downloaded unverified, with a
 * warning.
 *
 * A release tag with the `token` input, for a release on this workflow's
 * GitHub (GITHUB_SERVER_URL), is downloaded through the API (the release by
 * tag, then its assets with `Accept: application/octet-stream`), which also
 * works for a private repository; the token goes to that server and its API
 * only (see action-download.ts). Without a token it is the public release
 * asset URL.
 *
 * The download goes straight into the tool cache, in @actions/tool-cache's
 * layout (<root>/<tool>/<version>/<arch>/<file>, trusted once
 * <root>/<tool>/<version>/<arch>.complete exists): the body is written to a
 * temporary file in the tool cache's root (hidden, unique per process,
 * never part of an entry) and hashed as it is written; only a verified file
 * is renamed into its entry, then the marker written. So there is one copy
 * of the image on disk, it is read once (from the network), and a failed or
 * interrupted download leaves no entry a later job would trust. Beside the
 * image, `<file>.digest.json` records its sha256 with the file's identity,
 * so a later job gets the digest without hashing GiBs again.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { DEFAULT_RELEASE_BASE, EngineError, releaseAssetUrl, type Arch } from "../engine/index.js";
import {
  DownloadError,
  IDLE_TIMEOUT_MS,
  authFor,
  checksumIn,
  getAsset,
  githubServerOf,
  httpGet,
  originOf,
  readText,
  releaseAssets,
  shown,
  statusError,
  writeHashed,
  type Auth,
  type Got,
  type ReleaseRef,
} from "./action-download.js";
import type { ImageSpec } from "./inputs.js";

export const IMAGE_TOOL = "hexclave-emulator-image";

export interface ImageChoice {
  path: string;
  source: "path" | "default" | "tool-cache" | "actions-cache" | "download";
  message: string;
  /**
   * The sha256 of the image's content, when known without reading it: the
   * digest computed while it was downloaded (and checked, when a checksum
   * was published or given), or the one recorded beside a tool-cache entry
   * whose file is unchanged since. Undefined for a path input.
   */
  sha256?: string | undefined;
  /** The sha256 was checked against image-sha256 or a published checksum (a download, or an Actions cache entry keyed by it). */
  verified?: boolean | undefined;
}

export interface ImageOptions {
  arch: Arch;
  /** The engine's default image path (under its image directory). */
  defaultPath: string;
  /** A path input, already resolved against the workspace. */
  resolvedPath?: string | undefined;
  expectedSha256?: string | undefined;
  log(message: string): void;
  warn?(message: string): void;
  /** Where release tags are downloaded from (default: the project's GitHub releases). */
  releaseBase?: string | undefined;
  /**
   * The token input. Used for a release tag on this workflow's GitHub only
   * (the release base's server is GITHUB_SERVER_URL's): the download then
   * goes through the API, and the token is sent to that server and its API
   * only, never past a redirect to another host.
   */
  token?: string | undefined;
  /** The tool cache's root (default RUNNER_TOOL_CACHE, else <RUNNER_TEMP>/tool-cache, as runnerDirs). */
  toolCacheDir?: string | undefined;
  /**
   * GITHUB_SERVER_URL, GITHUB_API_URL, RUNNER_TOOL_CACHE, RUNNER_TEMP
   * (default process.env). Proxy settings (https_proxy, no_proxy) are read
   * from process.env by @actions/http-client.
   */
  env?: NodeJS.ProcessEnv | undefined;
  /** Tries at the image's download, for network errors and 5xx/408/429 (default 3, as tc.downloadTool). */
  attempts?: number | undefined;
  /** The wait before another try (default 10 s). */
  retryDelayMs?: number | undefined;
  /**
   * Fetches a verified image by its sha256 from elsewhere (the Actions cache)
   * into `into`, a new file in the tool cache's file system; true when it did.
   * Asked once the expected digest is known and the tool cache missed, before
   * any download. What it brings becomes the tool-cache entry, as a download would.
   */
  restore?: ((sha256: string, into: string) => Promise<boolean>) | undefined;
}

/**
 * Where the image is, or will be: `ready` when it is on disk (a path, the
 * tool cache) or was fetched without a checksum; `pending` when its verified
 * digest and its tool-cache path are known but its bytes still have to come
 * (the Actions cache, else a download): `fetch()` brings them, and the
 * caller may meanwhile work from the digest (the Action restores the
 * snapshot, whose key names it, at the same time).
 */
export type LocatedImage =
  | { kind: "ready"; choice: ImageChoice }
  | { kind: "pending"; sha256: string; path: string; fetch(): Promise<ImageChoice> };

export async function resolveImage(spec: ImageSpec, opts: ImageOptions): Promise<ImageChoice> {
  const located = await locateImage(spec, opts);
  return located.kind === "ready" ? located.choice : located.fetch();
}

export async function locateImage(spec: ImageSpec, opts: ImageOptions): Promise<LocatedImage> {
  const ready = (choice: ImageChoice): LocatedImage => ({ kind: "ready", choice });
  switch (spec.kind) {
    case "default":
      if (!existsSync(opts.defaultPath)) {
        throw new EngineError(
          "IMAGE_NOT_FOUND",
          `no image input, and there is no image at ${opts.defaultPath}`,
          {
            hint: "set the image input: a path to stack-emulator-<arch>.qcow2, a URL, or a release tag",
          },
        );
      }
      return ready({
        path: opts.defaultPath,
        source: "default",
        message: `the image in cache-dir: ${opts.defaultPath}`,
      });
    case "path": {
      const path = opts.resolvedPath ?? spec.path;
      if (!existsSync(path)) {
        throw new EngineError("IMAGE_NOT_FOUND", `image ${path} does not exist`, {
          hint: "check the image input (relative paths are from the workspace), or give a URL or release tag",
        });
      }
      return ready({ path, source: "path", message: `image ${path}` });
    }
    case "tag": {
      const base = opts.releaseBase ?? DEFAULT_RELEASE_BASE;
      const url = releaseAssetUrl(spec.tag, opts.arch, base);
      return download(url, opts, { tag: spec.tag, api: releaseApi(base, spec.tag, opts) });
    }
    case "url":
      return download(spec.url, opts);
  }
}

/**
 * The tool-cache version of a download: the URL and the expected checksum,
 * hashed (semver-shaped). An unverified download is kept apart, so a release
 * tag (which must be verified) never finds one.
 */
export function toolVersion(url: string, expected: string | undefined, verified = true): string {
  const id = createHash("sha256")
    .update(`${url}\n${expected ?? ""}${verified ? "" : "\nunverified"}`)
    .digest("hex")
    .slice(0, 16);
  return `0.0.0-${id}`;
}

/** The tool cache's root, as runnerDirs finds it. */
export function toolCacheRoot(opts: Pick<ImageOptions, "toolCacheDir" | "env">): string {
  const env = opts.env ?? process.env;
  return opts.toolCacheDir || env.RUNNER_TOOL_CACHE || join(env.RUNNER_TEMP || tmpdir(), "tool-cache");
}

/** A tool-cache entry's directory (@actions/tool-cache's layout; trusted with `<dir>.complete`). */
export function toolCacheEntry(root: string, version: string, arch: string): string {
  return join(root, IMAGE_TOOL, version, arch);
}

function fileNameOf(url: string, arch: Arch): string {
  const name = basename(new URL(url).pathname);
  return /^[\w.+-]+$/.test(name) ? name : `stack-emulator-${arch}.qcow2`;
}

/** `<url>.sha256`: the checksum published beside a file. */
function checksumUrlOf(url: string): string {
  const u = new URL(url);
  u.pathname += ".sha256";
  return u.href;
}

interface Release {
  tag: string;
  /** The release through the API with the token; undefined: the public asset URL. */
  api?: { ref: ReleaseRef; auth: Auth } | undefined;
}

/** With a token, the release in the API of this workflow's GitHub, when the release base is on it. */
function releaseApi(base: string, tag: string, opts: ImageOptions): Release["api"] {
  if (!opts.token) return undefined;
  const gh = githubServerOf(opts.env ?? process.env);
  const m = /^\/([\w.-]+)\/([\w.-]+)\/releases\/download\/?$/.exec(new URL(base).pathname);
  if (!m?.[1] || !m[2] || originOf(base) !== originOf(gh.serverUrl)) {
    opts.log(
      `release tag ${tag}: ${shown(base)} is not a release on this workflow's GitHub (${gh.serverUrl}), ` +
        "so the token is not sent: downloading the public release asset",
    );
    return undefined;
  }
  return { ref: { apiUrl: gh.apiUrl, owner: m[1], repo: m[2], tag }, auth: authFor(opts.token, gh) };
}

/** `release` when the URL came from a release tag: then a checksum is required. */
async function download(url: string, opts: ImageOptions, release?: Release): Promise<LocatedImage> {
  const name = fileNameOf(url, opts.arch);
  const given = opts.expectedSha256;
  const root = toolCacheRoot(opts);
  for (const verified of release ? [true] : [true, false]) {
    const hit = cached(toolCacheEntry(root, toolVersion(url, given, verified), opts.arch), name);
    if (hit) {
      const how = verified ? "" : " (unverified: no checksum was published)";
      return {
        kind: "ready",
        choice: {
          path: hit.path,
          source: "tool-cache",
          message: `image ${shown(url)} from the tool cache${how}`,
          sha256: hit.sha256,
          verified,
        },
      };
    }
  }
  sweepStalePartials(root);

  const api = release?.api;
  let expected = given?.toLowerCase();
  let fetchImage: () => Promise<Got>;
  let published: string;
  let what: string;
  if (api) {
    const { ref, auth } = api;
    what = `${name} of release ${ref.tag} (${ref.owner}/${ref.repo}, through the GitHub API)`;
    const assets = await releaseAssets(ref, auth);
    const asset = assets.find((a) => a.name === name);
    if (!asset) {
      throw new EngineError(
        "IMAGE_NOT_FOUND",
        `release ${ref.tag} of ${ref.owner}/${ref.repo} has no asset ${name}`,
        {
          hint: `use a release that publishes ${name} (this one has: ${assets.map((a) => a.name).join(", ") || "no assets"})`,
        },
      );
    }
    const sum = assets.find((a) => a.name === `${name}.sha256`);
    published = `the release's ${name}.sha256`;
    if (!expected && sum) {
      expected = parseChecksum(
        await okText(await getAsset(sum, auth, "the checksum"), "the checksum"),
        published,
      );
    }
    if (!expected) {
      throw noChecksum(
        `release tag ${ref.tag} publishes no checksum (its release has no asset ${name}.sha256), so its image cannot be verified`,
      );
    }
    fetchImage = () => getAsset(asset, auth, "the image");
  } else {
    what = shown(url);
    published = `${shown(url)}.sha256`;
    expected ??= await publishedChecksum(url);
    if (!expected && release) {
      throw noChecksum(
        `release tag ${release.tag} publishes no checksum (${published} is missing), so its image cannot be verified`,
      );
    }
    fetchImage = () => httpGet(url, { what: "the image" });
  }
  const version = toolVersion(url, given, !!expected);
  const fetch = () =>
    fetchInto(
      root,
      { version, arch: opts.arch, name },
      { what, expected, given, published, fetchImage },
      opts,
    );
  return expected
    ? { kind: "pending", sha256: expected, path: join(toolCacheEntry(root, version, opts.arch), name), fetch }
    : { kind: "ready", choice: await fetch() };
}

/** The image's bytes into its tool-cache entry: from the restore hook when it has them, else downloaded. */
async function fetchInto(
  root: string,
  entry: { version: string; arch: Arch; name: string },
  src: {
    what: string;
    expected: string | undefined;
    given: string | undefined;
    published: string;
    fetchImage: () => Promise<Got>;
  },
  opts: ImageOptions,
): Promise<ImageChoice> {
  const { what, expected, given, published, fetchImage } = src;
  if (expected && opts.restore) {
    const restored = await fromElsewhere(root, entry, expected, opts.restore);
    if (restored) {
      return {
        path: restored,
        source: "actions-cache",
        message: `image ${what} (sha256 ${expected}) from the Actions cache`,
        sha256: expected,
        verified: true,
      };
    }
  }
  if (!expected)
    opts.warn?.(`${what} publishes no .sha256 and no image-sha256 was given: the download is not verified`);
  opts.log(`downloading ${what}`);
  const { path, sha256 } = await intoToolCache(
    root,
    entry,
    opts,
    async (file) => {
      const got = await fetchImage();
      if (got.status !== 200) {
        throw statusError(got, "the image", "check the image input (URL or release tag), or retry later");
      }
      return writeHashed(got, file, "the image");
    },
    (written) => {
      if (expected && written.sha256 !== expected) {
        throw new EngineError(
          "CHECKSUM_MISMATCH",
          `${what} has sha256 ${written.sha256}, but ${given ? "the image-sha256 input" : published} says ${expected}`,
          { hint: "the download is corrupt or the checksum is wrong: retry, or fix image-sha256" },
        );
      }
    },
  );
  const how = expected ? `sha256 ${sha256} verified` : `no checksum published (sha256 ${sha256})`;
  return { path, source: "download", message: `downloaded ${what}: ${how}`, sha256, verified: !!expected };
}

/** The restore hook's file, published as the tool-cache entry; undefined when it brought nothing. */
async function fromElsewhere(
  root: string,
  entry: { version: string; arch: string; name: string },
  sha256: string,
  restore: NonNullable<ImageOptions["restore"]>,
): Promise<string | undefined> {
  const partial = newPartial(root, entry);
  try {
    if (!(await restore(sha256, partial)) || !existsSync(partial)) return undefined;
    return publish(root, entry, partial, sha256).path;
  } finally {
    rmSync(partial, { force: true });
  }
}

function noChecksum(message: string): EngineError {
  return new EngineError("CHECKSUM_INVALID", message, {
    hint: "give the image's sha256 as the image-sha256 input, or use a release that publishes <asset>.sha256",
  });
}

function parseChecksum(text: string, where: string): string {
  const sha = checksumIn(text);
  if (!sha) {
    throw new EngineError("CHECKSUM_INVALID", `${where} does not hold a sha256`, {
      hint: "give the image-sha256 input, or report it to the release's maintainers",
    });
  }
  return sha;
}

async function okText(got: Got, what: string): Promise<string> {
  if (got.status !== 200) throw statusError(got, what, "retry later, or give the image-sha256 input");
  return readText(got, what, 64 * 1024);
}

/** The sha256 in `<url>.sha256` (sha256sum format), or undefined when there is none (404). */
async function publishedChecksum(url: string): Promise<string | undefined> {
  const got = await httpGet(checksumUrlOf(url), { what: "the checksum" });
  if (got.status === 404) {
    got.res.resume();
    return undefined;
  }
  return parseChecksum(await okText(got, "the checksum"), `${shown(url)}.sha256`);
}

/** What is recorded beside a cached image: its digest, and the identity of the file it is for. */
const DigestNoteSchema = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number(),
  mtimeMs: z.number(),
  ino: z.number(),
});
const digestNoteOf = (dir: string, name: string): string => join(dir, `${name}.digest.json`);

/** A complete tool-cache entry holding the file, and its recorded digest when the file is unchanged. */
function cached(dir: string, name: string): { path: string; sha256?: string | undefined } | undefined {
  const path = join(dir, name);
  if (!existsSync(`${dir}.complete`) || !existsSync(path)) return undefined;
  let sha256: string | undefined;
  try {
    const note = DigestNoteSchema.parse(JSON.parse(readFileSync(digestNoteOf(dir, name), "utf8")));
    const s = statSync(path);
    if (note.size === s.size && note.mtimeMs === s.mtimeMs && note.ino === s.ino) sha256 = note.sha256;
  } catch {
    // No note (an entry tc.cacheFile made), or a damaged one: the digest is just not known.
  }
  return { path, sha256 };
}

/**
 * A new temporary file's path in the tool cache's root (the same file system
 * as the entry, so publishing is a rename), named by this process so that
 * sweepStalePartials knows whose it is; the root is made if need be.
 */
function newPartial(root: string, entry: { version: string; arch: string }): string {
  mkdirSync(root, { recursive: true });
  const id = `${process.pid}.${randomBytes(6).toString("hex")}`;
  return join(root, `.${IMAGE_TOOL}.${entry.version}.${entry.arch}.${id}.partial`);
}

const PARTIAL = new RegExp(`^\\.${IMAGE_TOOL}\\..+\\.(\\d+)\\.[0-9a-f]{12}\\.partial$`);

/**
 * A partial file untouched for this long is not being written: a live
 * download writes all the time, and gives up after IDLE_TIMEOUT_MS without data.
 */
const STALE_PARTIAL_MS = 2 * IDLE_TIMEOUT_MS;

/**
 * Removes what a killed download left in the tool cache's root: its process
 * is gone and it has not been written to for a while (the age also covers a
 * process in another PID namespace, a container job's, that this one cannot see).
 */
function sweepStalePartials(root: string): void {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return;
  }
  for (const n of names) {
    const pid = Number(PARTIAL.exec(n)?.[1] ?? NaN);
    if (!Number.isInteger(pid) || pid === process.pid || alive(pid)) continue;
    try {
      if (Date.now() - statSync(join(root, n)).mtimeMs < STALE_PARTIAL_MS) continue;
      rmSync(join(root, n), { force: true });
    } catch {
      // gone meanwhile
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Downloads into a temporary file in the tool cache's root (again, on a
 * retryable failure), lets `check` refuse what was written, then publishes
 * it as the entry `<tool>/<version>/<arch>/<name>`, its digest note, and
 * the `.complete` marker, in that order. Whatever fails, the temporary file
 * goes, and no entry is left that a later job would trust.
 */
async function intoToolCache(
  root: string,
  entry: { version: string; arch: string; name: string },
  opts: ImageOptions,
  fetchInto: (file: string) => Promise<{ sha256: string; bytes: number }>,
  check: (written: { sha256: string; bytes: number }) => void,
): Promise<{ path: string; sha256: string }> {
  const attempts = Math.max(1, opts.attempts ?? 3);
  const delayMs = opts.retryDelayMs ?? 10_000;
  const partial = newPartial(root, entry);
  try {
    let written: { sha256: string; bytes: number };
    for (let attempt = 1; ; attempt++) {
      try {
        written = await fetchInto(partial);
        break;
      } catch (err) {
        rmSync(partial, { force: true });
        if (!(err instanceof DownloadError && err.retryable) || attempt >= attempts) throw err;
        opts.warn?.(
          `${err.message}: trying again in ${Math.round(delayMs / 1000)} s (${attempt + 1} of ${attempts})`,
        );
        await sleep(delayMs);
      }
    }
    check(written);
    return publish(root, entry, partial, written.sha256);
  } finally {
    rmSync(partial, { force: true });
  }
}

function publish(
  root: string,
  { version, arch, name }: { version: string; arch: string; name: string },
  partial: string,
  sha256: string,
): { path: string; sha256: string } {
  const dir = toolCacheEntry(root, version, arch);
  const marker = `${dir}.complete`;
  const dest = join(dir, name);
  // Another job on this machine published the same entry meanwhile: keep
  // that one (a rename over it would pull the file from under its QEMU).
  const theirs = cached(dir, name);
  if (theirs?.sha256 === sha256) return { path: theirs.path, sha256 };
  // As tc.cacheFile does: an entry is replaced whole, its marker first.
  rmSync(marker, { force: true });
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  renameSync(partial, dest);
  const s = statSync(dest);
  const note = { sha256, size: s.size, mtimeMs: s.mtimeMs, ino: s.ino };
  writeFileSync(digestNoteOf(dir, name), `${JSON.stringify(note)}\n`, { mode: 0o644 });
  fsyncDir(dir);
  writeFileSync(marker, "", { mode: 0o644 });
  fsyncDir(dirname(dir));
  return { path: dest, sha256 };
}

/** Makes a directory's entries (a rename, a new file) durable; best effort where a filesystem cannot. */
function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // e.g. EINVAL on a filesystem that does not sync directories
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
