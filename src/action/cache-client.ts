/**
 * The Actions cache as the Action uses it, behind a seam (tests hand in
 * their own, as actions/cache's tests do), and what @actions/cache says.
 *
 * @actions/cache never throws for a service failure: it logs (core.warning,
 * core.error for a 5xx) and answers "miss" or -1. To tell an outage from a
 * miss, and a lost save race between matrix jobs from an outage, each call
 * listens to the workflow commands it prints: the annotations are kept and
 * reported once by the Action (a warning naming the outage), never as a
 * second, misleading error.
 *
 * Paths: @actions/cache hashes the paths list into the entry's version, so
 * the path must be the same string on every runner. Each call runs in the
 * Action's cache directory, as both its working directory (paths are
 * globbed from there) and GITHUB_WORKSPACE (tar entries are relative to it,
 * and extracted there), and names the archive by the fixed relative path
 * ARCHIVE_NAME.
 *
 * Calls may overlap (the image and the snapshot restore at once): calls in
 * one directory share it (the first to enter sets cwd, GITHUB_WORKSPACE and
 * the stdout listener, the last to leave puts them back); a call for another
 * directory waits until those have left. @actions/cache reads both only
 * inside a call (globbing a save's paths; tar's -C at create and extract).
 * Each call's messages are told apart by its async context.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type * as ActionsCacheModule from "@actions/cache";
import { cacheServiceOf, ghesHost } from "./cache-service.js";
import { compressionOnThisRunner, lookupStreamed, type StreamLookup } from "./cache-stream.js";

/** The plain archive (its name is in the entry's version: a new one when the content changes form). */
export const ARCHIVE_NAME = "hexclave-emulator-snapshot.plain.hxsnap";

export interface CacheClient {
  isFeatureAvailable(): boolean;
  restoreCache(paths: string[], primaryKey: string, restoreKeys: string[]): Promise<string | undefined>;
  saveCache(paths: string[], key: string): Promise<number>;
  /**
   * The entry restoreCache would restore, to be streamed into its consumer
   * with no copy on disk (cache-stream.ts). Optional: without it (a test's
   * client) the caller uses restoreCache. Throws CACHE_PROTOCOL when the
   * service's answer is not understood, so the caller falls back to restoreCache.
   */
  lookupStreamed?(paths: string[], primaryKey: string, restoreKeys: string[]): Promise<StreamLookup>;
  /**
   * Starts what a first lookup will wait for (the runner's compression, which
   * is part of every entry's version) while the job does other things first.
   */
  warmUp?(): void;
}

type CacheModule = typeof ActionsCacheModule;
let cacheModule: Promise<CacheModule> | undefined;

/**
 * @actions/cache (with the Azure SDK under it) is most of the bundle: it is
 * a chunk of its own, loaded on first use. A main step that resumes a
 * streamed snapshot (cache-stream.ts) never parses it; saves, file restores
 * and the image and apt entries load it when they start.
 */
export const loadActionsCache = (): Promise<CacheModule> => (cacheModule ??= import("@actions/cache"));

/**
 * A download segment (up to 128 MiB through the Azure SDK) that has not
 * arrived in 2 minutes is a stalled download: the restore gives up (a cold
 * boot, said as an outage) instead of @actions/cache's 10 minutes per
 * segment. SEGMENT_DOWNLOAD_TIMEOUT_MINS still wins, as @actions/cache reads it last.
 */
export const SEGMENT_TIMEOUT_MS = 120_000;

export const actionsCache: CacheClient = {
  isFeatureAvailable: () => cacheServiceAvailable(process.env),
  restoreCache: async (paths, key, restoreKeys) =>
    (await loadActionsCache()).restoreCache(
      paths,
      key,
      restoreKeys,
      { segmentTimeoutInMs: SEGMENT_TIMEOUT_MS },
      false,
    ),
  saveCache: async (paths, key) => (await loadActionsCache()).saveCache(paths, key, {}, false),
  lookupStreamed: (paths, key, restoreKeys) => lookupStreamed(paths, key, restoreKeys, process.env),
  warmUp: () => void compressionOnThisRunner(),
};

/**
 * @actions/cache's isFeatureAvailable() without loading it: the legacy
 * service on GitHub Enterprise Server or without ACTIONS_CACHE_SERVICE_V2
 * (configured by ACTIONS_CACHE_URL), else v2 (ACTIONS_RESULTS_URL). The
 * tests hold it to the real one.
 */
export const cacheServiceAvailable = (env: NodeJS.ProcessEnv): boolean => cacheServiceOf(env) !== undefined;

export interface CacheMessage {
  kind: "warning" | "error" | "debug" | "info";
  message: string;
}

const COMMAND = /^::(warning|error|debug)(?: [^:]*)?::(.*)$/;
const decode = (s: string) => s.replace(/%0D/g, "\r").replace(/%0A/g, "\n").replace(/%25/g, "%");

/** The messages of the cache call whose async context is running. */
const callMessages = new AsyncLocalStorage<CacheMessage[]>();

/** The directory the running calls share, and what to put back when the last leaves. */
let shared:
  | {
      dir: string;
      calls: number;
      cwd: string;
      workspace: string | undefined;
      write: typeof process.stdout.write;
    }
  | undefined;
const waiting: Array<() => void> = [];

/** One listener for every running call: a line goes to the call whose context wrote it. */
function listener(write: typeof process.stdout.write): typeof process.stdout.write {
  return ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const messages = callMessages.getStore();
    if (!messages) return write(chunk, ...(rest as []));
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    const kept: string[] = [];
    for (const line of text.split(/(?<=\n)/)) {
      const m = COMMAND.exec(line.replace(/\r?\n$/, ""));
      if (m) {
        const kind = m[1] as CacheMessage["kind"];
        messages.push({ kind, message: decode(m[2] ?? "") });
        if (kind === "debug") kept.push(line);
      } else {
        if (line.startsWith("Failed to save: ")) messages.push({ kind: "info", message: line.trim() });
        kept.push(line);
      }
    }
    return kept.length > 0 ? write(kept.join(""), ...(rest as [])) : true;
  }) as typeof process.stdout.write;
}

async function enter(dir: string): Promise<void> {
  while (shared && shared.dir !== dir) await new Promise<void>((resolve) => waiting.push(resolve));
  if (!shared) {
    const cwd = process.cwd();
    process.chdir(dir); // first: a missing dir throws before anything is changed
    const write = process.stdout.write;
    shared = { dir, calls: 0, cwd, workspace: process.env.GITHUB_WORKSPACE, write };
    process.stdout.write = listener(write.bind(process.stdout));
    process.env.GITHUB_WORKSPACE = dir;
  }
  shared.calls++;
}

function leave(): void {
  if (!shared || --shared.calls > 0) return;
  process.chdir(shared.cwd);
  process.stdout.write = shared.write;
  if (shared.workspace === undefined) delete process.env.GITHUB_WORKSPACE;
  else process.env.GITHUB_WORKSPACE = shared.workspace;
  shared = undefined;
  for (const wake of waiting.splice(0)) wake();
}

/**
 * Runs one cache call in `dir` (cwd and GITHUB_WORKSPACE) with the
 * messages it prints collected. Its warning and error annotations are held
 * back (the caller reports them); everything else still prints.
 */
export async function callCache<T>(
  dir: string,
  fn: () => Promise<T>,
): Promise<{ value: T; messages: CacheMessage[] }> {
  const messages: CacheMessage[] = [];
  await enter(dir);
  try {
    return { value: await callMessages.run(messages, fn), messages };
  } finally {
    leave();
  }
}

/** The service's own words for a failed restore, or undefined when the call was a plain hit or miss. */
export function restoreFailure(messages: readonly CacheMessage[]): string | undefined {
  const failed = messages.filter((m) => m.kind === "warning" || m.kind === "error");
  return failed.length > 0 ? failed.map((m) => m.message).join("; ") : undefined;
}

export type SaveVerdict =
  | { kind: "ok" }
  /** Another job (a matrix sibling) reserved or saved this key first: benign. */
  | { kind: "lost-race"; message: string }
  | { kind: "outage"; message: string };

/**
 * What a save's messages mean. @actions/cache turns every failed reservation
 * into "another job may be creating this cache" (an info line, "Failed to
 * save: Unable to reserve cache …"). Over v2 its debug line says whether the
 * service answered 409 already_exists (a lost race) or failed; the legacy v1
 * protocol has no such line, but appends the service's message ("More
 * details: Cache already exists. Scope: …" for a lost race).
 *
 * An entry id alone does not mean saved: over v1 the id comes from the
 * reservation, and @actions/cache still returns it when the upload or the
 * commit that follows fails (with a "Failed to save" warning or error).
 */
export function saveVerdict(entryId: number, messages: readonly CacheMessage[]): SaveVerdict {
  const failed = messages.filter((m) => m.kind === "warning" || m.kind === "error").map((m) => m.message);
  if (entryId > 0 && failed.length === 0) return { kind: "ok" };
  if (entryId > 0) return { kind: "outage", message: failed.join("; ") };
  const reserve = messages.find((m) => m.kind === "debug" && m.message.startsWith("Failed to reserve cache"));
  const said = messages.filter((m) => m.kind !== "debug").map((m) => m.message);
  const text = said.join("; ") || "the cache service did not take the entry";
  if (reserve && /\(409\)|already[ _]exists/i.test(reserve.message))
    return { kind: "lost-race", message: text };
  if (!reserve && /already exists/i.test(text)) return { kind: "lost-race", message: text };
  return { kind: "outage", message: reserve ? `${text} (${reserve.message})` : text };
}

/**
 * Why `@actions/cache` has no cache service for this step, naming the
 * variables the runner did not give it. Mirrors @actions/cache's
 * isFeatureAvailable() and getCacheServiceVersion(): cache service v2 is
 * chosen by a non-empty ACTIONS_CACHE_SERVICE_V2, except on GitHub Enterprise
 * Server (GITHUB_SERVER_URL other than github.com, *.ghe.com, *.localhost),
 * which always uses the legacy service; v2 needs ACTIONS_RESULTS_URL, the
 * legacy service (GitHub Enterprise Server, other runner implementations)
 * ACTIONS_CACHE_URL. Both need ACTIONS_RUNTIME_TOKEN, which
 * isFeatureAvailable() does not check (without it every call is refused).
 */
export function cacheServiceUnavailableReason(env: NodeJS.ProcessEnv): string {
  const head = "the Actions cache service is not available to this step";
  const has = (name: string) => Boolean(env[name]);
  const ghes = ghesHost(env.GITHUB_SERVER_URL);
  const wantsV2 = has("ACTIONS_CACHE_SERVICE_V2");
  const reasons: string[] = [];
  if (ghes !== undefined) {
    if (!has("ACTIONS_CACHE_URL")) {
      reasons.push(
        `on GitHub Enterprise Server (GITHUB_SERVER_URL is ${ghes}) @actions/cache uses the legacy cache service` +
          `${wantsV2 ? " even with ACTIONS_CACHE_SERVICE_V2 set" : ""}, which needs ACTIONS_CACHE_URL: it is not set`,
      );
    }
  } else if (wantsV2) {
    if (!has("ACTIONS_RESULTS_URL")) {
      reasons.push(
        "cache service v2 (ACTIONS_CACHE_SERVICE_V2 is set) needs ACTIONS_RESULTS_URL: it is not set" +
          (has("ACTIONS_CACHE_URL")
            ? " (ACTIONS_CACHE_URL, for the legacy service, is not used with v2)"
            : ""),
      );
    }
  } else if (!has("ACTIONS_CACHE_URL")) {
    reasons.push(
      has("ACTIONS_RESULTS_URL")
        ? "ACTIONS_RESULTS_URL is set but ACTIONS_CACHE_SERVICE_V2 is not, so @actions/cache uses the legacy " +
            "cache service, which needs ACTIONS_CACHE_URL: it is not set"
        : "neither ACTIONS_RESULTS_URL with ACTIONS_CACHE_SERVICE_V2 (cache service v2) nor ACTIONS_CACHE_URL " +
            "(the legacy cache service: GitHub Enterprise Server, other runner implementations) is set",
    );
  }
  if (!has("ACTIONS_RUNTIME_TOKEN")) {
    reasons.push("ACTIONS_RUNTIME_TOKEN, which every cache service needs, is not set");
  }
  if (reasons.length === 0) {
    const service = ghes === undefined && wantsV2 ? "ACTIONS_RESULTS_URL" : "ACTIONS_CACHE_URL";
    return `${head} (the cache client said so, although ${service} and ACTIONS_RUNTIME_TOKEN are set)`;
  }
  return `${head}: ${reasons.join("; ")}`;
}
