/**
 * pull: download an emulator image (the release asset
 * stack-emulator-<arch>.qcow2), check it against the release's `.sha256` when
 * there is one, and publish it by rename: a partly downloaded image is never
 * where the next start would trust it.
 *
 * Several Pods on a node share the image directory. Pulls of one image take
 * turns under a kernel lock (`<image>.lock`, see snapshot/flock.ts), each
 * writes its own temporary file (unique name, mode 0600, beside the image so
 * the rename is atomic), and the digest checked is the written file's, read
 * back from disk. One that waited reuses what the pull before it published
 * instead of downloading again.
 */
import {
  chmodSync,
  closeSync,
  createWriteStream,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { EngineError } from "../errors.js";
import { fsyncDir, randomHex } from "../snapshot/durable.js";
import { tryLock } from "../snapshot/flock.js";
import { sha256File } from "../snapshot/hash.js";
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
  /** Another pull (a Pod beside this one) had just published this image: nothing was downloaded. */
  reused: boolean;
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

/** How long a pull waits for another pull of the same image (a dead one's lock goes at once). */
const PULL_WAIT_MS = 60 * 60_000;

/** What a finished pull leaves beside the image, so a pull that waited for it can reuse it. */
interface PulledNote {
  url: string;
  sha256: string;
  bytes: number;
  finishedAt: number;
}

const noteOf = (dest: string): string => `${dest}.pulled`;

export async function pullImage(
  url: string,
  dest: string,
  onProgress: (p: PullProgress) => void = () => undefined,
): Promise<PullResult> {
  const t0 = performance.now();
  const startedAt = Date.now();
  const expected = await expectedChecksum(url);
  mkdirSync(dirname(dest), { recursive: true });
  const lock = await tryLock(`${dest}.lock`, "exclusive", { waitMs: PULL_WAIT_MS });
  if (lock === undefined || lock === "busy") {
    throw new EngineError("DOWNLOAD_FAILED", `another pull of ${dest} did not finish within an hour`, {
      hint: `wait for it, or download elsewhere and pass --image; its lock is ${dest}.lock`,
    });
  }
  try {
    const reused = await reusable(url, dest, expected, startedAt);
    if (reused) return { ...reused, checksumVerified: expected !== undefined, reused: true, ms: since(t0) };
    removeDeadParts(dest);
    const pulled = await download(url, dest, expected, onProgress);
    const note: PulledNote = { url, sha256: pulled.sha256, bytes: pulled.bytes, finishedAt: Date.now() };
    await writeFile(noteOf(dest), `${JSON.stringify(note)}\n`).catch(() => undefined);
    return { ...pulled, path: dest, checksumVerified: expected !== undefined, reused: false, ms: since(t0) };
  } finally {
    lock.release();
  }
}

const since = (t0: number): number => Math.round(performance.now() - t0);

/**
 * The image already at `dest`, when it is the one asked for: it has the
 * release's checksum, or (a release without one) a pull of the same URL
 * published it while this one waited. Its digest is read from the file.
 */
async function reusable(
  url: string,
  dest: string,
  expected: string | undefined,
  startedAt: number,
): Promise<{ path: string; bytes: number; sha256: string } | undefined> {
  let note: Partial<PulledNote> = {};
  try {
    note = JSON.parse(await readFile(noteOf(dest), "utf8")) as Partial<PulledNote>;
  } catch {
    /* none: only a checksum can vouch for the image */
  }
  const vouched =
    expected !== undefined ||
    (note.url === url && typeof note.finishedAt === "number" && note.finishedAt >= startedAt);
  if (!vouched) return undefined;
  let bytes: number;
  try {
    bytes = statSync(dest).size;
  } catch {
    return undefined;
  }
  const { sha256 } = await sha256File(dest);
  const want = expected ?? note.sha256;
  return sha256 === want ? { path: dest, bytes, sha256 } : undefined;
}

/** `<image>.part-<hex>` files are written only under the lock: any left now are a dead pull's. */
function removeDeadParts(dest: string): void {
  const prefix = `${basename(dest)}.part`;
  for (const name of readdirSync(dirname(dest))) {
    if (name === prefix || name.startsWith(`${prefix}-`)) rmSync(join(dirname(dest), name), { force: true });
  }
}

async function download(
  url: string,
  dest: string,
  expected: string | undefined,
  onProgress: (p: PullProgress) => void,
): Promise<{ bytes: number; sha256: string }> {
  const res = await fetchOk(url, "the image");
  if (!res.ok || !res.body) {
    throw new EngineError("DOWNLOAD_FAILED", `${url} answered ${res.status}`, {
      hint: res.status === 404 ? "check the release tag and architecture" : "retry later",
    });
  }
  const total = Number(res.headers.get("content-length")) || undefined;
  const part = `${dest}.part-${randomHex()}`;
  let received = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      onProgress({ received, total });
      cb(null, chunk);
    },
  });
  const fd = openSync(part, "wx", 0o600);
  let open = true;
  try {
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream),
      meter,
      createWriteStream("", { fd, autoClose: false }),
    );
    fsyncSync(fd);
    open = false;
    closeSync(fd);
    if (total !== undefined && received !== total) {
      throw new EngineError(
        "DOWNLOAD_FAILED",
        `download of ${url} ended after ${received} of ${total} bytes`,
        { hint: "retry" },
      );
    }
    // What is checked is what is on disk, not what went past on the stream.
    const written = await sha256File(part);
    if (written.bytes !== received) {
      throw new EngineError(
        "DOWNLOAD_FAILED",
        `${part} holds ${written.bytes} bytes, ${received} were received`,
        {
          hint: "the disk may be full or failing; free space and retry",
        },
      );
    }
    if (expected !== undefined && written.sha256 !== expected) {
      throw new EngineError(
        "CHECKSUM_MISMATCH",
        `${url} has sha256 ${written.sha256}, the release says ${expected}`,
        {
          hint: "the download is corrupt or the release changed; retry, and report it if it persists",
        },
      );
    }
    chmodSync(part, 0o644);
    renameSync(part, dest);
    await fsyncDir(dirname(dest));
    return { bytes: received, sha256: written.sha256 };
  } catch (err) {
    if (open) closeSync(fd);
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
