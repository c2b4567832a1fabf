/**
 * The QEMU packages through the Actions cache, as vmactions-style actions
 * keep theirs: a GitHub-hosted Ubuntu runner has no QEMU, and `apt-get
 * update` + `apt-get install` costs tens of seconds in every job.
 *
 * - Key: `hexclave-emulator-apt-<ImageOS>-<ImageVersion>-<dpkg arch>-<hash>`.
 *   The runner image's preinstalled packages decide which .debs apt
 *   downloads (the dependency closure), and ImageVersion names exactly that
 *   set. Without ImageOS/ImageVersion (not a hosted runner image) the key
 *   falls back to /etc/os-release's ID and VERSION_ID, which does not see
 *   what else is installed: the log says so, and a cached set that does not
 *   fit falls back to apt-get. The hash covers the sorted package list, the
 *   install options and os-release's ID and VERSION_ID (a container job that
 *   inherited the host's ImageOS keys apart).
 * - Miss: `apt-get install` into `<dir>/apt` (Dir::Cache::archives), after
 *   `apt-get update` unless the runner's package lists already offer every
 *   package (then update only when that install fails, e.g. a 404 for a
 *   superseded version). The post step saves the .debs: the main step does
 *   not spend its time uploading.
 * - Hit: `dpkg -i` the restored .debs, no `apt-get update`. A dpkg failure
 *   (a dependency problem) is a warning, then the miss path with
 *   `--fix-broken`, and no save (entries are immutable).
 * - The cache is optional: an outage is a warning and plain apt-get.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { describeError } from "../engine/index.js";
import { actionsCache, type CacheClient } from "./cache-client.js";
import { deleteHint, restoreEntry, saveEntry, type EntrySave } from "./image-cache.js";
import type { Logger } from "./snapshot-cache.js";

/** The .debs' directory, relative to the Action's cache directory. */
export const APT_DIR = "apt";
/** The entry's paths list: one fixed glob relative to the cache directory (its version hashes it). */
export const APT_PATTERN = `${APT_DIR}/*.deb`;
/** Bump to key every entry afresh when what is cached, or how it is installed, changes. */
const APT_FORMAT = "apt-v1";

/** What the post step needs to save the .debs: state.aptSave. */
export interface AptSave {
  key: string;
  /** The Action's cache directory: the .debs are `<dir>/apt/*.deb`. */
  dir: string;
}

export interface AptHost {
  env: NodeJS.ProcessEnv;
  osRelease(): string;
  /** As root (directly or `sudo -n`), with DEBIAN_FRONTEND=noninteractive; rejects with its stderr. */
  asRoot(argv: string[], timeoutMs: number): Promise<void>;
  /** As this user; answers stdout; rejects with its stderr. */
  run(argv: string[], timeoutMs: number): Promise<string>;
  log(message: string): void;
  warn(message: string): void;
  /** No client or no dir: plain apt-get, as before the cache. */
  cache?: CacheClient | undefined;
  cacheDir?: string | undefined;
}

export interface AptReport {
  /**
   * hit: installed from cached .debs; miss: apt-get, the .debs kept for the
   * post step; fallback: the cached .debs did not install, apt-get did;
   * unavailable: the cache service was out, apt-get; off: no cache given.
   */
  cache: "hit" | "miss" | "fallback" | "unavailable" | "off";
  key?: string | undefined;
  /** Set when the post step should save the .debs. */
  save?: AptSave | undefined;
  /** The time split: cache restore, apt-get update (when it ran), the install (dpkg or apt-get). */
  ms: { restore?: number; update?: number; install: number };
  /** The .debs restored (hit) or downloaded (miss), and their size. */
  debs: number;
  bytes: number;
  /** One phrase for the log and the summary. */
  note: string;
}

const osField = (osRelease: string, name: string): string =>
  new RegExp(`^${name}=(.*)$`, "m")
    .exec(osRelease)?.[1]
    ?.trim()
    .replace(/^["']|["']$/g, "") ?? "";
const keyPart = (s: string): string => s.replace(/[^A-Za-z0-9._]+/g, "_") || "unknown";

/** The entry's key, and what it stands on (for the log). */
export function aptCacheKey(
  packages: readonly string[],
  host: { env: NodeJS.ProcessEnv; osRelease: string; dpkgArch: string },
): { key: string; basis: string } {
  const id = osField(host.osRelease, "ID");
  const version = osField(host.osRelease, "VERSION_ID");
  const hash = createHash("sha256")
    .update([APT_FORMAT, "--no-install-recommends", `${id} ${version}`, ...[...packages].sort()].join("\n"))
    .digest("hex")
    .slice(0, 12);
  const { ImageOS: imageOs, ImageVersion: imageVersion } = host.env;
  const [image, basis] =
    imageOs && imageVersion
      ? [`${keyPart(imageOs)}-${keyPart(imageVersion)}`, `the runner image ${imageOs} ${imageVersion}`]
      : [
          `${keyPart(id)}-${keyPart(version)}`,
          `/etc/os-release ${id} ${version}: there is no ImageOS/ImageVersion (not a GitHub-hosted runner image), so the key does not see which packages this runner has installed; a cached set that does not fit falls back to apt-get`,
        ];
  return { key: `hexclave-emulator-apt-${image}-${keyPart(host.dpkgArch)}-${hash}`, basis };
}

/** The packages `apt-cache policy` shows a Candidate for. */
export function candidatesIn(policy: string, packages: readonly string[]): Set<string> {
  const found = new Set<string>();
  let current: string | undefined;
  for (const line of policy.split("\n")) {
    const head = /^(\S+?)(?::[a-z0-9]+)?:$/.exec(line);
    if (head) current = head[1];
    const cand = /^\s+Candidate:\s*(\S+)/.exec(line);
    if (cand && current && cand[1] !== "(none)" && packages.includes(current)) found.add(current);
  }
  return found;
}

const secs = (ms: number | undefined) => `${((ms ?? 0) / 1000).toFixed(1)} s`;
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
const firstLine = (err: unknown) =>
  describeError(err)
    .split("\n")
    .find((l) => l.trim()) ?? "";

function debsIn(dir: string): { files: string[]; bytes: number } {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".deb"));
  } catch {
    return { files: [], bytes: 0 };
  }
  const files = names.sort().map((n) => join(dir, n));
  return { files, bytes: files.reduce((sum, f) => sum + statSync(f).size, 0) };
}

/** Install `packages` (QEMU's), from the Actions cache when it has them. Throws when apt-get fails. */
export async function installPackages(packages: readonly string[], host: AptHost): Promise<AptReport> {
  const client = host.cache;
  const dir = host.cacheDir;
  if (!client || !dir) {
    const t = await aptInstall(packages, host, {});
    return { cache: "off", ms: t, debs: 0, bytes: 0, note: aptNote(t) };
  }
  const archives = join(dir, APT_DIR);
  const { key, basis } = aptCacheKey(packages, {
    env: host.env,
    osRelease: host.osRelease(),
    dpkgArch: await dpkgArch(host),
  });
  host.log(`QEMU packages: cache key ${key} (${basis})`);
  try {
    rmSync(archives, { recursive: true, force: true });
  } catch {
    // A half download apt left (its partial/ is _apt's): apt resumes it.
  }
  mkdirSync(archives, { recursive: true });

  const r = await restoreEntry(client, dir, [APT_PATTERN], key);
  const restore = r.ms;
  if (r.kind === "unavailable") {
    if (r.outage) host.warn(`${r.reason}: installing QEMU with apt-get (an outage, not a miss)`);
    else host.log(`${r.reason}: installing QEMU with apt-get`);
    const t = await aptInstall(packages, host, {});
    return { cache: "unavailable", key, ms: { restore, ...t }, debs: 0, bytes: 0, note: aptNote(t) };
  }
  let failed: string | undefined;
  if (r.kind === "hit") {
    const { files, bytes } = debsIn(archives);
    if (files.length === 0) failed = "the entry holds no .deb files";
    else {
      const t0 = performance.now();
      try {
        // --refuse-downgrade: a package this runner has in a newer version stays
        // (dpkg skips the older .deb); only an os-release key can hit that.
        await host.asRoot(["dpkg", "-i", "--refuse-downgrade", ...files], 300_000);
        const install = Math.round(performance.now() - t0);
        return {
          cache: "hit",
          key,
          ms: { restore, install },
          debs: files.length,
          bytes,
          note: `from the Actions cache (${key}: ${files.length} .debs, ${mib(bytes)}; restore ${secs(restore)}, dpkg ${secs(install)})`,
        };
      } catch (err) {
        failed = `dpkg -i failed: ${firstLine(err)}`;
      }
    }
  } else if (r.kind === "damaged") {
    failed = `its archive does not extract: ${r.reason}`;
  }
  if (failed !== undefined) {
    host.warn(
      `the cached QEMU packages ${key} did not install (${failed}): installing with apt-get instead, without saving; if this repeats, ${deleteHint(key)}`,
    );
  }
  // On a fallback apt reuses whichever restored .debs it can verify.
  const t = await aptInstall(packages, host, { archives, fixBroken: failed !== undefined });
  const { files, bytes } = debsIn(archives);
  if (failed !== undefined) {
    return { cache: "fallback", key, ms: { restore, ...t }, debs: files.length, bytes, note: aptNote(t) };
  }
  const save = files.length > 0 ? { key, dir } : undefined;
  const kept = save
    ? `; ${files.length} .debs (${mib(bytes)}) kept for the post step to save as ${key}`
    : "; nothing was downloaded, nothing to save";
  return {
    cache: "miss",
    key,
    save,
    ms: { restore, ...t },
    debs: files.length,
    bytes,
    note: aptNote(t) + kept,
  };
}

function aptNote(t: { update?: number; install: number }): string {
  const update =
    t.update === undefined
      ? "no apt-get update (the package lists had every package)"
      : `update ${secs(t.update)}`;
  return `with apt-get (${update}, install ${secs(t.install)})`;
}

async function dpkgArch(host: AptHost): Promise<string> {
  try {
    return (await host.run(["dpkg", "--print-architecture"], 10_000)).trim() || fallbackArch();
  } catch {
    return fallbackArch();
  }
}
const fallbackArch = () => (process.arch === "x64" ? "amd64" : process.arch);

/** Whether the runner's package lists already offer every package (then update can wait). */
async function listsOffer(packages: readonly string[], host: AptHost): Promise<boolean> {
  try {
    const policy = await host.run(["apt-cache", "policy", ...packages], 60_000);
    return candidatesIn(policy, packages).size === packages.length;
  } catch {
    return false;
  }
}

/**
 * apt-get install, with apt-get update first unless the lists already offer
 * every package; then an install that fails gets one update and one retry.
 */
async function aptInstall(
  packages: readonly string[],
  host: AptHost,
  opts: { archives?: string; fixBroken?: boolean },
): Promise<{ update?: number; install: number }> {
  const argv = [
    "apt-get",
    "install",
    "-y",
    "-q",
    "--no-install-recommends",
    ...(opts.fixBroken ? ["--fix-broken"] : []),
    ...(opts.archives
      ? ["-o", `Dir::Cache::archives=${opts.archives}`, "-o", "APT::Keep-Downloaded-Packages=true"]
      : []),
    ...packages,
  ];
  const timed = async (fn: () => Promise<void>) => {
    const t0 = performance.now();
    await fn();
    return Math.round(performance.now() - t0);
  };
  const update = () => timed(() => host.asRoot(["apt-get", "update", "-q"], 300_000));
  const install = () => timed(() => host.asRoot(argv, 600_000));
  if (await listsOffer(packages, host)) {
    try {
      return { install: await install() };
    } catch (err) {
      host.log(
        `apt-get install failed with the runner's package lists (${firstLine(err)}): apt-get update, then again`,
      );
    }
  }
  const u = await update();
  return { update: u, install: await install() };
}

export type AptSaveOutcome = EntrySave & { debs?: number; bytes?: number };

/** The post step's save of the .debs the main step downloaded. Never throws for the service's sake. */
export async function saveAptDebs(
  opts: AptSave & { client?: CacheClient | undefined; log: Logger },
): Promise<AptSaveOutcome> {
  const { files, bytes } = debsIn(join(opts.dir, APT_DIR));
  if (files.length === 0) {
    const reason = `no .debs in ${join(opts.dir, APT_DIR)}`;
    opts.log.warn(`the QEMU packages were not saved to the Actions cache: ${reason}`);
    return { kind: "not-saved", ms: 0, reason, outage: false };
  }
  const r = await saveEntry(opts.client ?? actionsCache, opts.dir, [APT_PATTERN], opts.key);
  if (r.kind === "lost-race")
    opts.log.info(`another job saved ${opts.key} first (${r.reason}): nothing to do`);
  else if (r.kind === "not-saved")
    opts.log.warn(`the QEMU packages were not saved to the Actions cache: ${r.reason}`);
  return { ...r, debs: files.length, bytes };
}
