/**
 * The bundled Action (dist/) run the way the runner runs it, against real
 * QEMU 10, the test guest and a local Actions cache service spoken to by the
 * real @actions/cache: job 1 misses, captures and saves generation 1; job 2,
 * on a runner laid out elsewhere (other RUNNER_TEMP and GITHUB_WORKSPACE, as
 * a container job or a self-hosted runner) and on Node 24, restores and
 * resumes the same entry; a damaged entry makes a pull request cold-boot
 * (no capture, no save) and the next default-branch job capture and save
 * generation 2, which later jobs get; an entry that restores but does not
 * resume is recaptured by the post step as the next generation; a pull
 * request on a miss cold-boots (capture: when-saved); a failing cache service is an outage,
 * not a miss; a runner without /dev/kvm says tcg and why; the post step of a
 * failed job prints diagnostics. The four secrets are masked everywhere.
 */
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as cache from "@actions/cache";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAlive, readPidFile } from "../../src/engine/qemu/process.js";
import { runPaths } from "../../src/engine/lifecycle/run-dir.js";
import { stopVm } from "../../src/engine/lifecycle/stop.js";
import { PLACEHOLDER_PCK } from "../../src/engine/guest/rotation.js";
import { ARCHIVE_NAME, callCache } from "../../src/action/cache-client.js";
import { restoreSnapshot, saveSnapshot } from "../../src/action/snapshot-cache.js";
import { openSnapshotStore } from "../../src/engine/snapshot/index.js";
import { ActionsCacheServer } from "../support/actions-cache-server.js";
import {
  annotations,
  newJob,
  node24,
  runStep,
  type RunnerJob,
  type StepOptions,
  type StepResult,
} from "../support/action-runner.js";
import { qemuTargets, testGuestImage } from "../support/tools.js";

const targets = qemuTargets().filter((t) => t.label === "qemu-10");
const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** Host ports 27400-27449 are this file's. */
const ports = (base: number) => ({
  "dashboard-port": String(base),
  "backend-port": String(base + 1),
  "minio-port": String(base + 2),
  "inbucket-port": String(base + 3),
  "mock-oauth-port": String(base + 4),
});

const quiet = { info: () => undefined, warn: () => undefined };
const runDirOf = (job: RunnerJob) => join(job.temp, "hexclave-emulator", "run");
const qemuRunning = (job: RunnerJob) => {
  const pid = readPidFile(runPaths(runDirOf(job)).pidFile);
  return pid !== undefined && isAlive(pid);
};

const SECRET_OUTPUTS = [
  "publishable-client-key",
  "secret-server-key",
  "super-secret-admin-key",
  "cron-secret",
];

/** The secret is masked (::add-mask::) and appears nowhere else in the step's output. */
function expectMasked(step: StepResult, secret: string): void {
  expect(secret).toMatch(/^[0-9a-f]{64}$/);
  const lines = step.stdout.split("\n");
  expect(lines).toContain(`::add-mask::${secret}`);
  const leaks = lines.filter((l) => l !== `::add-mask::${secret}` && l.includes(secret));
  expect(leaks).toEqual([]);
  expect(step.stderr).not.toContain(secret);
  expect(step.summary).not.toContain(secret);
}

/** All four secrets of a main step are masked before anything prints them; later steps never show them. */
function expectAllMasked(main: StepResult, ...later: StepResult[]): void {
  const secrets = SECRET_OUTPUTS.map((name) => main.outputs[name] ?? "");
  expect(new Set(secrets).size).toBe(4);
  const firstMask = main.stdout.split("\n").findIndex((l) => l.startsWith("::add-mask::"));
  expect(main.stdout.split("\n").slice(0, firstMask).join("\n")).not.toContain("::group::");
  for (const secret of secrets) {
    expectMasked(main, secret);
    for (const step of later) {
      expect(step.stdout).not.toContain(secret);
      expect(step.stderr).not.toContain(secret);
      expect(step.summary).not.toContain(secret);
    }
  }
}

/**
 * A runner without /dev/kvm: node runs in a mount namespace whose /dev is a
 * tmpfs holding the usual device nodes but no kvm. (Node does the mounts and
 * then loads the step in-process: a shell in between would drop the INPUT_*
 * variables whose names have dashes.)
 */
const NO_KVM_WRAPPER = [
  "unshare",
  "-m",
  "--propagation",
  "private",
  process.execPath,
  "--input-type=module",
  "-e",
  [
    'import { execFileSync as x } from "node:child_process";',
    'import { symlinkSync, mkdirSync } from "node:fs";',
    'x("mount", ["-t", "tmpfs", "-o", "mode=755", "devtmp", "/dev"]);',
    'for (const [n, maj, min] of [["null",1,3],["zero",1,5],["full",1,7],["random",1,8],["urandom",1,9]])',
    '  x("mknod", ["-m", "666", "/dev/" + n, "c", String(maj), String(min)]);',
    'mkdirSync("/dev/shm"); x("mount", ["-t", "tmpfs", "shm", "/dev/shm"]);',
    'symlinkSync("/proc/self/fd", "/dev/fd");',
    "process.argv.splice(1, 1);",
    "await import(process.argv[1]);",
  ].join("\n"),
];

for (const target of targets) {
  describe(`the Action on ${target.label}`, () => {
    let root: string;
    let server: ActionsCacheServer;
    let images: Server;
    let imageUrl = "";
    const imageBytes = readFileSync(testGuestImage());
    let inputs: Record<string, string>;
    const measured: Record<string, { startupSeconds: string; mainWallMs: number; phases: string }> = {};
    const phasesOf = (step: StepResult) =>
      step.stdout
        .split("\n")
        .filter((l) => /^[a-z-]+: \d+\.\d\d s$/.test(l))
        .map((l) => l.replace(/ s$/, ""))
        .join(", ");

    beforeAll(async () => {
      root = mkdtempSync(join(tmpdir(), "hxe-action-"));
      // Blob URLs on *.blob.core.windows.net: @actions/cache downloads with the Azure SDK, as on a runner.
      server = await ActionsCacheServer.start({ blobHost: "azure" });
      images = createServer((req, res) => {
        if (req.url === "/download/emulator-test/stack-emulator-amd64.qcow2") {
          res.writeHead(200, { "content-length": String(imageBytes.length) });
          return void res.end(imageBytes);
        }
        if (req.url === "/download/emulator-test/stack-emulator-amd64.qcow2.sha256") {
          return void res.end(`${sha256(imageBytes)}  stack-emulator-amd64.qcow2\n`);
        }
        res.writeHead(404).end();
      });
      await new Promise<void>((r) => images.listen(0, "127.0.0.1", r));
      imageUrl = `http://127.0.0.1:${(images.address() as { port: number }).port}/download/emulator-test/stack-emulator-amd64.qcow2`;
      inputs = {
        image: imageUrl,
        qemu: target.binary,
        ram: "512",
        cpus: "1",
        "ready-timeout": "120",
        ...ports(27400),
      };
    });

    afterAll(async () => {
      for (const job of ["runner", "runner-2", "job4", "job5", "job6", "job7", "job8"]) {
        const dir = join(root, job, "work", "_temp", "hexclave-emulator", "run");
        await stopVm(runPaths(dir), 5).catch(() => undefined);
      }
      console.log(`[action timings] ${JSON.stringify(measured, null, 1)}`);
      await server.close();
      await new Promise<void>((r) => images.close(() => r()));
      rmSync(root, { recursive: true, force: true });
    });

    // Job 1 and job 3 on one runner root; job 2 on another (other RUNNER_TEMP and
    // GITHUB_WORKSPACE: the cache entry's version must not depend on them), sharing
    // the first one's tool cache.
    const runner = () => join(root, "runner");
    const otherRunner = () => join(root, "runner-2");

    /**
     * A job's main step, the checks on it while the VM runs, then its post
     * step, which runs whatever the checks said (post-if: always()).
     */
    async function runJob(
      job: RunnerJob,
      main: StepOptions,
      whileUp: (main: StepResult) => Promise<void> | void,
      post: StepOptions = {},
    ): Promise<{ main: StepResult; post: StepResult }> {
      const m = await runStep(job, "main", main);
      let p: StepResult | undefined;
      try {
        await whileUp(m);
      } finally {
        p = await runStep(job, "post", { inputs: main.inputs, state: m.state, ...post });
      }
      return { main: m, post: p };
    }

    /**
     * Job 1 on the shared runner root, run once by whichever test needs it
     * first: what it observed while its VM was up, and its post step. Its
     * checks are job 1's test's; later jobs only need its cache entry.
     */
    let firstJob:
      | Promise<{
          job: RunnerJob;
          main: StepResult;
          post: StepResult;
          qemuUpAfterMain: boolean;
          createCallsBeforePost: number;
          cacheKey: string;
        }>
      | undefined;
    const ensureFirstJob = () =>
      (firstJob ??= (async () => {
        const job = newJob(runner(), { env: server.clientEnv() });
        let qemuUpAfterMain = false;
        let createCallsBeforePost = 0;
        const { main, post } = await runJob(job, { inputs }, () => {
          qemuUpAfterMain = qemuRunning(job);
          createCallsBeforePost = server.calls.filter((c) => c.op === "CreateCacheEntry").length;
        });
        const cacheKey = main.outputs["cache-key"] ?? "";
        return { job, main, post, qemuUpAfterMain, createCallsBeforePost, cacheKey };
      })());
    /** The key of the snapshot job 1 saved to the cache (job 1 is run if it has not been). */
    const ensureSavedSnapshot = async () => {
      const { cacheKey, main, post } = await ensureFirstJob();
      if (!server.entries.find((e) => e.key === cacheKey)?.finalized)
        throw new Error(`job 1 saved no cache entry ${cacheKey}:\n${main.stdout}\n${post.stdout}`);
      return cacheKey;
    };

    it("job 1: misses the cache, cold-boots, captures, resumes; its post step stops the VM and saves", async () => {
      const { job, main, post, qemuUpAfterMain, createCallsBeforePost, cacheKey } = await ensureFirstJob();
      expect(main.code, main.stdout).toBe(0);
      expect(main.outputs["cache-hit"]).toBe("false");
      expect(main.outputs["cache-state"]).toBe("miss");
      expect(main.outputs["saved"]).toBe("pending");
      expect(cacheKey).toBe(`hexclave-emulator-v2-${main.outputs["snapshot-key"] ?? ""}-g1`);
      expect(main.outputs["boot-mode"]).toBe("resume");
      expect(main.outputs["fallback-reason"]).toBe("");
      expect(main.outputs["qemu-version"]).toMatch(/^10\./);
      expect(main.outputs["accelerator"]).toBe("tcg");
      expect(main.outputs["snapshot-key"]).toMatch(/^hxe-v\d+-amd64-tcg-/);
      expect(main.stdout).toContain("downloading " + imageUrl);
      expect(main.stdout).toMatch(/sha256 [0-9a-f]{64} verified/);
      expect(main.stdout).toContain("::group::capture-boot");
      expect(main.summary).toContain("Phase timings");
      expectAllMasked(main, post);
      expect(main.stdout).toContain("resume-timeout 180 s (tcg)");
      measured.job1 = {
        startupSeconds: main.outputs["startup-seconds"] ?? "",
        mainWallMs: main.ms,
        phases: phasesOf(main),
      };
      // The step's process exited by itself (code 0, not the runner's kill), QEMU did not:
      // the VM outlives the step.
      expect(qemuUpAfterMain).toBe(true);
      expect(createCallsBeforePost).toBe(0);
      expect(post.code, post.stdout).toBe(0);
      expect(qemuRunning(job)).toBe(false);
      expect(post.stdout).toMatch(/stopped the VM \((agent|acpi)\)/);
      expect(post.stdout).toContain(`saving ${cacheKey}`);
      expect(annotations(post.stdout, "warning")).toEqual([]);
      expect(post.outputs["saved"]).toBe("true");
      expect(post.summary).toContain("Snapshot saved: <b>yes</b>");
      // The image it downloaded (and verified) is kept in the Actions cache for runners without it.
      const imageKey = `hexclave-emulator-image-amd64-${sha256(imageBytes)}`;
      expect(server.entries.find((e) => e.key === imageKey)?.finalized).toBe(true);
      const entry = server.entries.find((e) => e.key === cacheKey);
      expect(entry?.finalized).toBe(true);
      expect(server.entryData(cacheKey)?.length).toBeGreaterThan(0);
    });

    it("job 2: another runner layout, on Node 24, restores the same entry, resumes, rotates; the outputs answer", async () => {
      const cacheKey = await ensureSavedSnapshot();
      const before = server.calls.length;
      const job = newJob(otherRunner(), {
        env: { ...server.clientEnv(), RUNNER_TOOL_CACHE: join(runner(), "tool-cache") },
      });
      expect(job.temp).not.toBe(join(runner(), "work", "_temp"));
      const node = node24();
      let mainStep: StepResult | undefined;
      const { post } = await runJob(
        job,
        { inputs: { ...inputs, "host-share": "cwd" }, node },
        async (main) => {
          mainStep = main;
          expect(main.code, main.stdout).toBe(0);
          expect(main.outputs["cache-hit"]).toBe("true");
          expect(main.outputs["cache-state"]).toBe("hit");
          expect(main.outputs["saved"]).toBe("false");
          expect(main.outputs["boot-mode"]).toBe("resume");
          expect(main.outputs["fallback-reason"]).toBe("");
          expect(main.stdout).toContain("from the tool cache");
          // Streamed straight into the store, not through @actions/cache's download and tar.
          expect(main.stdout).toContain(`restored ${cacheKey} streamed`);
          measured.job2 = {
            startupSeconds: main.outputs["startup-seconds"] ?? "",
            mainWallMs: main.ms,
            phases: phasesOf(main),
          };
          const calls = server.calls.slice(before).map((c) => `${c.op} ${c.status}`);
          // The streamed restore's ranged GETs of the signed blob URL (through the proxy), not the Azure SDK's download.
          expect(calls).toContain("blob:GET 206");
          expect(calls).not.toContain("blob:HEAD 200");

          const pck = main.outputs["publishable-client-key"] ?? "";
          expect(pck).toMatch(/^[0-9a-f]{64}$/);
          expect(pck).not.toBe(PLACEHOLDER_PCK);
          expect(annotations(main.stdout, "warning")).toEqual([]);
          const backend = main.outputs["backend-url"] ?? "";
          expect(backend).toBe("http://localhost:27401");
          expect((await fetch(`${backend}/health?db=1`)).status).toBe(200);
          expect((await fetch(`${main.outputs["dashboard-url"]}/handler/sign-in`)).status).toBe(200);
          expect((await fetch(`${main.outputs["minio-url"]}/minio/health/live`)).status).toBe(200);
          expect((await fetch(`${main.outputs["inbucket-url"]}/`)).status).toBe(200);
          const fingerprint = (await (await fetch(`${backend}/internal/pck-fingerprint`)).text()).trim();
          expect(fingerprint).toBe(sha256(pck));
          expect(main.summary).toContain("resumed from a snapshot");
          expect(main.summary).toContain(`restored ${cacheKey}`);
        },
        { node },
      );
      expect(post.code, post.stdout).toBe(0);
      expectAllMasked(mainStep!, post);
      expect(qemuRunning(job)).toBe(false);
      expect(post.stdout).toContain("this job did not capture a snapshot");
      expect(server.calls.slice(before).filter((c) => c.op === "CreateCacheEntry")).toEqual([]);
    });

    /** Runs `fn` with the cache service's environment in this process, for @actions/cache calls of the test's own. */
    async function withCacheEnv<T>(job: RunnerJob, fn: () => Promise<T>): Promise<T> {
      const env = { ...server.clientEnv(), RUNNER_TEMP: job.temp, GITHUB_WORKSPACE: job.workspace };
      const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
      Object.assign(process.env, env);
      try {
        return await fn();
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      }
    }

    it("job 3: a damaged entry: a pull request cold-boots without saving; the next default-branch job saves generation 2, which later jobs get", async () => {
      const cacheKey = await ensureSavedSnapshot();
      const good = server.entryData(cacheKey)!;
      // Fetch the entry with @actions/cache as a job would, damage the archive in
      // the middle, and store that under the same key.
      const scratch = newJob(join(root, "scratch"));
      const dir = join(scratch.temp, "hexclave-emulator", "cache");
      mkdirSync(dir, { recursive: true });
      await withCacheEnv(scratch, async () => {
        const got = await callCache(dir, () => cache.restoreCache([ARCHIVE_NAME], cacheKey));
        expect(got.value).toBe(cacheKey);
        const archive = join(dir, ARCHIVE_NAME);
        const bytes = readFileSync(archive);
        for (let i = 0; i < 64; i++) {
          const at = Math.floor(bytes.length / 2) + i * 4099;
          bytes[at] = (bytes[at] ?? 0) ^ 0xff;
        }
        writeFileSync(archive, bytes);
        expect(
          (await callCache(dir, () => cache.saveCache([ARCHIVE_NAME], "scratch-damaged"))).value,
        ).toBeGreaterThan(0);
      });
      const damaged = server.entryData("scratch-damaged")!;
      server.replaceEntryData(cacheKey, damaged);
      const g2 = cacheKey.replace(/-g1$/, "-g2");

      try {
        // A pull request may not save: it cold-boots and leaves the entry alone.
        const pr = newJob(runner(), { env: server.clientEnv(), ref: "refs/pull/1/merge" });
        let before = server.calls.length;
        const prJob = await runJob(pr, { inputs }, async (main) => {
          expect(main.code, main.stdout).toBe(0);
          expect(main.outputs["cache-hit"]).toBe("false");
          expect(main.outputs["cache-state"]).toBe("unusable");
          expect(main.outputs["boot-mode"]).toBe("cold");
          expect(main.outputs["fallback-reason"]).toMatch(/unusable.*cold boot without capture/);
          expect(main.outputs["saved"]).toBe("false");
          expect(annotations(main.stdout, "warning").join("\n")).toMatch(/is unusable/);
          expect((await fetch(`${main.outputs["backend-url"]}/health?db=1`)).status).toBe(200);
        });
        expect(prJob.post.code, prJob.post.stdout).toBe(0);
        expect(qemuRunning(pr)).toBe(false);
        expect(server.calls.slice(before).filter((c) => c.op === "CreateCacheEntry")).toEqual([]);
        expect(server.entryData(cacheKey)?.equals(damaged)).toBe(true);

        // The default branch may save: it captures anew and saves generation 2.
        const onMain = newJob(runner(), { env: server.clientEnv() });
        before = server.calls.length;
        const mainJob = await runJob(onMain, { inputs }, (main) => {
          expect(main.code, main.stdout).toBe(0);
          expect(main.outputs["cache-state"]).toBe("unusable");
          expect(main.outputs["boot-mode"]).toBe("resume");
          expect(main.outputs["fallback-reason"]).toMatch(/unusable/);
          expect(main.outputs["cache-key"]).toBe(g2);
          expect(main.outputs["saved"]).toBe("pending");
        });
        expect(mainJob.post.code, mainJob.post.stdout).toBe(0);
        expect(mainJob.post.stdout).toContain(`saving ${g2}`);
        const created = server.calls.slice(before).filter((c) => c.op === "CreateCacheEntry");
        expect(created.map((c) => (c.detail as { key?: string }).key)).toEqual([g2]);
        expect(server.entries.find((e) => e.key === g2)?.finalized).toBe(true);

        // A later job's restore asks for the prefix and gets the newest generation.
        const later = newJob(join(root, "scratch"));
        const outcome = await withCacheEnv(later, () =>
          restoreSnapshot({
            snapshotKey: mainJob.main.outputs["snapshot-key"] ?? "",
            storeRoot: join(later.temp, "store"),
            dir: join(later.temp, "cache"),
            log: { info: () => undefined, warn: () => undefined },
          }),
        );
        expect(outcome).toMatchObject({ kind: "restored", generation: 2, key: g2 });
      } finally {
        server.replaceEntryData(cacheKey, good);
      }
    });

    it("an entry that restores but does not resume: the job cold-boots; its post step captures afresh and saves the next generation", async () => {
      await ensureSavedSnapshot();
      const { main: first } = await ensureFirstJob();
      const snapshotKey = first.outputs["snapshot-key"] ?? "";
      // An entry whose every checksum holds but whose device state QEMU refuses:
      // job 1's snapshot re-published with its migration stream damaged, saved
      // under a suffix of its own as generation 1.
      const scratch = newJob(join(root, "scratch-unresumable"));
      const good = join(scratch.temp, "good");
      const bad = join(scratch.temp, "bad");
      const suffix = "unresumable";
      await withCacheEnv(scratch, async () => {
        const got = await restoreSnapshot({
          snapshotKey,
          storeRoot: good,
          dir: join(scratch.temp, "c1"),
          log: quiet,
        });
        expect(got.kind).toBe("restored");
        const snap = (await openSnapshotStore(good).lookup(snapshotKey))!;
        const w = await openSnapshotStore(bad).begin(snapshotKey);
        for (const f of snap.manifest.files) copyFileSync(join(snap.dir, f.name), w.path(f.name));
        const device = snap.manifest.files.find((f) => f.role === "device-state")!;
        const bytes = readFileSync(w.path(device.name));
        bytes.fill(0x5a, 64, Math.min(bytes.length, 64 + 65536));
        writeFileSync(w.path(device.name), bytes);
        const { keyParts, captureTimings, guest, engineVersion } = snap.manifest;
        await w.publish({
          manifest: { keyParts, captureTimings, guest, engineVersion },
          files: snap.manifest.files.map((f) => ({ name: f.name, role: f.role })),
        });
        const saved = await saveSnapshot({
          snapshotKey,
          suffix,
          generation: 1,
          storeRoot: bad,
          dir: join(scratch.temp, "c2"),
          log: quiet,
        });
        expect(saved.kind).toBe("saved");
      });
      const g1 = `hexclave-emulator-v2-${snapshotKey}-s${suffix}-g1`;
      const g2 = g1.replace(/-g1$/, "-g2");
      expect(server.entries.find((e) => e.key === g1)?.finalized).toBe(true);

      const job = newJob(join(root, "job7"), { env: server.clientEnv() });
      const before = server.calls.length;
      const { post } = await runJob(
        job,
        { inputs: { ...inputs, "cache-key-suffix": suffix } },
        async (main) => {
          expect(main.code, main.stdout).toBe(0);
          expect(main.outputs["cache-hit"]).toBe("false");
          expect(main.outputs["boot-mode"]).toBe("cold");
          expect(main.outputs["fallback-reason"]).toMatch(/resume failed/);
          expect(main.outputs["cache-key"]).toBe(g2);
          expect(main.outputs["saved"]).toBe("pending");
          expect((await fetch(`${main.outputs["backend-url"]}/health?db=1`)).status).toBe(200);
        },
      );
      expect(post.code, post.stdout).toBe(0);
      expect(post.stdout).toContain("the restored entry did not resume: capturing a fresh snapshot");
      expect(post.stdout).toContain(`saving ${g2}`);
      expect(post.outputs["saved"]).toBe("true");
      const created = server.calls.slice(before).filter((c) => c.op === "CreateCacheEntry");
      expect(created.map((c) => (c.detail as { key?: string }).key)).toEqual([g2]);
      expect(qemuRunning(job)).toBe(false);

      // The next job restores generation 2 and resumes it.
      const next = newJob(join(root, "job7"), { env: server.clientEnv() });
      const again = await runJob(next, { inputs: { ...inputs, "cache-key-suffix": suffix } }, (main) => {
        expect(main.code, main.stdout).toBe(0);
        expect(main.outputs["cache-hit"]).toBe("true");
        expect(main.outputs["boot-mode"]).toBe("resume");
        expect(main.stdout).toContain(`restored ${g2} streamed`);
      });
      expect(again.post.code, again.post.stdout).toBe(0);
    });

    it("a pull request on a miss cold-boots without capturing (capture: when-saved); capture: always captures for itself", async () => {
      await ensureSavedSnapshot(); // job 1 also saved the image this job restores
      const fresh = { ...inputs, ...ports(27440), "cache-key-suffix": "prmiss" };
      const pr = newJob(join(root, "job8"), { env: server.clientEnv(), ref: "refs/pull/2/merge" });
      const before = server.calls.length;
      const cold = await runJob(pr, { inputs: fresh }, async (main) => {
        expect(main.code, main.stdout).toBe(0);
        expect(main.outputs["cache-state"]).toBe("miss");
        expect(main.outputs["boot-mode"]).toBe("cold");
        expect(main.outputs["fallback-reason"]).toMatch(/capture: when-saved/);
        expect(main.outputs["saved"]).toBe("false");
        expect(main.stdout).not.toContain("::group::capture-boot");
        // A runner with an empty tool cache: the image comes from the Actions cache, not the server.
        expect(main.stdout).toContain("from the Actions cache");
        expect(main.stdout).not.toContain("downloading ");
        // Fetched beside the snapshot lookup (its key names the verified digest), awaited before the boot.
        expect(main.stdout).toContain("the image is fetched while the snapshot is restored");
        const groups = ["image", "cache-restore", "image-fetch", "cold-boot"].map((g) =>
          main.stdout.indexOf(`::group::${g}\n`),
        );
        expect(
          groups.every((at) => at >= 0),
          main.stdout,
        ).toBe(true);
        expect([...groups].sort((a, b) => a - b)).toEqual(groups);
        expect(main.outputs["secret-server-key"]).toMatch(/^[0-9a-f]{64}$/);
        expect((await fetch(`${main.outputs["backend-url"]}/health?db=1`)).status).toBe(200);
      });
      expect(cold.post.code, cold.post.stdout).toBe(0);
      const pr2 = newJob(join(root, "job8"), { env: server.clientEnv(), ref: "refs/pull/2/merge" });
      const captured = await runJob(pr2, { inputs: { ...fresh, capture: "always" } }, (main) => {
        expect(main.code, main.stdout).toBe(0);
        expect(main.outputs["cache-state"]).toBe("miss");
        expect(main.outputs["boot-mode"]).toBe("resume");
        expect(main.stdout).toContain("::group::capture-boot");
        expect(main.outputs["saved"]).toBe("false");
      });
      expect(captured.post.code, captured.post.stdout).toBe(0);
      expect(captured.post.stdout).toContain("not saving the captured snapshot");
      expect(server.calls.slice(before).filter((c) => c.op === "CreateCacheEntry")).toEqual([]);
    });

    it("a cache service that fails (rate-limited on restore, unreachable on save) is an outage, not a miss; the job succeeds", async () => {
      const job = newJob(join(root, "job4"), { env: server.clientEnv() });
      const failing = { ...inputs, ...ports(27410) };
      server.fail = { twirp: 429 };
      const unreachable = { ACTIONS_RESULTS_URL: "http://127.0.0.1:9/" };
      const { post } = await runJob(
        job,
        { inputs: failing },
        async (main) => {
          server.fail = {};
          expect(main.code, main.stdout).toBe(0);
          expect(main.outputs["cache-hit"]).toBe("false");
          expect(main.outputs["cache-state"]).toBe("unavailable");
          expect(main.outputs["boot-mode"]).toBe("resume"); // captured, then resumed
          const warned = annotations(main.stdout, "warning").join("\n");
          // The streamed lookups' own words: the service's status and its message.
          expect(warned).toContain("answered 429: the cache service is failing (test)");
          expect(warned).toContain("outage, not a miss");
          expect(annotations(main.stdout, "error")).toEqual([]);
          expect(main.summary).toContain("<b>unavailable</b>");
          expect((await fetch(`${main.outputs["backend-url"]}/health?db=1`)).status).toBe(200);
        },
        { env: unreachable },
      );
      server.fail = {};
      expect(post.code, post.stdout).toBe(0);
      expect(qemuRunning(job)).toBe(false);
      expect(annotations(post.stdout, "warning").join("\n")).toMatch(
        /not saved to the Actions cache: the Actions cache service failed/,
      );
      expect(post.summary).toContain("Snapshot saved: <b>no</b> (the Actions cache service failed");
    });

    it("a runner without /dev/kvm runs under TCG and says why", async () => {
      const job = newJob(join(root, "job5"), { env: server.clientEnv() });
      const noKvmInputs = { ...inputs, ...ports(27420), cache: "none", snapshot: "never" };
      const { post } = await runJob(job, { inputs: noKvmInputs, wrap: NO_KVM_WRAPPER }, (main) => {
        expect(main.code, main.stdout + main.stderr).toBe(0);
        expect(main.outputs["backend-url"]).toBe("http://localhost:27421");
        expect(main.outputs["accelerator"]).toBe("tcg");
        expect(main.outputs["accelerator-reason"]).toBe("/dev/kvm is missing or not writable");
        expect(main.outputs["boot-mode"]).toBe("cold");
        expect(main.stdout).toContain("/dev/kvm does not exist");
        expect(main.summary).toContain("/dev/kvm does not exist");
        expect(main.summary).toContain("<b>tcg</b>");
      });
      expect(post.code, post.stdout).toBe(0);
      expect(qemuRunning(job)).toBe(false);
    });

    it("the post step of a failed job prints the services' status and the serial log, then stops the VM", async () => {
      const job = newJob(join(root, "job6"), { env: server.clientEnv() });
      const failedInputs = { ...inputs, ...ports(27430), cache: "none", snapshot: "never" };
      const { main, post } = await runJob(
        job,
        { inputs: failedInputs },
        (m) => {
          expect(m.code, m.stdout).toBe(0);
        },
        { jobStatus: "failure" },
      );
      expect(post.code, post.stdout).toBe(0);
      // The diagnostics (guest console, QEMU's log, status) show none of the four secrets.
      expectAllMasked(main, post);
      expect(post.stdout).toContain("::group::Emulator diagnostics (the job's status is failure)");
      expect(post.stdout).toMatch(/✓ backend \(127\.0\.0\.1:27431 GET \/health\?db=1\)/);
      expect(post.stdout).toContain("serial.log (the guest's console) ---");
      expect(post.stdout).toMatch(/stopped the VM/);
      expect(qemuRunning(job)).toBe(false);
    });
  });
}
