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
 */
import * as cache from "@actions/cache";

export const ARCHIVE_NAME = "hexclave-emulator-snapshot.hxsnap";

export interface CacheClient {
  isFeatureAvailable(): boolean;
  restoreCache(paths: string[], primaryKey: string, restoreKeys: string[]): Promise<string | undefined>;
  saveCache(paths: string[], key: string): Promise<number>;
}

export const actionsCache: CacheClient = {
  isFeatureAvailable: () => cache.isFeatureAvailable(),
  restoreCache: (paths, key, restoreKeys) => cache.restoreCache(paths, key, restoreKeys, {}, false),
  saveCache: (paths, key) => cache.saveCache(paths, key, {}, false),
};

export interface CacheMessage {
  kind: "warning" | "error" | "debug" | "info";
  message: string;
}

const COMMAND = /^::(warning|error|debug)(?: [^:]*)?::(.*)$/;
const decode = (s: string) => s.replace(/%0D/g, "\r").replace(/%0A/g, "\n").replace(/%25/g, "%");

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
  const write = process.stdout.write.bind(process.stdout);
  const workspace = process.env.GITHUB_WORKSPACE;
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
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
  const cwd = process.cwd();
  process.env.GITHUB_WORKSPACE = dir;
  process.chdir(dir);
  try {
    return { value: await fn(), messages };
  } finally {
    process.chdir(cwd);
    process.stdout.write = write;
    if (workspace === undefined) delete process.env.GITHUB_WORKSPACE;
    else process.env.GITHUB_WORKSPACE = workspace;
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
 * into "another job may be creating this cache"; its debug line says whether
 * the service answered 409 already_exists (a lost race) or failed.
 */
export function saveVerdict(entryId: number, messages: readonly CacheMessage[]): SaveVerdict {
  if (entryId > 0) return { kind: "ok" };
  const reserve = messages.find((m) => m.kind === "debug" && m.message.startsWith("Failed to reserve cache"));
  const said = messages.filter((m) => m.kind !== "debug").map((m) => m.message);
  const text = said.join("; ") || "the cache service did not take the entry";
  if (reserve && /\(409\)|already[ _]exists/i.test(reserve.message))
    return { kind: "lost-race", message: text };
  if (!reserve && /already exists/i.test(text)) return { kind: "lost-race", message: text };
  return { kind: "outage", message: reserve ? `${text} (${reserve.message})` : text };
}
