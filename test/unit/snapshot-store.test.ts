import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import {
  cp,
  mkdir,
  open,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  truncate,
  unlink,
  writeFile,
} from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it, vi } from "vitest";
import { EngineError } from "../../src/engine/errors.js";
import { digestBuffer } from "../../src/engine/snapshot/digest.js";
import { SNAPSHOT_FORMAT_VERSION, snapshotKey } from "../../src/engine/snapshot/key.js";
import type { SnapshotKeyParts } from "../../src/engine/snapshot/key.js";
import { openSnapshotStore } from "../../src/engine/snapshot/store.js";
import type { SnapshotStore, StoreEvent } from "../../src/engine/snapshot/store.js";
import { SnapshotCorruptError } from "../../src/engine/snapshot/verify.js";
import type { SnapshotWriter } from "../../src/engine/snapshot/writer.js";
import { REPO_ROOT } from "../support/tools.js";

const made: string[] = [];
/** A fresh directory under os.tmpdir(), removed after the file's tests. */
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
afterAll(() => Promise.all(made.map((d) => rm(d, { recursive: true, force: true }))));

function keyParts(ramMiB = 4096): SnapshotKeyParts {
  return {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    arch: "amd64",
    accelerator: "tcg",
    qemuVersion: "7.2.22",
    machineType: "pc-q35-7.2",
    cpuModel: "max",
    cpuFingerprint: "f00d",
    ramMiB,
    cpus: 2,
    imageDigest: "ab".repeat(32),
    firmwareDigest: "none",
    layoutHash: "layout-1",
    strategy: "template",
    hostPorts: { dashboard: 8101, backend: 8102, minio: 8103, inbucket: 8104, mockOauth: 8105 },
    portPrefix: "81",
  };
}

function newStore() {
  const root = join(tempDir("hxe-store-"), "snapshots");
  const events: StoreEvent[] = [];
  const store = openSnapshotStore(root, { onEvent: (e) => events.push(e) });
  return { root, store, events };
}

const draft = (parts: SnapshotKeyParts) => ({
  keyParts: parts,
  captureTimings: { migrate: 42 },
  guest: { kernel: "6.1" },
  engineVersion: "0.1.0",
});

/** The files a capture writes: small device state, a sparse RAM file, a disk layer. */
async function writeCaptureFiles(w: SnapshotWriter, ramBytes = 8 * 1024 * 1024): Promise<void> {
  await writeFile(w.path("device-state"), Buffer.from("device state ".repeat(1000)));
  const ram = await open(w.path("ram"), "w");
  await ram.truncate(ramBytes);
  await ram.write(Buffer.alloc(64 * 1024, 0x5a), 0, 64 * 1024, 1024 * 1024);
  await ram.close();
  await writeFile(w.path("disk.qcow2"), Buffer.alloc(100_000, 3));
}

const captureFiles = [
  { name: "device-state", role: "device-state" as const },
  { name: "ram", role: "ram" as const },
  { name: "disk.qcow2", role: "disk-layer" as const },
];

async function publishOne(store: SnapshotStore, parts = keyParts(), force = false) {
  const w = await store.begin(snapshotKey(parts), { force });
  await writeCaptureFiles(w);
  return w.publish({ manifest: draft(parts), files: captureFiles });
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EngineError);
  return (err as EngineError).code;
}

/** A child process that begins a writer, writes part of a capture, says "ready" and waits to be killed. */
async function crashedWriter(root: string, key: string): Promise<number> {
  const script = join(tempDir("hxe-child-"), "writer.mjs");
  const storeUrl = pathToFileURL(join(REPO_ROOT, "src/engine/snapshot/store.ts")).href;
  await writeFile(
    script,
    `import { openSnapshotStore } from ${JSON.stringify(storeUrl)};
import { writeFile } from "node:fs/promises";
const w = await openSnapshotStore(process.argv[2]).begin(process.argv[3]);
await writeFile(w.path("ram"), Buffer.alloc(4096, 1));
process.stdout.write("ready\\n");
setInterval(() => {}, 1000);
`,
  );
  const child = spawn(process.execPath, ["--import", "tsx", script, root, key], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    child.on("exit", (code) => reject(new Error(`child exited early with ${code}`)));
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  child.kill("SIGKILL");
  await exited;
  return child.pid!;
}

/** A pid that surely belongs to no process: a child that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.on("exit", resolve));
  return child.pid!;
}

describe("publishing", () => {
  it("publishes a directory with the files, a checksummed manifest and COMPLETE, and no leftovers", async () => {
    const { root, store } = newStore();
    const snap = await publishOne(store);
    expect(snap.dir).toBe(join(root, snap.key));
    expect(readdirSync(snap.dir).sort()).toEqual([
      "COMPLETE",
      "device-state",
      "disk.qcow2",
      "manifest.json",
      "ram",
    ]);
    const ram = snap.manifest.files.find((f) => f.name === "ram")!;
    expect(ram.bytes).toBe(8 * 1024 * 1024);
    expect(ram.digest).toBe(digestBuffer(readFileSync(join(snap.dir, "ram"))));
    expect(snap.manifest).toMatchObject({ strategy: "template", qemuVersion: "7.2.22", key: snap.key });
    expect(readdirSync(root).filter((n) => n.startsWith(".tmp-"))).toEqual([]);
    expect(readdirSync(join(root, ".locks"))).toEqual([]);
    expect(await store.lookup(snap.key)).toEqual(snap);
  });

  it("is atomic: a reader polling during publish never sees the key without COMPLETE and a valid manifest", async () => {
    const { root, store } = newStore();
    const parts = keyParts();
    const key = snapshotKey(parts);
    const w = await store.begin(key);
    await writeCaptureFiles(w, 256 * 1024 * 1024);
    await writeFile(w.path("ram"), randomBytes(32 * 1024 * 1024), { flag: "r+" }); // digesting takes a while: many polls
    const target = join(root, key);
    let polls = 0;
    let torn = 0;
    let done = false;
    const poll = async (): Promise<void> => {
      while (!done) {
        polls++;
        if (existsSync(target)) {
          const ok = existsSync(join(target, "COMPLETE")) && (await store.lookup(key)) !== undefined;
          if (!ok) torn++;
        }
        await new Promise((r) => setImmediate(r));
      }
    };
    const polling = poll();
    expect(await store.lookup(key)).toBeUndefined();
    await w.publish({ manifest: draft(parts), files: captureFiles });
    done = true;
    await polling;
    expect(polls).toBeGreaterThan(10);
    expect(torn).toBe(0);
    expect(await store.lookup(key)).toBeDefined();
  });

  it("leaves nothing visible when a writer is abandoned mid-capture", async () => {
    const { root, store } = newStore();
    const key = snapshotKey(keyParts());
    const w = await store.begin(key);
    await writeCaptureFiles(w);
    expect(await store.lookup(key)).toBeUndefined();
    expect(existsSync(join(root, key))).toBe(false);
    const listing = await store.list();
    expect(listing.snapshots).toEqual([]);
    expect(listing.inProgress).toMatchObject([{ key, live: true }]);
    // the writer is alive (this process), so a sweep keeps its work
    await store.sweep();
    expect(existsSync(w.dir)).toBe(true);
    await w.abort();
    expect(existsSync(w.dir)).toBe(false);
    expect(readdirSync(join(root, ".locks"))).toEqual([]);
  });

  it("refuses to publish files it was not told about, or key parts of another key, and cleans up", async () => {
    const { root, store } = newStore();
    const parts = keyParts();
    const w = await store.begin(snapshotKey(parts));
    await writeCaptureFiles(w);
    await writeFile(w.path("stray.sock"), "");
    expect(await codeOf(w.publish({ manifest: draft(parts), files: captureFiles }))).toBe(
      "SNAPSHOT_PUBLISH_INVALID",
    );
    expect(existsSync(w.dir)).toBe(false);

    const w2 = await store.begin(snapshotKey(parts)); // the failed publish released the lock
    await writeCaptureFiles(w2);
    expect(await codeOf(w2.publish({ manifest: draft(keyParts(2048)), files: captureFiles }))).toBe(
      "SNAPSHOT_KEY_MISMATCH",
    );
    expect(readdirSync(root).filter((n) => !n.startsWith("."))).toEqual([]);
  });

  it("does not replace a published snapshot unless forced", async () => {
    const { store, events } = newStore();
    const first = await publishOne(store);
    expect(await codeOf(store.begin(first.key))).toBe("SNAPSHOT_EXISTS");
    const second = await publishOne(store, keyParts(), true);
    expect(second.manifest.createdAt >= first.manifest.createdAt).toBe(true);
    expect(events).toContainEqual({ type: "replaced", key: first.key });
    expect((await store.list()).snapshots).toHaveLength(1);
  });
});

describe("locking", () => {
  it("gives a second writer for the same key SNAPSHOT_LOCKED with a hint, until the first is done", async () => {
    const { store } = newStore();
    const key = snapshotKey(keyParts());
    const first = await store.begin(key);
    const err = await store.begin(key).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe("SNAPSHOT_LOCKED");
    expect((err as EngineError).message).toContain(`pid ${process.pid}`);
    expect((err as EngineError).hint).toMatch(/wait|delete/);
    await first.abort();
    const again = await store.begin(key);
    await again.abort();
  });

  it("lets writers of different keys work at the same time", async () => {
    const { store } = newStore();
    const a = await store.begin(snapshotKey(keyParts(1024)));
    const b = await store.begin(snapshotKey(keyParts(2048)));
    await Promise.all([a.abort(), b.abort()]);
  });

  it("breaks a lock whose pid is dead on this host, with a note", async () => {
    const { root, store, events } = newStore();
    const key = snapshotKey(keyParts());
    const pid = await deadPid();
    await mkdir(join(root, ".locks"), { recursive: true });
    const holder = { pid, host: hostname(), startedAt: "2025-01-01T00:00:00.000Z", token: "deadbeef" };
    await writeFile(join(root, ".locks", `${key}.lock`), JSON.stringify(holder));
    const w = await store.begin(key);
    expect(events).toContainEqual({ type: "lock-broken", key, holder });
    await w.abort();
  });

  it("never breaks a lock a live writer holds, whatever host its note names", async () => {
    const { root, store } = newStore();
    const key = snapshotKey(keyParts());
    const first = await store.begin(key);
    const holder = { pid: 1, host: "some-other-runner", startedAt: "2025-01-01T00:00:00Z", token: "x" };
    await writeFile(join(root, ".locks", `${key}.lock`), JSON.stringify(holder));
    const err = await store.begin(key).catch((e: unknown) => e as EngineError);
    expect(err).toMatchObject({
      code: "SNAPSHOT_LOCKED",
      message: expect.stringContaining("some-other-runner"),
    });
    expect((err as EngineError).hint).toMatch(/goes when its process ends/);
    await first.abort();
  });

  it("recovers from a writer process killed mid-capture: readable store, sweep cleans, the lock is broken", async () => {
    const { root, store, events } = newStore();
    const published = await publishOne(store, keyParts(1024));
    const key = snapshotKey(keyParts());
    const pid = await crashedWriter(root, key);

    expect(await store.lookup(key)).toBeUndefined();
    expect(await store.lookup(published.key)).toBeDefined();
    const listing = await store.list();
    expect(listing.snapshots.map((s) => s.key)).toEqual([published.key]);
    expect(listing.inProgress).toMatchObject([{ key, live: false, holder: { pid } }]);

    const report = await store.sweep();
    expect(report.removed.map((r) => r.why).sort()).toEqual([
      "abandoned temporary dir",
      "lock of a dead process",
    ]);
    expect(readdirSync(root).filter((n) => n.startsWith(".tmp-"))).toEqual([]);
    expect(await store.lookup(published.key)).toBeDefined();

    // a second crash, then a new writer takes over the dead lock without a sweep
    await crashedWriter(root, key);
    const snap = await publishOne(store);
    expect(snap.key).toBe(key);
    expect(events.some((e) => e.type === "lock-broken" && e.key === key)).toBe(true);
  }, 30_000);
});

describe("reading", () => {
  it("ignores a directory without COMPLETE and a .tmp- directory, even a complete-looking one", async () => {
    const { root, store } = newStore();
    const snap = await publishOne(store);
    const tmpCopy = join(root, `.tmp-${snap.key}-0badf00d`);
    await cp(snap.dir, tmpCopy, { recursive: true });
    await store.remove(snap.key);
    expect(await store.lookup(snap.key)).toBeUndefined(); // the complete copy under .tmp- does not count
    expect((await store.list()).snapshots).toEqual([]);

    await cp(tmpCopy, snap.dir, { recursive: true });
    expect(await store.lookup(snap.key)).toBeDefined();
    await unlink(join(snap.dir, "COMPLETE"));
    expect(await store.lookup(snap.key)).toBeUndefined();
    expect(await store.examine(snap.key)).toEqual({ state: "incomplete" });
    expect((await store.list()).snapshots).toEqual([{ key: snap.key, state: "incomplete" }]);
  });

  it("treats a manifest whose key differs from its directory as invalid", async () => {
    const { root, store } = newStore();
    const snap = await publishOne(store);
    const otherKey = snapshotKey(keyParts(2048));
    await cp(snap.dir, join(root, otherKey), { recursive: true });
    expect(await store.lookup(otherKey)).toBeUndefined();
    const e = await store.examine(otherKey);
    expect(e.state).toBe("invalid");
    expect(e.state === "invalid" && e.error.message).toContain(`holds a manifest for ${snap.key}`);
  });

  it("treats an unparseable manifest as invalid, naming the problem", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    await writeFile(join(snap.dir, "manifest.json"), '{"formatVersion": 1}');
    const e = await store.examine(snap.key);
    expect(e.state === "invalid" && e.error.code).toBe("SNAPSHOT_MANIFEST_INVALID");
  });

  it("removes a snapshot", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    expect(await store.remove(snap.key)).toBe(true);
    expect(await store.lookup(snap.key)).toBeUndefined();
    expect(await store.remove(snap.key)).toBe(false);
  });

  it("rejects keys that are not a single safe path component", async () => {
    const { store } = newStore();
    for (const bad of ["../x", ".tmp-x", "a/b", ""]) {
      expect(await codeOf(store.lookup(bad))).toBe("SNAPSHOT_KEY_INVALID");
    }
  });
});

describe("verify", () => {
  it("passes an intact snapshot, fast and deep", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    expect(await store.verify(snap)).toBeUndefined();
    expect(await store.verify(snap, { deep: true })).toBeUndefined();
  });

  it("names a missing file", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    await unlink(join(snap.dir, "disk.qcow2"));
    const err = await store.verify(snap);
    expect(err).toBeInstanceOf(SnapshotCorruptError);
    expect(err?.code).toBe("SNAPSHOT_CORRUPT");
    expect(err?.problems).toMatchObject([{ file: "disk.qcow2", problem: "missing" }]);
    expect(err?.message).toContain("disk.qcow2 missing");
  });

  it("names a truncated file", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    await truncate(join(snap.dir, "ram"), 4096);
    expect((await store.verify(snap))?.problems).toMatchObject([
      { file: "ram", problem: "truncated", detail: `4096 bytes, expected ${8 * 1024 * 1024}` },
    ]);
  });

  it("passes deep a snapshot whose RAM file was copied with its holes written out as zeros", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    const ram = join(snap.dir, "ram");
    await writeFile(`${ram}.full`, await readFile(ram));
    await rename(`${ram}.full`, ram);
    expect((await stat(ram)).blocks * 512).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    expect(await store.verify(snap, { deep: true })).toBeUndefined();
  });

  it("finds, when deep, a non-zero byte written into a hole of the RAM file", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    const fh = await open(join(snap.dir, "ram"), "r+");
    await fh.write(Buffer.from([7]), 0, 1, 6 * 1024 * 1024);
    await fh.close();
    expect(await store.verify(snap)).toBeUndefined();
    const err = await store.verify(snap, { deep: true });
    expect(err?.problems).toMatchObject([{ file: "ram", problem: "checksum-mismatch" }]);
  });

  it("judges a snapshot unusable when its device state no longer matches its digest", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    expect(await store.usable(snap.key)).toMatchObject({ state: "usable" });
    const fh = await open(join(snap.dir, "device-state"), "r+");
    await fh.write(Buffer.from("X"), 0, 1, 10);
    await fh.close();
    const u = await store.usable(snap.key);
    expect(u.state).toBe("unusable");
    expect(u.state === "unusable" && u.reason).toMatch(/device-state does not match/);
  });

  it("compares digests the caller took while writing instead of reading those files again", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    const recorded = snap.manifest.files.find((f) => f.name === "ram")!.digest;
    const fh = await open(join(snap.dir, "ram"), "r+");
    await fh.write(Buffer.from([7]), 0, 1, 100); // unseen: the given digest stands for the file
    await fh.close();
    expect(await store.verify(snap, { deep: true, digests: new Map([["ram", recorded]]) })).toBeUndefined();
    const wrong = new Map([["ram", digestBuffer(Buffer.from("other"))]]);
    expect((await store.verify(snap, { digests: wrong }))?.problems).toMatchObject([
      { file: "ram", problem: "checksum-mismatch" },
    ]);
  });

  it("finds a flipped bit only when deep", async () => {
    const { store } = newStore();
    const snap = await publishOne(store);
    const fh = await open(join(snap.dir, "ram"), "r+");
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 1024 * 1024 + 100);
    b[0]! ^= 0x10;
    await fh.write(b, 0, 1, 1024 * 1024 + 100);
    await fh.close();
    expect(await store.verify(snap)).toBeUndefined();
    const err = await store.verify(snap, { deep: true });
    expect(err?.problems).toMatchObject([{ file: "ram", problem: "checksum-mismatch" }]);
  });
});

describe("quarantine", () => {
  it("moves a snapshot aside with a REASON so lookup no longer sees it", async () => {
    const { root, store, events } = newStore();
    const snap = await publishOne(store);
    const where = await store.quarantine(snap.key, "checksum mismatch in ram");
    expect(where).toBeDefined();
    expect(await store.lookup(snap.key)).toBeUndefined();
    expect(existsSync(join(root, snap.key))).toBe(false);
    expect(await readFile(join(where!, "REASON"), "utf8")).toMatch(/^checksum mismatch in ram\n/);
    expect((await store.list()).quarantined).toMatchObject([{ reason: "checksum mismatch in ram" }]);
    expect(events).toContainEqual({
      type: "quarantined",
      key: snap.key,
      reason: "checksum mismatch in ram",
      path: where,
    });
    expect(await store.quarantine(snap.key, "again")).toBeUndefined();
  });

  it("keeps only the newest few quarantine entries on sweep", async () => {
    const { root, store } = newStore();
    const reasons = ["r0", "r1", "r2", "r3", "r4"];
    // Entries are ordered by the time in their name: give each its own second.
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      for (const [i, r] of reasons.entries()) {
        vi.setSystemTime(Date.UTC(2025, 0, 1, 0, 0, i));
        const snap = await publishOne(store);
        await store.quarantine(snap.key, r);
      }
    } finally {
      vi.useRealTimers();
    }
    await store.sweep({ keepQuarantined: 3 });
    const left = await readdir(join(root, ".quarantine"));
    expect(left).toHaveLength(3);
    expect((await store.list()).quarantined.map((q) => q.reason).sort()).toEqual(["r2", "r3", "r4"]);
  });
});
