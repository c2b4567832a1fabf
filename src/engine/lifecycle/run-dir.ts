/**
 * The run directory of one emulator: its QEMU's pid file, sockets, logs,
 * runtime ISO, session overlay and state. Mode 0700: it holds the live key.
 */
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";

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

/** state.json: what a finished start wrote. Validated on read: it decides whether a QEMU is killed. */
const RunStateSchema = z.object({
  bootMode: z.enum(["resume", "cold"]),
  layout: z.enum(["cold", "resume"]),
  snapshotKey: z.string().optional(),
  fallbackReason: z.string().optional(),
  qemuBinary: z.string(),
  qemuVersion: z.string(),
  accelerator: z.string(),
  bindAddress: z.string(),
  ports: z.record(z.string(), z.number().int()),
  placeholderSecrets: z.boolean(),
  startedAt: z.string().refine((s) => Number.isFinite(Date.parse(s)), "must be an ISO date"),
  timings: z.record(z.string(), z.number()),
});
export type RunState = z.infer<typeof RunStateSchema>;

export type StateFile =
  { state: "absent" } | { state: "invalid"; reason: string } | { state: "ok"; value: RunState };

export function writeState(paths: RunPaths, state: RunState): void {
  const tmp = `${paths.state}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  renameSync(tmp, paths.state);
}

export function readStateFile(paths: RunPaths): StateFile {
  let text: string;
  try {
    text = readFileSync(paths.state, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { state: "absent" };
    return { state: "invalid", reason: (err as Error).message };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { state: "invalid", reason: `not JSON (${(err as Error).message})` };
  }
  const parsed = RunStateSchema.safeParse(json);
  if (!parsed.success) {
    return {
      state: "invalid",
      reason: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
    };
  }
  return { state: "ok", value: parsed.data };
}

/** The state of a finished start, or undefined when there is none or it cannot be trusted. */
export function readState(paths: RunPaths): RunState | undefined {
  const f = readStateFile(paths);
  return f.state === "ok" ? f.value : undefined;
}

/** What a stopped emulator leaves behind is removed; the overlay and ISO stay. */
export function clearRuntimeFiles(paths: RunPaths): void {
  for (const f of [paths.pidFile, paths.qmpSocket, paths.qgaSocket, paths.state]) rmSync(f, { force: true });
}
