/**
 * Kernel-released file locks: flock(2) on an open file description, which the
 * kernel drops when the last descriptor of it closes, i.e. when its holder
 * dies however it dies (SIGKILL, OOM kill, a container torn down). It needs
 * no pid or host name, so it is right across pid namespaces: two Pods on one
 * node sharing a hostPath store see each other's locks, and a restarted agent
 * (pid 1 again, the same Pod name) never mistakes its dead self's lock for a
 * live one.
 *
 * Node has no flock. npm's bindings are native addons (fs-ext, fd-lock's
 * fs-native-extensions), which the bundled Action (dist/) cannot carry and
 * the agent image would have to build. So a short-lived perl helper takes the
 * lock on a descriptor it inherits: a flock belongs to the open file
 * description, not to the process that called it, so the lock stays with our
 * descriptor after the helper exits. perl is in every Debian base system
 * (perl-base is essential) and in macOS, as snapshot/holes.ts already relies on.
 *
 * A lock file may be deleted by its holder (so a store does not fill with
 * them): whoever locks then checks that the path still names the inode it
 * locked, and starts over when it does not.
 */
import { spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  openSync,
  readFileSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { EngineError } from "../errors.js";
import { isErrno } from "./durable.js";

export type LockMode = "shared" | "exclusive";

export interface FileLock {
  readonly path: string;
  /** The locked descriptor: a child given it (spawn stdio) holds the lock too, until it exits. */
  readonly fd: number;
  /** Still the lock on `path`? (false once released, or if the file was deleted or replaced) */
  held(): boolean;
  /** Replace the file's content (a note on who holds it, for messages). */
  write(text: string): void;
  /** Close our descriptor (the lock goes when no child holds it either). Idempotent. */
  release(): void;
  /** Delete the lock file, then release: for the last user of a lock file. */
  remove(): void;
}

/** Exit codes of the helper. */
const GOT = 0;
const BUSY = 1;

/**
 * fd 3 is the inherited descriptor; $ARGV[0] is sh or ex; $ARGV[1] how many
 * milliseconds to keep trying (polling: a blocking flock cannot be bounded
 * without a module perl-base might lack).
 */
const FLOCK_SCRIPT = [
  "use Fcntl qw(:flock);",
  'open(my $fh, "+<&=", 3) or exit 3;',
  'my $op = ($ARGV[0] eq "sh" ? LOCK_SH : LOCK_EX) | LOCK_NB;',
  "my $tries = int($ARGV[1] / 10);",
  "while (!flock($fh, $op)) { exit 1 if $tries-- <= 0; select(undef, undef, undef, 0.01); }",
  "exit 0;",
].join(" ");

function helperArgs(mode: LockMode, waitMs: number): string[] {
  return ["-e", FLOCK_SCRIPT, mode === "shared" ? "sh" : "ex", String(Math.max(0, Math.round(waitMs)))];
}

function helperFailed(path: string, detail: string, cause?: unknown): EngineError {
  return new EngineError("LOCK_FAILED", `could not lock ${path}: ${detail}`, {
    hint: "the engine takes file locks with perl (flock); install perl, and keep the store on a local or NFSv4 file system",
    ...(cause === undefined ? {} : { cause }),
  });
}

function verdict(path: string, status: number | null, signal: string | null, error?: Error): boolean {
  if (error) throw helperFailed(path, error.message, error);
  if (status === GOT) return true;
  if (status === BUSY) return false;
  throw helperFailed(path, `the perl helper ended with ${signal ?? `exit ${status}`}`);
}

function flockSync(fd: number, path: string, mode: LockMode, waitMs: number): boolean {
  const r = spawnSync("perl", helperArgs(mode, waitMs), { stdio: ["ignore", "ignore", "pipe", fd] });
  return verdict(path, r.status, r.signal, r.error);
}

function flockAsync(fd: number, path: string, mode: LockMode, waitMs: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const child = spawn("perl", helperArgs(mode, waitMs), { stdio: ["ignore", "ignore", "pipe", fd] });
    child.once("error", (err) => reject(helperFailed(path, err.message, err)));
    child.once("exit", (status, signal) => {
      try {
        resolve(verdict(path, status, signal));
      } catch (err) {
        reject(err as Error);
      }
    });
  });
}

export interface LockOptions {
  /** Create the file when missing (default true); false: undefined when there is none. */
  create?: boolean;
  /** Keep trying this long while another holds a conflicting lock (default 0). */
  waitMs?: number;
}

function openFor(path: string, create: boolean): number | undefined {
  try {
    return openSync(path, constants.O_RDWR | (create ? constants.O_CREAT : 0), 0o644);
  } catch (err) {
    if (!create && isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

/** Does `path` still name the inode `fd` has open? */
function sameFile(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = statSync(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

/** The lock, "busy", or "again" when its holder deleted the file meanwhile (lock the new one). */
function settle(path: string, fd: number, got: boolean): FileLock | "busy" | "again" {
  if (got && sameFile(fd, path)) return fileLock(path, fd);
  closeSync(fd);
  return got ? "again" : "busy";
}

/** Take a lock now or undefined when another holds a conflicting one (or, with create false, there is no file). */
export function tryLockSync(
  path: string,
  mode: LockMode,
  opts: LockOptions = {},
): FileLock | "busy" | undefined {
  for (;;) {
    const fd = openFor(path, opts.create ?? true);
    if (fd === undefined) return undefined;
    let got: boolean;
    try {
      got = flockSync(fd, path, mode, opts.waitMs ?? 0);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    const r = settle(path, fd, got);
    if (r !== "again") return r;
  }
}

/** The async form of tryLockSync (the wait does not block the event loop). */
export async function tryLock(
  path: string,
  mode: LockMode,
  opts: LockOptions = {},
): Promise<FileLock | "busy" | undefined> {
  for (;;) {
    const fd = openFor(path, opts.create ?? true);
    if (fd === undefined) return undefined;
    let got: boolean;
    try {
      got = await flockAsync(fd, path, mode, opts.waitMs ?? 0);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    const r = settle(path, fd, got);
    if (r !== "again") return r;
  }
}

/**
 * Is a lock held on `path`? Asks by taking (and at once dropping) a lock
 * that conflicts with the holders' mode: exclusive to find any holder, shared
 * to find an exclusive one. undefined when there is no such file.
 */
export async function isLocked(path: string, holders: LockMode): Promise<boolean | undefined> {
  const probe = await tryLock(path, holders === "shared" ? "exclusive" : "shared", { create: false });
  if (probe === undefined) return undefined;
  if (probe === "busy") return true;
  probe.release();
  return false;
}

/** The text of a lock file ("" when unreadable or gone). */
export function readLockNote(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function fileLock(path: string, fd: number): FileLock {
  let open = true;
  return {
    path,
    fd,
    held: () => open && sameFile(fd, path),
    write(text) {
      ftruncateSync(fd, 0);
      writeSync(fd, text, 0);
    },
    release() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
    remove() {
      if (!open) return;
      if (sameFile(fd, path)) unlinkSync(path);
      this.release();
    },
  };
}

/** Mark `path` used now (its mtime is the store's "last used"). */
export function touch(path: string): void {
  const now = new Date();
  utimesSync(path, now, now);
}
