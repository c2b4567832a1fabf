/**
 * One writer per snapshot key, across processes: a lock file created with
 * O_EXCL holding {pid, host, startedAt, token, tmp}. A lock whose pid is dead on
 * this host is stale (its writer crashed) and is broken; a lock from another
 * host is never judged (its pid means nothing here).
 */
import { hostname } from "node:os";
import { link, mkdir, readFile, rename, stat, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";
import { EngineError } from "../errors.js";
import { isErrno, randomHex, writeFileDurable } from "./durable.js";

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
 * live: held by a running process here; foreign: held from another host;
 * dead: its process is gone; torn: unreadable (a writer died between create
 * and write), stale once older than TORN_GRACE_MS.
 */
export type LockState =
  { state: "live" | "foreign" | "dead"; holder: LockHolder } | { state: "torn"; stale: boolean };

const TORN_GRACE_MS = 10_000;

export interface LockBroken {
  path: string;
  /** The dead holder, when the lock file was readable. */
  holder: LockHolder | undefined;
}

export interface HeldLock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Still ours? (false if someone broke it, e.g. by hand) */
  held(): Promise<boolean>;
  /** Remove the lock if it is still ours. Idempotent. */
  release(): Promise<void>;
}

/** Is `pid` a running process on this host? EPERM means it exists but is not ours. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, "EPERM");
  }
}

/** The lock's state, or undefined when there is no lock. */
export async function inspectLock(path: string): Promise<LockState | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
  const parsed = safeJson(text);
  const holder = HolderSchema.safeParse(parsed);
  if (!holder.success) {
    const age = await stat(path).then(
      (s) => Date.now() - s.mtimeMs,
      () => Infinity,
    );
    return { state: "torn", stale: age > TORN_GRACE_MS };
  }
  const h = holder.data;
  if (h.host !== hostname()) return { state: "foreign", holder: h };
  return { state: pidAlive(h.pid) ? "live" : "dead", holder: h };
}

/**
 * Take the lock or throw SNAPSHOT_LOCKED. A stale lock is moved aside under a
 * unique name, re-read to confirm it is still the stale one (two breakers can
 * race), then deleted and `onBroken` called; if a live lock was moved by
 * mistake it is linked back.
 */
export async function acquireLock(
  path: string,
  what: string,
  opts: { tmp?: string; onBroken?: (b: LockBroken) => void } = {},
): Promise<HeldLock> {
  await mkdir(dirname(path), { recursive: true });
  const holder: LockHolder = {
    pid: process.pid,
    host: hostname(),
    startedAt: new Date().toISOString(),
    token: randomHex(8),
    ...(opts.tmp === undefined ? {} : { tmp: opts.tmp }),
  };
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await writeFileDurable(path, `${JSON.stringify(holder)}\n`, { exclusive: true });
      return heldLock(path, holder);
    } catch (err) {
      if (!isErrno(err, "EEXIST")) throw err;
    }
    const current = await inspectLock(path);
    if (current === undefined) continue; // released meanwhile
    if (!isStale(current)) throw lockedError(path, what, current);
    const broken = await breakStale(path, current);
    if (broken) opts.onBroken?.(broken);
  }
  throw new EngineError("SNAPSHOT_LOCKED", `could not take the lock for ${what} (contended)`, {
    hint: `another process keeps re-taking ${path}; retry`,
  });
}

/** Remove the lock at `path` if its holder is gone (sweep). */
export async function removeStaleLock(path: string): Promise<LockBroken | undefined> {
  const s = await inspectLock(path);
  if (s === undefined || !isStale(s)) return undefined;
  return breakStale(path, s);
}

function isStale(s: LockState): boolean {
  return s.state === "dead" || (s.state === "torn" && s.stale);
}

async function breakStale(path: string, seen: LockState): Promise<LockBroken | undefined> {
  const aside = `${path}.stale-${randomHex()}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined; // someone else broke or released it
    throw err;
  }
  const moved = safeJson(await readFile(aside, "utf8").catch(() => ""));
  const movedHolder = HolderSchema.safeParse(moved);
  const sameAsSeen =
    seen.state === "torn"
      ? !movedHolder.success
      : movedHolder.success && movedHolder.data.token === seen.holder.token;
  if (!sameAsSeen) {
    // We moved a fresh lock someone took after our read: put it back (fails only if yet another took it).
    await link(aside, path).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
    return undefined;
  }
  await unlink(aside).catch(() => undefined);
  return { path, holder: movedHolder.success ? movedHolder.data : undefined };
}

function heldLock(path: string, holder: LockHolder): HeldLock {
  let released = false;
  const held = async (): Promise<boolean> => {
    if (released) return false;
    const s = await inspectLock(path);
    return s !== undefined && s.state !== "torn" && s.holder.token === holder.token;
  };
  return {
    path,
    holder,
    held,
    async release() {
      if (released) return;
      const ours = await held();
      released = true;
      if (ours)
        await unlink(path).catch((err: unknown) =>
          isErrno(err, "ENOENT") ? undefined : Promise.reject(err),
        );
    },
  };
}

function lockedError(path: string, what: string, s: LockState): EngineError {
  const who =
    s.state === "torn"
      ? "a process that is still creating its lock"
      : `pid ${s.holder.pid} on ${s.holder.host} since ${s.holder.startedAt}`;
  const hint =
    s.state === "foreign"
      ? `wait for that host to finish; if it is gone, delete ${path}`
      : `wait for that capture to finish; if no such process is running, delete ${path}`;
  return new EngineError("SNAPSHOT_LOCKED", `${what} is being written by ${who}`, { hint });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
