/**
 * One writer per snapshot key, across processes, containers and Pods that
 * share the store: an exclusive flock on `.locks/<key>.lock` (see flock.ts),
 * which the kernel releases when the writer dies. The file also holds a note
 * {pid, host, startedAt, token, tmp} for messages and for the sweep (which
 * temporary dir the live writer fills); the note never decides whether the
 * lock is held, since a pid and a host name mean nothing to another pid
 * namespace or to a restarted Pod of the same name.
 */
import { hostname } from "node:os";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";
import { EngineError } from "../errors.js";
import { randomHex } from "./durable.js";
import { readLockNote, tryLock, type FileLock } from "./flock.js";

const HolderSchema = z.object({
  pid: z.number().int().positive(),
  host: z.string(),
  startedAt: z.string(),
  token: z.string(),
  /** The temporary directory this writer fills (so a sweep knows what is live). */
  tmp: z.string().optional(),
});
export type LockHolder = z.infer<typeof HolderSchema>;

/**
 * live: a process holds it; dead: nobody does (its writer finished without
 * cleaning up, or died). holder: the note, when readable (a live writer may
 * not have written it yet; a dead one's may be torn).
 */
export type LockState = { state: "live" | "dead"; holder: LockHolder | undefined };

/** How long a writer waits for a lock that is busy: long enough to ride out a sweep's probe. */
const ACQUIRE_WAIT_MS = 1_000;

export interface LockBroken {
  path: string;
  /** The dead holder, when its note was readable. */
  holder: LockHolder | undefined;
}

export interface HeldLock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Still ours? (false once released, or if the file was deleted by hand) */
  held(): Promise<boolean>;
  /** Delete the lock file and release the lock. Idempotent. */
  release(): Promise<void>;
}

function noteOf(path: string): LockHolder | undefined {
  const text = readLockNote(path);
  try {
    const parsed = HolderSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The lock's state, or undefined when there is no lock file. */
export async function inspectLock(path: string): Promise<LockState | undefined> {
  const probe = await tryLock(path, "shared", { create: false });
  if (probe === undefined) return undefined;
  const holder = noteOf(path);
  if (probe === "busy") return { state: "live", holder };
  probe.release();
  return { state: "dead", holder };
}

/**
 * Take the lock or throw SNAPSHOT_LOCKED naming the holder. A lock file whose
 * holder is gone is simply taken over (`onBroken` says whose it was).
 */
export async function acquireLock(
  path: string,
  what: string,
  opts: { tmp?: string; onBroken?: (b: LockBroken) => void } = {},
): Promise<HeldLock> {
  await mkdir(dirname(path), { recursive: true });
  const lock = await tryLock(path, "exclusive", { waitMs: ACQUIRE_WAIT_MS });
  if (lock === undefined || lock === "busy") throw lockedError(path, what, noteOf(path));
  const previous = readLockNote(path);
  if (previous !== "") opts.onBroken?.({ path, holder: noteOf(path) });
  const holder: LockHolder = {
    pid: process.pid,
    host: hostname(),
    startedAt: new Date().toISOString(),
    token: randomHex(8),
    ...(opts.tmp === undefined ? {} : { tmp: opts.tmp }),
  };
  lock.write(`${JSON.stringify(holder)}\n`);
  return heldLock(lock, holder);
}

/** Remove the lock at `path` if nobody holds it (sweep). */
export async function removeStaleLock(path: string): Promise<LockBroken | undefined> {
  const lock = await tryLock(path, "exclusive", { create: false });
  if (lock === undefined || lock === "busy") return undefined;
  const holder = noteOf(path);
  lock.remove();
  return { path, holder };
}

function heldLock(lock: FileLock, holder: LockHolder): HeldLock {
  return {
    path: lock.path,
    holder,
    held: () => Promise.resolve(lock.held()),
    release: () => {
      lock.remove();
      return Promise.resolve();
    },
  };
}

function lockedError(path: string, what: string, holder: LockHolder | undefined): EngineError {
  const who = holder
    ? `pid ${holder.pid} on ${holder.host} since ${holder.startedAt}`
    : "a process that is still writing its note";
  return new EngineError("SNAPSHOT_LOCKED", `${what} is being written by ${who}`, {
    hint: `wait for that capture to finish (the lock ${path} goes when its process ends, on whichever host or Pod it runs)`,
  });
}
