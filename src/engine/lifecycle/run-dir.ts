/**
 * The run directory of one emulator: its QEMU's pid file, sockets, logs,
 * runtime ISO, session overlay and state. Mode 0700: it holds the live key.
 */
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Linux limits a unix socket path to 108 bytes (104 on macOS), NUL included. */
const SOCKET_PATH_LIMIT = 100;

export interface RunPaths {
  dir: string;
  pidFile: string;
  qmpSocket: string;
  qgaSocket: string;
  qemuLog: string;
  serialLog: string;
  runtimeIso: string;
  session: string;
  sessionFingerprint: string;
  phantoms: readonly [string, string];
  internalPck: string;
  state: string;
  lock: string;
}

export function runPaths(dir: string): RunPaths {
  let sockDir = dir;
  if (join(dir, "qmp.sock").length > SOCKET_PATH_LIMIT) {
    const id = createHash("sha256").update(dir).digest("hex").slice(0, 12);
    sockDir = join(tmpdir(), `hxe-${id}`);
  }
  return {
    dir,
    pidFile: join(dir, "qemu.pid"),
    qmpSocket: join(sockDir, "qmp.sock"),
    qgaSocket: join(sockDir, "qga.sock"),
    qemuLog: join(dir, "qemu.log"),
    serialLog: join(dir, "serial.log"),
    runtimeIso: join(dir, "runtime-config.iso"),
    session: join(dir, "disk.qcow2"),
    sessionFingerprint: join(dir, "disk.fingerprint"),
    phantoms: [join(dir, "phantom-1.img"), join(dir, "phantom-2.img")],
    internalPck: join(dir, "internal-pck"),
    state: join(dir, "state.json"),
    lock: join(dir, "start.lock"),
  };
}

export function ensureRunDir(paths: RunPaths): void {
  for (const d of new Set([paths.dir, join(paths.qmpSocket, "..")])) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
    chmodSync(d, 0o700);
  }
}

export interface RunState {
  bootMode: "resume" | "cold";
  layout: "cold" | "resume";
  snapshotKey?: string | undefined;
  fallbackReason?: string | undefined;
  qemuBinary: string;
  qemuVersion: string;
  accelerator: string;
  bindAddress: string;
  ports: Record<string, number>;
  placeholderSecrets: boolean;
  startedAt: string;
  timings: Record<string, number>;
}

export function writeState(paths: RunPaths, state: RunState): void {
  const tmp = `${paths.state}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  renameSync(tmp, paths.state);
}

export function readState(paths: RunPaths): RunState | undefined {
  try {
    return JSON.parse(readFileSync(paths.state, "utf8")) as RunState;
  } catch {
    return undefined;
  }
}

/** What a stopped emulator leaves behind is removed; the overlay and ISO stay. */
export function clearRuntimeFiles(paths: RunPaths): void {
  for (const f of [paths.pidFile, paths.qmpSocket, paths.qgaSocket, paths.state]) rmSync(f, { force: true });
}
