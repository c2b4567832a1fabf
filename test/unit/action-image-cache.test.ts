/**
 * The image through the Actions cache, with the real @actions/cache against
 * the local cache service: a downloaded image saved by one runner is
 * restored into the tool cache of a runner laid out elsewhere; a damaged or
 * mislabelled entry leaves nothing at dest; an outage says so.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import * as cache from "@actions/cache";
import { describe, expect, it } from "vitest";
import { actionsCache, callCache, type CacheClient } from "../../src/action/cache-client.js";
import { CacheError } from "../../src/action/cache-stream.js";
import {
  IMAGE_ENTRY_NAME,
  IMAGE_MANIFEST_NAME,
  imageCacheKey,
  restoreImage,
  saveImage,
} from "../../src/action/image-cache.js";
import { EngineError } from "../../src/engine/errors.js";
import { useCacheService } from "../support/cache-service.js";
import type { ActionsCacheServer } from "../support/actions-cache-server.js";

const ENV = [
  "ACTIONS_CACHE_SERVICE_V2",
  "ACTIONS_RESULTS_URL",
  "ACTIONS_RUNTIME_TOKEN",
  "RUNNER_TEMP",
  "GITHUB_WORKSPACE",
];

/** A small qcow2-looking image: the magic, then noise. */
function qcow2(bytes = 3 * 1024 * 1024): { data: Buffer; sha256: string } {
  const data = randomBytes(bytes);
  data.writeUInt32BE(0x514649fb, 0);
  data.writeUInt32BE(3, 4);
  return { data, sha256: createHash("sha256").update(data).digest("hex") };
}

function logger() {
  const lines = { info: [] as string[], warn: [] as string[] };
  return { lines, log: { info: (m: string) => lines.info.push(m), warn: (m: string) => lines.warn.push(m) } };
}

/** What a directory holds (nothing when it was never made). */
const leftIn = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir) : []);

describe("the image in the Actions cache", () => {
  let root: string;
  let server: ActionsCacheServer;

  /** A runner's layout: its RUNNER_TEMP, GITHUB_WORKSPACE, the Action's cache dir, and a tool-cache path for the image. */
  function runner(name: string, sha256: string) {
    const temp = join(root, name, "_temp");
    const workspace = join(root, name, "repo", "repo");
    mkdirSync(temp, { recursive: true });
    mkdirSync(workspace, { recursive: true });
    process.env.RUNNER_TEMP = temp;
    process.env.GITHUB_WORKSPACE = workspace;
    const toolDir = join(
      root,
      name,
      "tool-cache",
      "hexclave-emulator-image",
      `0.0.0-${sha256.slice(0, 16)}`,
      "amd64",
    );
    return {
      dir: join(temp, "hexclave-emulator", "cache"),
      workspace,
      dest: join(toolDir, "stack-emulator-amd64.qcow2"),
      marker: `${toolDir}.complete`,
    };
  }

  /** A job that downloaded `image` into its tool cache, and its post step's save. */
  async function downloadedAndSaved(name: string, image: { data: Buffer; sha256: string }) {
    const a = runner(name, image.sha256);
    mkdirSync(dirname(a.dest), { recursive: true });
    writeFileSync(a.dest, image.data);
    const key = imageCacheKey("amd64", image.sha256);
    const s = await saveImage({ sha256: image.sha256, key, path: a.dest, dir: a.dir, log: logger().log });
    return { ...a, key, save: s };
  }

  /** Replace `key`'s entry with a genuine @actions/cache archive of these files (a mislabelled entry). */
  async function replaceWith(key: string, files: Record<string, Buffer | string>) {
    const dir = join(root, `scratch-${randomBytes(4).toString("hex")}`);
    mkdirSync(dir, { recursive: true });
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
    const scratch = `scratch-${randomBytes(4).toString("hex")}`;
    const r = await callCache(dir, () => cache.saveCache([IMAGE_ENTRY_NAME, IMAGE_MANIFEST_NAME], scratch));
    expect(r.value).toBeGreaterThan(0);
    server.replaceEntryData(key, server.entryData(scratch)!);
  }

  useCacheService("hxe-image-cache-", ENV, (s, r) => {
    server = s;
    root = r;
  });

  it("saves a downloaded image and restores it into the tool cache of a runner laid out elsewhere", async () => {
    const image = qcow2();
    const a = await downloadedAndSaved("runner-a", image);
    expect(a.save).toMatchObject({ kind: "saved", key: `hexclave-emulator-image-amd64-${image.sha256}` });
    // The tool cache's image is where it was; nothing is left staged.
    expect(readFileSync(a.dest).equals(image.data)).toBe(true);
    expect(readdirSync(a.dir)).toEqual([]);

    const b = runner("elsewhere/deeper", image.sha256);
    const { log, lines } = logger();
    const r = await restoreImage({
      sha256: image.sha256,
      arch: "amd64",
      dest: b.dest,
      marker: b.marker,
      dir: b.dir,
      log,
    });
    expect(r).toMatchObject({ kind: "hit", bytes: image.data.length, key: a.key });
    expect(lines.warn).toEqual([]);
    expect(readFileSync(b.dest).equals(image.data)).toBe(true);
    expect(existsSync(b.marker)).toBe(true);
    // Streamed straight beside dest: nothing staged in the cache directory, no partial file left.
    expect(lines.info.join("\n")).toContain(`restored the image ${a.key} streamed`);
    expect(leftIn(b.dir)).toEqual([]);
    expect(leftIn(dirname(b.dest)).filter((n) => n.includes(".partial"))).toEqual([]);
    expect(process.env.GITHUB_WORKSPACE).toBe(b.workspace);
    // One version for every runner: the entry's names are fixed and relative.
    const versions = new Set(server.entries.filter((e) => e.key === a.key).map((e) => e.version));
    expect(versions.size).toBe(1);
  });

  it("falls back to restoreCache when the service's lookup answer is not understood", async () => {
    const image = qcow2(256 * 1024);
    const a = await downloadedAndSaved("runner-fb", image);
    const b = runner("runner-fb2", image.sha256);
    const { log, lines } = logger();
    const confused: CacheClient = {
      ...actionsCache,
      lookupStreamed: () =>
        Promise.reject(new CacheError("CACHE_PROTOCOL", "the service answered 418", false)),
    };
    const r = await restoreImage({
      sha256: image.sha256,
      arch: "amd64",
      dest: b.dest,
      dir: b.dir,
      client: confused,
      log,
    });
    expect(r).toMatchObject({ kind: "hit", key: a.key });
    expect(lines.warn.join("\n")).toContain("restoring the image through @actions/cache instead");
    expect(readFileSync(b.dest).equals(image.data)).toBe(true);
    expect(leftIn(b.dir)).toEqual([]);
  });

  it("misses quietly for a digest the cache does not have", async () => {
    const image = qcow2(64 * 1024);
    const b = runner("runner-miss", image.sha256);
    const { log, lines } = logger();
    const r = await restoreImage({ sha256: image.sha256, arch: "amd64", dest: b.dest, dir: b.dir, log });
    expect(r).toMatchObject({ kind: "miss", key: imageCacheKey("amd64", image.sha256) });
    expect(lines.warn).toEqual([]);
    expect(existsSync(b.dest)).toBe(false);
  });

  it("leaves nothing at dest when the entry is truncated, and says how to get rid of it", async () => {
    const image = qcow2();
    const a = await downloadedAndSaved("runner-t", image);
    const whole = server.entryData(a.key)!;
    server.replaceEntryData(a.key, whole.subarray(0, Math.floor(whole.length / 2)));

    const b = runner("runner-t2", image.sha256);
    const { log, lines } = logger();
    const r = await restoreImage({
      sha256: image.sha256,
      arch: "amd64",
      dest: b.dest,
      marker: b.marker,
      dir: b.dir,
      log,
    });
    expect(r).toMatchObject({ kind: "unusable", key: a.key });
    expect(r.kind === "unusable" && r.reason).toMatch(/does not extract/);
    expect(existsSync(b.dest)).toBe(false);
    expect(existsSync(b.marker)).toBe(false);
    expect(leftIn(b.dir)).toEqual([]);
    expect(leftIn(dirname(b.dest))).toEqual([]);
    expect(lines.warn.join("\n")).toContain(`gh cache delete ${a.key}`);
  });

  it("leaves nothing at dest when the entry holds something else than the image its key names", async () => {
    const image = qcow2(256 * 1024);
    const a = await downloadedAndSaved("runner-g", image);
    const b = runner("runner-g2", image.sha256);
    const cases: Array<[string, Record<string, Buffer | string>, RegExp]> = [
      [
        "not a qcow2",
        {
          [IMAGE_ENTRY_NAME]: randomBytes(1000),
          [IMAGE_MANIFEST_NAME]: JSON.stringify({ sha256: image.sha256, bytes: 1000 }),
        },
        /not a qcow2/,
      ],
      [
        "shorter than its manifest says",
        {
          [IMAGE_ENTRY_NAME]: image.data.subarray(0, 4096),
          [IMAGE_MANIFEST_NAME]: JSON.stringify({ sha256: image.sha256, bytes: image.data.length }),
        },
        /has 4096 bytes/,
      ],
      [
        "another image's",
        {
          [IMAGE_ENTRY_NAME]: image.data,
          [IMAGE_MANIFEST_NAME]: JSON.stringify({ sha256: "cd".repeat(32), bytes: image.data.length }),
        },
        /manifest names sha256 cdcd/,
      ],
    ];
    for (const [what, files, reason] of cases) {
      await replaceWith(a.key, files);
      const { log, lines } = logger();
      const r = await restoreImage({
        sha256: image.sha256,
        arch: "amd64",
        dest: b.dest,
        marker: b.marker,
        dir: b.dir,
        log,
      });
      expect(r.kind, what).toBe("unusable");
      expect(r.kind === "unusable" && r.reason, what).toMatch(reason);
      expect(existsSync(b.dest), what).toBe(false);
      expect(existsSync(b.marker), what).toBe(false);
      expect(lines.warn, what).toHaveLength(1);
    }
  });

  it("treats a second save of the same digest (a matrix sibling's) as benign", async () => {
    const image = qcow2(64 * 1024);
    await downloadedAndSaved("runner-r1", image);
    const again = await downloadedAndSaved("runner-r2", image);
    expect(again.save.kind).toBe("lost-race");
  });

  it("says a failing service is an outage, for restore and for save", async () => {
    const image = qcow2(64 * 1024);
    const b = runner("runner-o", image.sha256);
    mkdirSync(dirname(b.dest), { recursive: true });
    server.fail = { twirp: 429 };
    try {
      const { log, lines } = logger();
      const r = await restoreImage({ sha256: image.sha256, arch: "amd64", dest: b.dest, dir: b.dir, log });
      expect(r.kind).toBe("unavailable");
      expect(lines.warn.join("\n")).toMatch(/outage, not a miss/);
      writeFileSync(b.dest, image.data);
      const key = imageCacheKey("amd64", image.sha256);
      const s = await saveImage({
        sha256: image.sha256,
        key,
        path: b.dest,
        dir: b.dir,
        client: actionsCache,
        log,
      });
      expect(s).toMatchObject({ kind: "not-saved", outage: true });
      expect(lines.warn.join("\n")).toContain(
        "the image was not saved to the Actions cache: the Actions cache service failed",
      );
    } finally {
      server.fail = {};
    }
  });

  it("refuses a digest that is not a sha256, and does not save what is not a qcow2", async () => {
    const b = runner("runner-bad", "0".repeat(64));
    await expect(
      restoreImage({ sha256: "nope", arch: "amd64", dest: b.dest, dir: b.dir, log: logger().log }),
    ).rejects.toThrow(EngineError);
    mkdirSync(dirname(b.dest), { recursive: true });
    writeFileSync(b.dest, "<html>an error page</html>");
    const { log, lines } = logger();
    const s = await saveImage({
      sha256: "0".repeat(64),
      key: imageCacheKey("amd64", "0".repeat(64)),
      path: b.dest,
      dir: b.dir,
      log,
    });
    expect(s).toMatchObject({ kind: "not-saved", outage: false });
    expect(lines.warn.join("\n")).toContain("is not a qcow2 image");
  });
});
