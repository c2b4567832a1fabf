/**
 * The Action's post step in a process of its own, as the runner runs it,
 * with a cache client whose upload throws from its internals: an exception
 * from a callback and a rejection nobody awaits, as @actions/cache's upload
 * can. Run: node --import tsx test/support/action-post-fault.ts <dir>.
 * The post step must warn and exit 0.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CacheClient } from "../../src/action/cache-client.js";
import { runPost } from "../../src/action/run-post.js";
import { MemoryStateProvider, saveEmulatorState } from "../../src/action/state.js";
import { loadConfig } from "../../src/engine/config/index.js";
import { snapshotKey } from "../../src/engine/snapshot/key.js";
import { openSnapshotStore } from "../../src/engine/snapshot/index.js";
import { testKeyParts } from "./key-parts.js";

const dir = process.argv[2];
if (!dir) throw new Error("usage: action-post-fault.ts <dir>");
const parts = testKeyParts({
  qemuVersion: "10.0.0",
  cpuModel: "max",
  cpuFingerprint: "tcg:max",
  hostPorts: { dashboard: 27450, backend: 27451, minio: 27452, inbucket: 27453, mockOauth: 27454 },
});
const key = snapshotKey(parts);
const image = join(dir, "image.qcow2");
writeFileSync(image, "");
const config = loadConfig({
  env: {},
  overrides: { home: join(dir, "home"), runDir: join(dir, "run"), image },
  cwd: dir,
  homeDir: dir,
  hostArch: "x64",
});
const w = await openSnapshotStore(config.snapshotDir).begin(key);
writeFileSync(w.path("device-state"), randomBytes(4096));
writeFileSync(w.path("ram"), randomBytes(4096));
await w.publish({
  manifest: { keyParts: parts, captureTimings: {}, guest: {}, engineVersion: "0.1.0" },
  files: [
    { name: "device-state", role: "device-state" },
    { name: "ram", role: "ram" },
  ],
});

const state = new MemoryStateProvider();
const cacheDir = join(dir, "cache");
mkdirSync(cacheDir, { recursive: true });
saveEmulatorState(state, {
  outcome: "started",
  config,
  cache: "actions",
  saveOn: "always",
  cacheDir,
  snapshotKey: key,
  saveGeneration: 1,
  captured: true,
  bootMode: "resume",
});
const throwingUpload: CacheClient = {
  isFeatureAvailable: () => true,
  restoreCache: () => Promise.resolve(undefined),
  saveCache: () => {
    setImmediate(() => {
      throw new Error("upload socket closed (test)");
    });
    void Promise.reject(new Error("upload stream rejected (test)"));
    return new Promise((resolve) => setImmediate(() => setImmediate(() => resolve(-1))));
  },
};
await runPost({ state, cache: throwingUpload, env: { GITHUB_REF: "refs/heads/main" }, earlyExit: true });
