/**
 * Two cache calls at once (the image and the snapshot restore, as the main
 * step runs them): calls in one directory share cwd and GITHUB_WORKSPACE
 * until the last leaves, a call for another directory waits, and each
 * call's messages stay its own.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { actionsCache, callCache, type CacheClient } from "../../src/action/cache-client.js";
import { imageCacheKey, restoreImage, saveImage } from "../../src/action/image-cache.js";
import { restoreSnapshot, saveSnapshot } from "../../src/action/snapshot-cache.js";
import { snapshotKey } from "../../src/engine/snapshot/key.js";
import { openSnapshotStore } from "../../src/engine/snapshot/index.js";
import { useCacheService } from "../support/cache-service.js";
import { testKeyParts } from "../support/key-parts.js";

const ENV = [
  "ACTIONS_CACHE_SERVICE_V2",
  "ACTIONS_RESULTS_URL",
  "ACTIONS_RUNTIME_TOKEN",
  "RUNNER_TEMP",
  "GITHUB_WORKSPACE",
];
const parts = testKeyParts({ layoutHash: "lh-concurrent" });
const KEY = snapshotKey(parts);
const quiet = { info: () => undefined, warn: () => undefined };

describe("cache calls at once", () => {
  let root: string;
  const runner = (name: string) => {
    const temp = join(root, name, "_temp");
    const workspace = join(root, name, "repo");
    mkdirSync(temp, { recursive: true });
    mkdirSync(workspace, { recursive: true });
    process.env.RUNNER_TEMP = temp;
    process.env.GITHUB_WORKSPACE = workspace;
    return { dir: join(temp, "hexclave-emulator", "cache"), workspace, temp };
  };

  useCacheService("hxe-cache-concurrent-", ENV, (_server, r) => {
    root = r;
  });

  it("restores the image and the snapshot at once into one cache directory, and puts cwd and GITHUB_WORKSPACE back", async () => {
    // Seed both entries from one runner.
    const a = runner("seed");
    const store = join(root, "store-a");
    const w = await openSnapshotStore(store).begin(KEY);
    writeFileSync(w.path("device-state"), randomBytes(64 * 1024));
    writeFileSync(w.path("ram"), randomBytes(256 * 1024));
    await w.publish({
      manifest: {
        keyParts: parts,
        captureTimings: {},
        guest: {},
        engineVersion: "0.1.0",
      },
      files: [
        { name: "device-state", role: "device-state" },
        { name: "ram", role: "ram" },
      ],
    });
    expect(
      (
        await saveSnapshot({
          snapshotKey: KEY,
          storeRoot: store,
          dir: a.dir,
          log: quiet,
          generation: 1,
        })
      ).kind,
    ).toBe("saved");
    const image = randomBytes(2 * 1024 * 1024);
    image.writeUInt32BE(0x514649fb, 0);
    const sha256 = createHash("sha256").update(image).digest("hex");
    const tool = join(root, "seed", "tool", "stack-emulator-amd64.qcow2");
    mkdirSync(dirname(tool), { recursive: true });
    writeFileSync(tool, image);
    const key = imageCacheKey("amd64", sha256);
    expect((await saveImage({ sha256, key, path: tool, dir: a.dir, log: quiet })).kind).toBe("saved");

    // Another runner: the snapshot's call enters first; the image's call asks the
    // service only once the snapshot's call has left (the order that broke).
    const b = runner("both");
    const cwd = process.cwd();
    let snapshotDone!: () => void;
    const snapshotLeft = new Promise<void>((resolve) => (snapshotDone = resolve));
    const gated: CacheClient = {
      isFeatureAvailable: actionsCache.isFeatureAvailable,
      saveCache: actionsCache.saveCache,
      restoreCache: async (...args) => {
        await snapshotLeft;
        return actionsCache.restoreCache(...args);
      },
    };
    let snapshotEntered!: () => void;
    const inSnapshot = new Promise<void>((resolve) => (snapshotEntered = resolve));
    // Both through restoreCache (no streamed lookup): two calls in the directory at once.
    const signalling: CacheClient = {
      isFeatureAvailable: actionsCache.isFeatureAvailable,
      saveCache: actionsCache.saveCache,
      restoreCache: (...args) => {
        snapshotEntered();
        return actionsCache.restoreCache(...args);
      },
    };
    const dest = join(root, "both", "tool", "stack-emulator-amd64.qcow2");
    const snap = restoreSnapshot({
      snapshotKey: KEY,
      storeRoot: join(root, "store-b"),
      dir: b.dir,
      log: quiet,
      client: signalling,
    }).finally(snapshotDone);
    await inSnapshot;
    const img = restoreImage({
      sha256,
      arch: "amd64",
      dest,
      dir: b.dir,
      client: gated,
      log: quiet,
    });
    const [s, i] = await Promise.all([snap, img]);
    expect(s).toMatchObject({ kind: "restored", generation: 1 });
    expect(i).toMatchObject({ kind: "hit" });
    expect(readFileSync(dest).equals(image)).toBe(true);
    expect(readdirSync(b.workspace)).toEqual([]);
    expect(process.env.GITHUB_WORKSPACE).toBe(b.workspace);
    expect(process.cwd()).toBe(cwd);
  });

  it("lets a call for another directory wait until the calls in the first have left", async () => {
    const one = join(root, "dir-one");
    const two = join(root, "dir-two");
    mkdirSync(one, { recursive: true });
    mkdirSync(two, { recursive: true });
    const seen: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inFirst = new Promise<void>((resolve) => (entered = resolve));
    const first = callCache(one, async () => {
      seen.push(`first in ${process.env.GITHUB_WORKSPACE}`);
      entered();
      await held;
      seen.push(`first out ${process.env.GITHUB_WORKSPACE}`);
    });
    await inFirst;
    const second = callCache(two, async () => {
      seen.push(`second in ${process.env.GITHUB_WORKSPACE}`);
    });
    release();
    await Promise.all([first, second]);
    expect(seen).toEqual([`first in ${one}`, `first out ${one}`, `second in ${two}`]);
  });

  it("keeps each call's messages its own", async () => {
    const dir = join(root, "dir-msgs");
    mkdirSync(dir, { recursive: true });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const a = callCache(dir, async () => {
      await held;
      process.stdout.write("::warning::from a\n");
    });
    const b = callCache(dir, async () => {
      process.stdout.write("::warning::from b\n");
      release();
    });
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.messages).toEqual([{ kind: "warning", message: "from a" }]);
    expect(rb.messages).toEqual([{ kind: "warning", message: "from b" }]);
  });
});
