/**
 * pull: download an emulator image (the release asset
 * stack-emulator-<arch>.qcow2) to `<file>.part`, check it against the
 * release's `.sha256` when there is one, and publish it by rename: a partly
 * downloaded image is never where the next start would trust it.
 */
import { createHash } from "node:crypto";
import { createWriteStream, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { EngineError } from "../errors.js";
import type { ReadableStream as WebReadableStream } from "node:stream/web";

export const DEFAULT_RELEASE_BASE = "https://github.com/hexclave/hexclave/releases/download";

export function releaseAssetUrl(tag: string, arch: string, base = DEFAULT_RELEASE_BASE): string {
  if (!/^[\w.+-]+$/.test(tag)) {
    throw new EngineError("RELEASE_TAG_INVALID", `release tag "${tag}" has characters a tag cannot have`, {
      hint: "give a tag like emulator-v1.2.3, or a full URL with --url",
    });
  }
  return `${base.replace(/\/$/, "")}/${tag}/stack-emulator-${arch}.qcow2`;
}

export interface PullProgress {
  received: number;
  total?: number | undefined;
}

export interface PullResult {
  path: string;
  bytes: number;
  sha256: string;
  checksumVerified: boolean;
  ms: number;
}

async function fetchOk(url: string, what: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: "follow" });
  } catch (err) {
    throw new EngineError(
      "DOWNLOAD_FAILED",
      `could not reach ${url} for ${what}: ${(err as Error).message}`,
      {
        hint: "check the network, or download the image yourself and pass --image",
        cause: err,
      },
    );
  }
  return res;
}

/** The expected sha256 from `<url>.sha256` (sha256sum format), or undefined when the release has none. */
async function expectedChecksum(url: string): Promise<string | undefined> {
  const res = await fetchOk(`${url}.sha256`, "the checksum");
  if (res.status === 404) return undefined;
  if (!res.ok)
    throw new EngineError("DOWNLOAD_FAILED", `${url}.sha256 answered ${res.status}`, { hint: "retry later" });
  const m = /^([0-9a-fA-F]{64})\b/.exec((await res.text()).trim());
  if (!m?.[1])
    throw new EngineError("CHECKSUM_INVALID", `${url}.sha256 does not hold a sha256`, {
      hint: "report it to the release's maintainers",
    });
  return m[1].toLowerCase();
}

export async function pullImage(
  url: string,
  dest: string,
  onProgress: (p: PullProgress) => void = () => undefined,
): Promise<PullResult> {
  const t0 = performance.now();
  const expected = await expectedChecksum(url);
  const res = await fetchOk(url, "the image");
  if (!res.ok || !res.body) {
    throw new EngineError("DOWNLOAD_FAILED", `${url} answered ${res.status}`, {
      hint: res.status === 404 ? "check the release tag and architecture" : "retry later",
    });
  }
  const total = Number(res.headers.get("content-length")) || undefined;
  mkdirSync(dirname(dest), { recursive: true });
  const part = `${dest}.part`;
  const hash = createHash("sha256");
  let received = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      hash.update(chunk);
      onProgress({ received, total });
      cb(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream),
      meter,
      createWriteStream(part, { mode: 0o644 }),
    );
    if (total !== undefined && received !== total) {
      throw new EngineError(
        "DOWNLOAD_FAILED",
        `download of ${url} ended after ${received} of ${total} bytes`,
        { hint: "retry" },
      );
    }
    const sha256 = hash.digest("hex");
    if (expected !== undefined && sha256 !== expected) {
      throw new EngineError(
        "CHECKSUM_MISMATCH",
        `${url} has sha256 ${sha256}, the release says ${expected}`,
        {
          hint: "the download is corrupt or the release changed; retry, and report it if it persists",
        },
      );
    }
    renameSync(part, dest);
    return {
      path: dest,
      bytes: received,
      sha256,
      checksumVerified: expected !== undefined,
      ms: Math.round(performance.now() - t0),
    };
  } catch (err) {
    rmSync(part, { force: true });
    throw err;
  }
}

/** A one-line progress bar: redrawn in place on a TTY, every 10 % otherwise. */
export function progressPrinter(write: (s: string) => void, tty: boolean): (p: PullProgress) => void {
  let lastDecile = -1;
  return ({ received, total }) => {
    const mib = (received / 1024 / 1024).toFixed(1);
    if (total === undefined) {
      if (tty) write(`\r  ${mib} MiB`);
      return;
    }
    const pct = Math.floor((received / total) * 100);
    const bar = "#".repeat(Math.floor(pct / 4)).padEnd(25, ".");
    if (tty) write(`\r  [${bar}] ${pct}% ${mib} MiB`);
    else if (Math.floor(pct / 10) > lastDecile) {
      lastDecile = Math.floor(pct / 10);
      write(`  ${pct}% (${mib} MiB)\n`);
    }
  };
}
