/**
 * Actions cache keys and their generations. Entries are immutable, so an
 * entry that turns out unusable cannot be replaced under its key; instead a
 * job that may save captures anew and saves generation N+1. Every key of a
 * snapshot shares one prefix, and a restore asks for that prefix: the cache
 * answers with the newest entry that has it.
 *
 *   hexclave-emulator-v2-<snapshot key>[-s<cache-key-suffix>]-g<N>
 *
 * The suffix has no "-", so no suffix (or none) can make one prefix a prefix
 * of another's.
 */

/** Bump when the archive's meaning changes in a way the engine's key does not capture. */
export const CACHE_KEY_PREFIX = "hexclave-emulator-v2-";

/** What cache-key-suffix may hold. */
export const SUFFIX_PATTERN = /^[A-Za-z0-9._]{1,64}$/;

/** The prefix every generation of this snapshot's entry shares (ends in "-g"). */
export function cacheKeyPrefix(snapshotKey: string, suffix?: string): string {
  return `${CACHE_KEY_PREFIX}${snapshotKey}${suffix ? `-s${suffix}` : ""}-g`;
}

export const cacheKeyOf = (snapshotKey: string, suffix: string | undefined, generation: number): string =>
  `${cacheKeyPrefix(snapshotKey, suffix)}${generation}`;

/** The generation of a key made by cacheKeyOf, or undefined for any other key. */
export function generationOf(key: string, prefix: string): number | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  return /^[1-9]\d{0,5}$/.test(rest) ? Number(rest) : undefined;
}
