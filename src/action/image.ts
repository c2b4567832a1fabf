/**
 * The base image: a path on the runner, or a download (a URL, or a release
 * tag turned into the release asset's URL) kept in the runner's tool cache
 * (RUNNER_TOOL_CACHE, which persists on self-hosted runners). A download is
 * checked against the `image-sha256` input, else the published `<url>.sha256`;
 * a mismatch fails the step and nothing is cached. A release tag fails closed:
 * without a published `.sha256` (and no image-sha256) the step fails. A plain
 * URL without one is downloaded unverified, with a warning.
 */
import { createHash } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import * as tc from "@actions/tool-cache";
import {
  DEFAULT_RELEASE_BASE,
  EngineError,
  releaseAssetUrl,
  sha256File,
  type Arch,
} from "../engine/index.js";
import type { ImageSpec } from "./inputs.js";

export const IMAGE_TOOL = "hexclave-emulator-image";

export interface ImageChoice {
  path: string;
  source: "path" | "default" | "tool-cache" | "download";
  message: string;
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
}

export async function resolveImage(spec: ImageSpec, opts: ImageOptions): Promise<ImageChoice> {
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
      return {
        path: opts.defaultPath,
        source: "default",
        message: `the image in cache-dir: ${opts.defaultPath}`,
      };
    case "path": {
      const path = opts.resolvedPath ?? spec.path;
      if (!existsSync(path)) {
        throw new EngineError("IMAGE_NOT_FOUND", `image ${path} does not exist`, {
          hint: "check the image input (relative paths are from the workspace), or give a URL or release tag",
        });
      }
      return { path, source: "path", message: `image ${path}` };
    }
    case "tag":
      return download(
        releaseAssetUrl(spec.tag, opts.arch, opts.releaseBase ?? DEFAULT_RELEASE_BASE),
        opts,
        `release tag ${spec.tag}`,
      );
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

function fileNameOf(url: string, arch: Arch): string {
  const name = basename(new URL(url).pathname);
  return /^[\w.+-]+$/.test(name) ? name : `stack-emulator-${arch}.qcow2`;
}

/** `tag` names the release when the URL came from one: then a checksum is required. */
async function download(url: string, opts: ImageOptions, tag?: string): Promise<ImageChoice> {
  const name = fileNameOf(url, opts.arch);
  const given = opts.expectedSha256;
  for (const verified of tag ? [true] : [true, false]) {
    const cachedDir = tc.find(IMAGE_TOOL, toolVersion(url, given, verified), opts.arch);
    if (cachedDir && existsSync(join(cachedDir, name))) {
      const how = verified ? "" : " (unverified: no checksum was published)";
      return {
        path: join(cachedDir, name),
        source: "tool-cache",
        message: `image ${url} from the tool cache${how}`,
      };
    }
  }
  const expected = given ?? (await publishedChecksum(url));
  if (!expected && tag) {
    throw new EngineError(
      "CHECKSUM_INVALID",
      `${tag} publishes no checksum (${url}.sha256 is missing), so its image cannot be verified`,
      {
        hint: "give the image's sha256 as the image-sha256 input, or use a release that publishes <asset>.sha256",
      },
    );
  }
  if (!expected)
    opts.warn?.(`${url} publishes no .sha256 and no image-sha256 was given: the download is not verified`);
  opts.log(`downloading ${url}`);
  let file: string;
  try {
    file = await tc.downloadTool(url);
  } catch (err) {
    throw new EngineError("DOWNLOAD_FAILED", `could not download ${url}: ${(err as Error).message}`, {
      hint: "check the image input (URL or release tag) and the network",
      cause: err,
    });
  }
  try {
    const actual = (await sha256File(file)).sha256;
    if (expected && actual !== expected) {
      throw new EngineError(
        "CHECKSUM_MISMATCH",
        `${url} has sha256 ${actual}, but ${given ? "the image-sha256 input" : `${url}.sha256`} says ${expected}`,
        { hint: "the download is corrupt or the checksum is wrong: retry, or fix image-sha256" },
      );
    }
    const dir = await tc.cacheFile(file, name, IMAGE_TOOL, toolVersion(url, given, !!expected), opts.arch);
    const how = expected ? `sha256 ${actual} verified` : `no checksum published (sha256 ${actual})`;
    return { path: join(dir, name), source: "download", message: `downloaded ${url}: ${how}` };
  } finally {
    rmSync(file, { force: true });
  }
}

/** The sha256 in `<url>.sha256` (sha256sum format), or undefined when the release has none (404). */
async function publishedChecksum(url: string): Promise<string | undefined> {
  let res: Response;
  try {
    res = await fetch(`${url}.sha256`, { redirect: "follow" });
  } catch (err) {
    throw new EngineError("DOWNLOAD_FAILED", `could not reach ${url}.sha256: ${(err as Error).message}`, {
      hint: "check the network, or give the image-sha256 input",
      cause: err,
    });
  }
  if (res.status === 404) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new EngineError("DOWNLOAD_FAILED", `${url}.sha256 answered ${res.status}`, { hint: "retry later" });
  }
  const m = /^([0-9a-fA-F]{64})\b/.exec((await res.text()).trim());
  if (!m?.[1]) {
    throw new EngineError("CHECKSUM_INVALID", `${url}.sha256 does not hold a sha256`, {
      hint: "give the image-sha256 input, or report it to the release's maintainers",
    });
  }
  return m[1].toLowerCase();
}
