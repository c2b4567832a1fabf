/**
 * The post step can never fail the job: an upload that throws from the
 * cache client's internals (a callback's exception, a rejection nobody
 * awaits) is a warning, and the step's process exits 0. After the snapshot
 * it saves the QEMU packages and the image the main step downloaded.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APT_DIR } from "../../src/action/apt-cache.js";
import { actionsCache, type CacheClient } from "../../src/action/cache-client.js";
import { cacheKeyOf } from "../../src/action/cache-key.js";
import { imageCacheKey, restoreImage } from "../../src/action/image-cache.js";
import { runPost } from "../../src/action/run-post.js";
import {
  MemoryStateProvider,
  readEmulatorState,
  saveEmulatorState,
  type EmulatorState,
} from "../../src/action/state.js";
import { loadConfig } from "../../src/engine/config/index.js";
import { openSnapshotStore } from "../../src/engine/snapshot/index.js";
import { snapshotKey } from "../../src/engine/snapshot/key.js";
import { annotations } from "../support/action-runner.js";
import { ActionsCacheServer } from "../support/actions-cache-server.js";
import { REPO_ROOT } from "../support/tools.js";
import { testKeyParts } from "../support/key-parts.js";

const dir = mkdtempSync(join(tmpdir(), "hxe-post-fault-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the post step", () => {
  it("exits 0 with a warning when the cache upload throws from its internals", () => {
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", join(REPO_ROOT, "test/support/action-post-fault.ts"), dir],
      {
        cwd: REPO_ROOT,
        encoding: "utf8",
        env: { ...process.env, GITHUB_STEP_SUMMARY: "", GITHUB_OUTPUT: "" },
      },
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const warnings = annotations(r.stdout, "warning").join("\n");
    expect(warnings).toContain(
      "an error escaped the cache client and was ignored: upload socket closed (test)",
    );
    expect(warnings).toContain("upload stream rejected (test)");
    expect(warnings).toContain("not saved to the Actions cache");
    expect(r.stdout).toContain("::set-output name=saved::false");
  });
});

/**
 * In process, with the real @actions/cache against the local cache service:
 * after the snapshot, the post step saves the QEMU .debs and the image the
 * main step downloaded, from any branch, each failure a warning.
 */
describe("the post step's saves of the QEMU packages and the image", () => {
  const ENV = [
    "ACTIONS_CACHE_SERVICE_V2",
    "ACTIONS_RESULTS_URL",
    "ACTIONS_RUNTIME_TOKEN",
    "RUNNER_TEMP",
    "GITHUB_WORKSPACE",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_OUTPUT",
  ];
  const kept = Object.fromEntries(ENV.map((n) => [n, process.env[n]]));
  let root: string;
  let server: ActionsCacheServer;
  let jobs = 0;

  const parts = testKeyParts({
    qemuVersion: "10.0.0",
    cpuModel: "max",
    cpuFingerprint: "tcg:max",
    hostPorts: { dashboard: 27460, backend: 27461, minio: 27462, inbucket: 27463, mockOauth: 27464 },
  });

  /**
   * A job whose main step left a state: a started emulator (no VM runs), a
   * captured snapshot in the store when `captured`, and the .debs and the
   * image it downloaded. Each job is its own runner layout with its own keys.
   */
  async function job(over: Partial<EmulatorState> & { captured?: boolean } = {}) {
    const n = ++jobs;
    const dir = join(root, `job-${n}`);
    const temp = join(dir, "_temp");
    const cacheDir = join(temp, "hexclave-emulator", "cache");
    mkdirSync(cacheDir, { recursive: true });
    process.env.RUNNER_TEMP = temp;
    process.env.GITHUB_WORKSPACE = join(dir, "repo");
    mkdirSync(join(dir, "repo"), { recursive: true });
    // @actions/core keeps the summary file's path once it has written: one file, emptied per job.
    const summary = join(root, "summary.md");
    writeFileSync(summary, "");

    const image = join(dir, "tool-cache", "stack-emulator-amd64.qcow2");
    mkdirSync(dirname(image), { recursive: true });
    const data = randomBytes(512 * 1024);
    data.writeUInt32BE(0x514649fb, 0);
    writeFileSync(image, data);
    const sha256 = createHash("sha256").update(data).digest("hex");
    const config = loadConfig({
      env: {},
      overrides: { home: join(dir, "home"), runDir: join(temp, "run"), image },
      cwd: dir,
      homeDir: dir,
      hostArch: "x64",
    });
    const key = snapshotKey({ ...parts, layoutHash: `lh-${n}` });
    if (over.captured ?? true) {
      const w = await openSnapshotStore(config.snapshotDir).begin(key);
      writeFileSync(w.path("device-state"), randomBytes(4096));
      writeFileSync(w.path("ram"), randomBytes(4096));
      await w.publish({
        manifest: {
          keyParts: { ...parts, layoutHash: `lh-${n}` },
          captureTimings: {},
          guest: {},
          engineVersion: "0.1.0",
        },
        files: [
          { name: "device-state", role: "device-state" },
          { name: "ram", role: "ram" },
        ],
      });
    }
    mkdirSync(join(cacheDir, APT_DIR), { recursive: true });
    writeFileSync(join(cacheDir, APT_DIR, "qemu-utils_1%3a10.0.0_amd64.deb"), randomBytes(2048));
    const aptKey = `hexclave-emulator-apt-ubuntu24-2025010${n}.1-amd64-0123456789ab`;
    const state: EmulatorState = {
      outcome: "started",
      config,
      cache: "actions",
      saveOn: "always",
      defaultBranch: "main",
      cacheDir,
      snapshotKey: key,
      saveGeneration: 1,
      captured: true,
      bootMode: "resume",
      aptSave: { key: aptKey, dir: cacheDir },
      imageSave: { sha256, path: image, key: imageCacheKey("amd64", sha256) },
      ...over,
    };
    const provider = new MemoryStateProvider();
    saveEmulatorState(provider, state);
    return { provider, state, summary, snapshotEntry: cacheKeyOf(key, undefined, 1), aptKey, data, sha256 };
  }

  /** Runs the post step in this process; answers the warnings it printed. */
  async function post(
    provider: MemoryStateProvider,
    env: NodeJS.ProcessEnv,
    cache: CacheClient = actionsCache,
  ) {
    const out: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      out.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
      return write.call(process.stdout, chunk, ...(rest as []));
    }) as typeof process.stdout.write;
    try {
      await runPost({ state: provider, env, cache });
    } finally {
      process.stdout.write = write;
    }
    return annotations(out.join(""), "warning");
  }

  const created = () =>
    server.calls
      .filter((c) => c.op === "CreateCacheEntry" && c.status === 200)
      .map((c) => (c.detail as { key: string }).key);

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "hxe-post-saves-"));
    server = await ActionsCacheServer.start();
    Object.assign(process.env, server.clientEnv());
    process.env.GITHUB_STEP_SUMMARY = join(root, "summary.md");
    process.env.GITHUB_OUTPUT = join(root, "output");
    writeFileSync(process.env.GITHUB_OUTPUT, "");
  });
  afterAll(async () => {
    await server.close();
    for (const [n, v] of Object.entries(kept)) {
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    }
    rmSync(root, { recursive: true, force: true });
  });

  it("saves the snapshot first, then the QEMU packages and the image, and the summary says so", async () => {
    const j = await job();
    const before = created().length;
    const warnings = await post(j.provider, { GITHUB_REF: "refs/heads/main" });
    expect(warnings).toEqual([]);
    expect(created().slice(before)).toEqual([j.snapshotEntry, j.aptKey, j.state.imageSave!.key]);
    const summary = readFileSync(j.summary, "utf8");
    expect(summary).toContain("Snapshot saved: <b>yes</b>");
    expect(summary).toMatch(/QEMU packages saved: <b>yes<\/b> \(1 \.debs, 0\.0 MiB as cache entry \d+/);
    expect(summary).toMatch(/Image saved: <b>yes<\/b> \(0\.5 MiB as cache entry \d+/);

    // The image entry restores on a runner laid out elsewhere.
    const elsewhere = join(root, "elsewhere", "_temp", "hexclave-emulator", "cache");
    const dest = join(root, "elsewhere", "tool-cache", "stack-emulator-amd64.qcow2");
    const r = await restoreImage({
      sha256: j.sha256,
      arch: "amd64",
      dest,
      dir: elsewhere,
      log: { info: () => undefined, warn: () => undefined },
    });
    expect(r.kind).toBe("hit");
    expect(readFileSync(dest).equals(j.data)).toBe(true);
  });

  it("saves the QEMU packages and the image from a pull request, where the snapshot is not saved", async () => {
    const j = await job({ saveOn: "default-branch" });
    const before = created().length;
    const warnings = await post(j.provider, {
      GITHUB_REF: "refs/pull/7/merge",
      GITHUB_EVENT_NAME: "pull_request",
    });
    expect(warnings).toEqual([]);
    expect(created().slice(before)).toEqual([j.aptKey, j.state.imageSave!.key]);
    const summary = readFileSync(j.summary, "utf8");
    expect(summary).toContain("Snapshot saved: <b>no</b>");
    expect(summary).toContain("QEMU packages saved: <b>yes</b>");
    expect(summary).toContain("Image saved: <b>yes</b>");
  });

  it("turns a cache client that throws into warnings, saves nothing, and ends the step", async () => {
    const j = await job({ cache: "none", captured: false });
    const throwing: CacheClient = {
      isFeatureAvailable: () => true,
      restoreCache: () => Promise.reject(new Error("not called")),
      saveCache: () => {
        throw new Error("the upload blew up (test)");
      },
    };
    const warnings = (await post(j.provider, { GITHUB_REF: "refs/heads/main" }, throwing)).join("\n");
    expect(warnings).toContain(
      "the QEMU packages were not saved to the Actions cache: the Actions cache service failed: the upload blew up (test)",
    );
    expect(warnings).toContain(
      "the image was not saved to the Actions cache: the Actions cache service failed: the upload blew up (test)",
    );
    const summary = readFileSync(j.summary, "utf8");
    expect(summary).toContain("QEMU packages saved: <b>no</b>");
    expect(summary).toContain("Image saved: <b>no</b>");

    const broken: CacheClient = {
      ...throwing,
      isFeatureAvailable: () => {
        throw new Error("no cache here (test)");
      },
    };
    const k = await job({ cache: "none", captured: false });
    const second = (await post(k.provider, { GITHUB_REF: "refs/heads/main" }, broken)).join("\n");
    expect(second).toContain(
      "post step: could not save the QEMU packages to the Actions cache: no cache here (test)",
    );
    expect(second).toContain(
      "post step: could not save the image to the Actions cache: no cache here (test)",
    );
  });

  it("reads an older state without the new fields, and a malformed one drops only that field", async () => {
    const j = await job({ cache: "none", captured: false });
    const { aptSave: _a, imageSave: _i, ...older } = j.state;
    const provider = new MemoryStateProvider();
    provider.set("emulator", JSON.stringify(older));
    expect(readEmulatorState(provider)).toMatchObject({ outcome: "started", cacheDir: j.state.cacheDir });
    const before = server.calls.length;
    expect(await post(provider, { GITHUB_REF: "refs/heads/main" })).toEqual([]);
    expect(server.calls.length).toBe(before);
    expect(readFileSync(j.summary, "utf8")).not.toContain("QEMU packages");

    provider.set("emulator", JSON.stringify({ ...j.state, imageSave: { sha256: "not a digest", path: "" } }));
    const st = readEmulatorState(provider);
    expect(st?.imageSave).toBeUndefined();
    expect(st?.aptSave).toEqual(j.state.aptSave);
  });
});
