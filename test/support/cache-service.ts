/**
 * A test file's local Actions cache service: started, with a scratch root,
 * before the file's tests (and the cache client pointed at it unless asked
 * not to); closed, the root removed and the environment put back after.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { ActionsCacheServer } from "./actions-cache-server.js";
import { saveEnv } from "./env.js";

export function useCacheService(
  prefix: string,
  envNames: readonly string[],
  got: (server: ActionsCacheServer, root: string) => void,
  { pointClient = true }: { pointClient?: boolean } = {},
): void {
  const restoreEnv = saveEnv(envNames);
  let server: ActionsCacheServer | undefined;
  let root: string | undefined;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), prefix));
    server = await ActionsCacheServer.start();
    if (pointClient) Object.assign(process.env, server.clientEnv());
    got(server, root);
  });
  afterAll(async () => {
    await server?.close();
    restoreEnv();
    if (root) rmSync(root, { recursive: true, force: true });
  });
}
