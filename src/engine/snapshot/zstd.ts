/**
 * The zstd CLI, the only process this folder spawns. Data flows through
 * pipes: nothing is ever held whole in memory.
 */
import { realpathSync } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { execa } from "execa";
import { EngineError } from "../errors.js";

export interface ZstdOutcome {
  ok: boolean;
  /** What zstd printed on stderr (with -q it prints only errors), else how it ended. */
  message: string;
  /** zstd itself reported an error on stderr. */
  complained: boolean;
}

export interface ZstdCompressor {
  stdin: Writable;
  done: Promise<ZstdOutcome>;
}

export interface ZstdDecompressor {
  stdout: Readable;
  /** The consumer gave up: end the process unless it already finished its output. */
  stop(): void;
  done: Promise<ZstdOutcome>;
}

/** `zstd -T<threads> -<level>`: multi-threaded compression of stdin into `outFile`. */
export function zstdCompress(
  outFile: string,
  { level, threads }: { level: number; threads: number },
): ZstdCompressor {
  const sub = execa("zstd", ["-q", "-f", `-T${threads}`, `-${level}`, "-o", outFile], {
    stdin: "pipe",
    stdout: "ignore",
    stderr: "pipe",
    reject: false,
  });
  return { stdin: sub.stdin, done: sub.then(outcome) };
}

/**
 * `zstd -d` of `archive` to a stdout stream the caller must consume. zstd
 * opens the archive itself: fed through this process instead (execa's stdin
 * file) the compressed bytes cost ~50 ms of its main thread per 40 MiB. The
 * path is resolved first because zstd ignores an input that is a symlink.
 */
export function zstdDecompress(archive: string): ZstdDecompressor {
  const { stdout, stop, done } = decompressing(["--", realpathSync(archive)]);
  return { stdout, stop, done };
}

export interface ZstdStreamDecompressor extends ZstdDecompressor {
  stdin: Writable;
}

/**
 * `zstd -d` from stdin to stdout: for compressed bytes that arrive over the
 * network (an Actions cache entry), decompressed as they come.
 */
export const zstdDecompressStream = (): ZstdStreamDecompressor => decompressing([]);

/** `zstd -d -c` of `input` (none: stdin, a pipe the caller feeds). */
function decompressing(input: string[]): ZstdStreamDecompressor {
  const sub = execa("zstd", ["-q", "-d", "-c", ...input], {
    stdin: input.length > 0 ? "ignore" : "pipe",
    stdout: "pipe",
    stderr: "pipe",
    buffer: { stdout: false, stderr: true },
    reject: false,
  });
  const stop = (): void => {
    // After end of output zstd is exiting by itself; a signal then would only blur its exit status.
    if (!sub.stdout.readableEnded) sub.kill();
    sub.stdin?.destroy();
    sub.stdout.destroy();
  };
  return { stdin: sub.stdin as Writable, stdout: sub.stdout, stop, done: sub.then(outcome) };
}

function outcome(r: {
  failed: boolean;
  code?: string;
  stderr?: unknown;
  shortMessage?: string;
}): ZstdOutcome {
  const stderr = typeof r.stderr === "string" ? r.stderr.trim() : "";
  if (!r.failed) return { ok: true, message: stderr, complained: stderr !== "" };
  if (r.code === "ENOENT") throw zstdMissing();
  return { ok: false, message: stderr || r.shortMessage || "zstd failed", complained: stderr !== "" };
}

export function zstdMissing(): EngineError {
  return new EngineError("ZSTD_NOT_FOUND", "the zstd command is not installed", {
    hint: "install zstd (apt-get install zstd, brew install zstd)",
  });
}
