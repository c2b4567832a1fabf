/**
 * Which Actions cache service a step talks to, decided as @actions/cache
 * decides it (config.ts: isGhes, getCacheServiceVersion, getCacheServiceURL):
 * the legacy service on GitHub Enterprise Server or without
 * ACTIONS_CACHE_SERVICE_V2, else cache service v2.
 */

/** GITHUB_SERVER_URL's host when it is a GitHub Enterprise Server (as @actions/cache's isGhes() decides), else undefined. */
export function ghesHost(serverUrl: string | undefined): string | undefined {
  let host: string;
  try {
    host = new URL(serverUrl || "https://github.com").hostname;
  } catch {
    return undefined; // @actions/cache would throw here; not ours to decide
  }
  const upper = host.trimEnd().toUpperCase();
  const hosted = upper === "GITHUB.COM" || upper.endsWith(".GHE.COM") || upper.endsWith(".LOCALHOST");
  return hosted ? undefined : host;
}

/**
 * The service @actions/cache would call, and its base URL (the legacy one
 * falls back to ACTIONS_RESULTS_URL, as getCacheServiceURL does), when its
 * isFeatureAvailable() would say yes; else undefined.
 */
export function cacheServiceOf(env: NodeJS.ProcessEnv): { protocol: "v1" | "v2"; url: string } | undefined {
  const legacy = ghesHost(env.GITHUB_SERVER_URL) !== undefined || !env.ACTIONS_CACHE_SERVICE_V2;
  if (legacy) return env.ACTIONS_CACHE_URL ? { protocol: "v1", url: env.ACTIONS_CACHE_URL } : undefined;
  return env.ACTIONS_RESULTS_URL ? { protocol: "v2", url: env.ACTIONS_RESULTS_URL } : undefined;
}
