import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, existsSync, mkdtempSync, readdirSync } from "node:fs";
import { open, readFile, rm, stat, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EngineError } from "../../src/engine/errors.js";
import {
  encodeExtent,
  encodeFileEnd,
  encodeFileStart,
  encodeHeader,
  encodeTrailer,
  readArchive,
} from "../../src/engine/snapshot/archive-format.js";
import { digestBuffer } from "../../src/engine/snapshot/digest.js";
import { SNAPSHOT_FORMAT_VERSION, snapshotKey } from "../../src/engine/snapshot/key.js";
import type { SnapshotKeyParts } from "../../src/engine/snapshot/key.js";
import { openSnapshotStore } from "../../src/engine/snapshot/store.js";
import { packSnapshot, unpackSnapshot, unpackSnapshotStream } from "../../src/engine/snapshot/transport.js";
import { SnapshotCorruptError } from "../../src/engine/snapshot/verify.js";
import { NEEDS_SEEK, seekDataWorks as probeSeekData } from "../support/seek-data.js";

const made: string[] = [];
/** A fresh directory under os.tmpdir(), removed after the file's tests. */
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
afterAll(() => Promise.all(made.map((d) => rm(d, { recursive: true, force: true }))));

const MiB = 1024 * 1024;
const RAM_BYTES = 256 * MiB;
const SMALL = 16 * MiB;

const seekDataWorks = await probeSeekData();

function keyParts(): SnapshotKeyParts {
  return {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    arch: "amd64",
    accelerator: "kvm",
    qemuVersion: "10.0.13",
    machineType: "pc-q35-10.0",
    cpuModel: "host",
    cpuFingerprint: "c0ffee",
    ramMiB: 256,
    cpus: 2,
    imageDigest: "12".repeat(32),
    firmwareDigest: "none",
    layoutHash: "lh",
    strategy: "template",
    hostPorts: { dashboard: 8101, backend: 8102, minio: 8103, inbucket: 8104, mockOauth: 8105 },
    portPrefix: "81",
  };
}

/** The content digest from the whole file as read (holes as zeros), by another path than the engine's. */
const digestOf = async (path: string) => digestBuffer(await readFile(path));

/**
 * A published snapshot whose RAM file is 256 MiB apparent (by default) with 4
 * MiB of data (random and text, some runs not page aligned), plus small
 * device state. The failure tests use a smaller one: they are about errors.
 */
async function publishedSnapshot(ramBytes = RAM_BYTES) {
  const base = tempDir("hxe-transport-");
  const store = openSnapshotStore(join(base, "a"));
  const parts = keyParts();
  const w = await store.begin(snapshotKey(parts));
  const ram = await open(w.path("ram"), "w");
  await ram.truncate(ramBytes);
  const text = Buffer.alloc(MiB, "guest page: hello hexclave ");
  await ram.write(randomBytes(MiB), 0, MiB, 0);
  await ram.write(text, 0, MiB, ramBytes / 8 + MiB);
  await ram.write(randomBytes(MiB), 0, MiB, ramBytes / 2 + 12_345); // straddles blocks, unaligned
  await ram.write(text, 0, MiB - 1, ramBytes - MiB + 1); // up to the very last byte
  await ram.close();
  await writeFile(w.path("device-state"), randomBytes(200_000));
  const snap = await w.publish({
    manifest: { keyParts: parts, captureTimings: {}, guest: {}, engineVersion: "0.1.0" },
    files: [
      { name: "device-state", role: "device-state" },
      { name: "ram", role: "ram" },
    ],
  });
  return { base, snap, dest: join(base, "b", snap.key) };
}

async function failure(p: Promise<unknown>): Promise<EngineError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EngineError);
  return err as EngineError;
}

interface ArchivedFile {
  name: string;
  size: number;
  extents: { offset: number; data: Buffer }[];
}

/**
 * Decompress `archive`, let `edit` change its files, frame and compress them
 * again into `out`: a tampered archive whose framing and zstd checksums are
 * all in order, so only the content digests can tell.
 */
async function rewriteArchive(archive: string, out: string, edit: (files: ArchivedFile[]) => void) {
  const raw = execFileSync("zstd", ["-q", "-d", "-c", archive], { maxBuffer: 1 << 30 });
  const files: ArchivedFile[] = [];
  for await (const ev of readArchive(
    (async function* () {
      yield raw;
    })(),
  )) {
    if (ev.type === "file") files.push({ name: ev.name, size: ev.apparentSize, extents: [] });
    else if (ev.type === "data")
      files.at(-1)!.extents.push({ offset: ev.offset, data: Buffer.from(ev.data) });
  }
  edit(files);
  const frames = [encodeHeader(files.length)];
  let total = 0;
  for (const f of files) {
    frames.push(encodeFileStart(f.name, f.size));
    let bytes = 0;
    for (const e of [...f.extents].sort((a, b) => a.offset - b.offset)) {
      frames.push(encodeExtent(e.offset, e.data.length), e.data);
      bytes += e.data.length;
    }
    frames.push(encodeFileEnd(bytes));
    total += bytes;
  }
  frames.push(encodeTrailer(files.length, total));
  await writeFile(
    out,
    execFileSync("zstd", ["-q", "-c"], { input: Buffer.concat(frames), maxBuffer: 1 << 30 }),
  );
}

/** The archive's file `name`. */
const fileIn = (files: ArchivedFile[], name: string) => files.find((f) => f.name === name)!;

/** Nothing at the destination, no temporary dir, no lock left behind (a directory not there holds nothing). */
function expectNothingLeft(dest: string): void {
  expect(existsSync(dest)).toBe(false);
  const root = join(dest, "..");
  const entries = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);
  expect(entries(root).filter((n) => n !== ".locks")).toEqual([]);
  expect(entries(join(root, ".locks"))).toEqual([]);
}

describe("snapshot transport", () => {
  it("round-trips a sparse RAM file: same content, holes kept, archive a fraction of the apparent size", async () => {
    const { base, snap, dest } = await publishedSnapshot(RAM_BYTES);
    const archive = join(base, "snap.hxs.zst");
    const packed = await packSnapshot(snap.dir, archive);
    expect(packed.files).toBe(3); // manifest.json + 2
    expect(packed.apparentBytes).toBeGreaterThan(RAM_BYTES);
    expect(packed.dataBytes).toBeLessThan(5 * MiB);
    expect(packed.compressedBytes).toBe((await stat(archive)).size);
    expect(packed.compressedBytes).toBeLessThan(RAM_BYTES / 40);

    const { snapshot, stats } = await unpackSnapshot(archive, dest);
    expect(snapshot.dir).toBe(dest);
    expect(snapshot.manifest).toEqual(snap.manifest);
    expect(stats).toMatchObject({
      files: 3,
      dataBytes: packed.dataBytes,
      compressedBytes: packed.compressedBytes,
    });
    for (const f of snap.manifest.files) expect(await digestOf(join(dest, f.name))).toBe(f.digest);

    const ram = await stat(join(dest, "ram"));
    expect(ram.size).toBe(RAM_BYTES);
    const allocated = ram.blocks * 512;
    expect(allocated).toBeLessThan(8 * MiB); // ~4 MiB of data, not 256 MiB of written zeros
    expect(allocated).toBeGreaterThanOrEqual(4 * MiB - 4096);

    const store = openSnapshotStore(join(base, "b"));
    expect(await store.lookup(snap.key)).toBeDefined();
    expect(await store.verify(snapshot, { deep: true })).toBeUndefined();
  });

  it.skipIf(!seekDataWorks)(`packs a sparse RAM file without reading its holes ${NEEDS_SEEK}`, async () => {
    const { base, snap } = await publishedSnapshot(RAM_BYTES);
    const packed = await packSnapshot(snap.dir, join(base, "snap.hxs.zst"), { level: 1 });
    expect(packed.holeMap).toBe("seek");
    expect(packed.readBytes).toBeLessThan(8 * MiB);
  });

  it("packs plain (compression none) for a carrier that compresses, and unpacks that from a file or a stream", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.plain");
    const packed = await packSnapshot(snap.dir, archive, { compression: "none" });
    // The framing's own size: the data and a few bytes per extent, no compression.
    expect(packed.compressedBytes).toBe((await stat(archive)).size);
    expect(packed.compressedBytes).toBeGreaterThan(packed.dataBytes);
    expect(packed.compressedBytes).toBeLessThan(packed.dataBytes + 64 * 1024);

    const fromFile = await unpackSnapshot(archive, dest);
    expect(fromFile.snapshot.manifest).toEqual(snap.manifest);
    const streamed = join(base, "c", snap.key);
    const fromStream = await unpackSnapshotStream(
      createReadStream(archive, { highWaterMark: 65_536 }),
      streamed,
      {
        label: "the test's stream",
      },
    );
    expect(fromStream.stats).toMatchObject({
      dataBytes: packed.dataBytes,
      compressedBytes: packed.compressedBytes,
    });
    for (const f of snap.manifest.files) expect(await digestOf(join(streamed, f.name))).toBe(f.digest);
    expect(
      await openSnapshotStore(join(base, "c")).verify(fromStream.snapshot, { deep: true }),
    ).toBeUndefined();
  });

  it("publishes nothing from a stream that breaks off, and rethrows the stream's own error", async () => {
    const { base, snap } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.plain");
    await packSnapshot(snap.dir, archive, { compression: "none" });
    const whole = await readFile(archive);
    const broken = new Error("the download broke off (test)");
    async function* halfThenFail() {
      yield whole.subarray(0, whole.length / 2);
      throw broken;
    }
    const dest = join(base, "d", snap.key);
    const err = await unpackSnapshotStream(halfThenFail(), dest, { label: "x" }).catch((e: unknown) => e);
    expect(err).toBe(broken);
    expectNothingLeft(dest);

    // Cut short without an error: the archive's own framing says so.
    async function* half() {
      yield whole.subarray(0, whole.length / 2);
    }
    const cut = await failure(unpackSnapshotStream(half(), dest, { label: "the cut stream" }));
    expect(cut.code).toBe("SNAPSHOT_ARCHIVE_INVALID");
    expect(cut.message).toContain("the cut stream");
    expect(cut.message).toContain("ends early");
    expectNothingLeft(dest);
  });

  it("produces the same snapshot when the holes are found by reading every byte", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL * 2);
    const packed = await packSnapshot(snap.dir, join(base, "all.zst"), { seekHoles: false, level: 1 });
    expect(packed.holeMap).toBe("read-all");
    expect(packed.readBytes).toBe(packed.apparentBytes);
    const { snapshot } = await unpackSnapshot(join(base, "all.zst"), dest);
    for (const f of snap.manifest.files) expect(await digestOf(join(snapshot.dir, f.name))).toBe(f.digest);
    expect((await stat(join(dest, "ram"))).blocks * 512).toBeLessThan(8 * MiB);
  });

  it("makes a fully written file with zero pages sparse on the way through", async () => {
    const base = tempDir("hxe-transport-");
    const store = openSnapshotStore(join(base, "a"));
    const parts = keyParts();
    const w = await store.begin(snapshotKey(parts));
    const content = Buffer.alloc(16 * MiB); // written zeros: allocated on disk
    randomBytes(MiB).copy(content, 5 * MiB);
    await writeFile(w.path("ram"), content);
    const snap = await w.publish({
      manifest: { keyParts: parts, captureTimings: {}, guest: {}, engineVersion: "0.1.0" },
      files: [{ name: "ram", role: "ram" }],
    });
    expect((await stat(join(snap.dir, "ram"))).blocks * 512).toBeGreaterThanOrEqual(16 * MiB);
    await packSnapshot(snap.dir, join(base, "a.zst"));
    const { snapshot } = await unpackSnapshot(join(base, "a.zst"), join(base, "b", snap.key));
    const ram = await stat(join(snapshot.dir, "ram"));
    expect(ram.blocks * 512).toBeLessThan(2 * MiB);
    expect(await digestOf(join(snapshot.dir, "ram"))).toBe(snap.manifest.files[0]!.digest);
  });

  it("rejects a corrupted archive with a clear error and leaves nothing at the destination", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.zst");
    await packSnapshot(snap.dir, archive);
    const fh = await open(archive, "r+");
    const size = (await fh.stat()).size;
    await fh.write(randomBytes(64), 0, 64, Math.floor(size / 2));
    await fh.close();
    const err = await failure(unpackSnapshot(archive, dest));
    expect(err.code).toBe("SNAPSHOT_ARCHIVE_INVALID");
    expect(err.message).toContain(archive);
    expect(err.hint).toBeTruthy();
    expectNothingLeft(dest);
  });

  it("rejects a truncated archive and leaves nothing at the destination", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.zst");
    await packSnapshot(snap.dir, archive);
    const bytes = await readFile(archive);
    await writeFile(archive, bytes.subarray(0, Math.floor(bytes.length * 0.7)));
    expect((await failure(unpackSnapshot(archive, dest))).code).toBe("SNAPSHOT_ARCHIVE_INVALID");
    expectNothingLeft(dest);
  });

  it("rejects a file that is not an archive: not zstd, or zstd of something else", async () => {
    const { base, snap } = await publishedSnapshot(SMALL);
    const dest = join(base, "b", snap.key);
    const junk = join(base, "junk");
    await writeFile(junk, "hello, not zstd at all");
    expect((await failure(unpackSnapshot(junk, dest))).message).toMatch(/zstd/i);
    expectNothingLeft(dest);
    execFileSync("zstd", ["-q", "-f", junk, "-o", `${junk}.zst`]);
    expect((await failure(unpackSnapshot(`${junk}.zst`, dest))).message).toMatch(/bad magic/);
    expectNothingLeft(dest);
    expect((await failure(unpackSnapshot(join(base, "missing.zst"), dest))).message).toMatch(
      /does not exist/,
    );
  });

  it("rejects an archive whose data does not match its manifest checksums", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL);
    const fh = await open(join(snap.dir, "ram"), "r+"); // silent corruption after publish: same size
    await fh.write(Buffer.from([0xff]), 0, 1, MiB + 10);
    await fh.close();
    const archive = join(base, "snap.zst");
    await packSnapshot(snap.dir, archive);
    const err = await failure(unpackSnapshot(archive, dest));
    expect(err.code).toBe("SNAPSHOT_ARCHIVE_INVALID");
    expect(err.message).toMatch(/ram checksum-mismatch/);
    expectNothingLeft(dest);
  });

  it("publishes nothing from an archive whose RAM data was changed after packing", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.zst");
    await packSnapshot(snap.dir, archive);
    await rewriteArchive(archive, archive, (files) => {
      const extent = fileIn(files, "ram").extents[3]!;
      extent.data[100]! ^= 0x01;
    });
    const err = await failure(unpackSnapshot(archive, dest));
    expect(err.code).toBe("SNAPSHOT_ARCHIVE_INVALID");
    expect(err.message).toMatch(/ram checksum-mismatch/);
    expect(err.cause).toBeInstanceOf(SnapshotCorruptError);
    expect((err.cause as SnapshotCorruptError).problems).toMatchObject([
      { file: "ram", problem: "checksum-mismatch" },
    ]);
    expectNothingLeft(dest);
  });

  it("publishes nothing from an archive that adds data where the RAM file has a hole", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.zst");
    await packSnapshot(snap.dir, archive);
    await rewriteArchive(archive, archive, (files) => {
      fileIn(files, "ram").extents.push({ offset: 5 * MiB + 77, data: Buffer.from([1]) });
    });
    const err = await failure(unpackSnapshot(archive, dest));
    expect(err.code).toBe("SNAPSHOT_ARCHIVE_INVALID");
    expect(err.message).toMatch(/ram checksum-mismatch/);
    expectNothingLeft(dest);
  });

  it("publishes nothing from an archive whose manifest names another digest for a file", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.zst");
    await packSnapshot(snap.dir, archive);
    await rewriteArchive(archive, archive, (files) => {
      const m = fileIn(files, "manifest.json");
      const manifest = JSON.parse(Buffer.concat(m.extents.map((e) => e.data)).toString("utf8"));
      manifest.files[0].digest = digestBuffer(Buffer.from("something else"));
      const text = Buffer.from(JSON.stringify(manifest));
      Object.assign(m, { size: text.length, extents: [{ offset: 0, data: text }] });
    });
    const err = await failure(unpackSnapshot(archive, dest));
    expect(err.code).toBe("SNAPSHOT_ARCHIVE_INVALID");
    expect(err.message).toMatch(/device-state checksum-mismatch/);
    expectNothingLeft(dest);
  });

  it("refuses to unpack under a different key than the archive's manifest", async () => {
    const { base, snap } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.zst");
    await packSnapshot(snap.dir, archive);
    const dest = join(
      base,
      "b",
      `hxe-v${SNAPSHOT_FORMAT_VERSION}-amd64-kvm-q10.0.13-000000000000000000000000`,
    );
    expect((await failure(unpackSnapshot(archive, dest))).message).toMatch(/manifest is for/);
    expectNothingLeft(dest);
  });

  it("unpacks an archive reached through a symlink", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.zst");
    await packSnapshot(snap.dir, archive);
    await symlink(archive, join(base, "link.zst"));
    const { snapshot } = await unpackSnapshot(join(base, "link.zst"), dest);
    expect(snapshot.manifest).toEqual(snap.manifest);
  });

  it("does not replace a published snapshot unless forced", async () => {
    const { base, snap, dest } = await publishedSnapshot(SMALL);
    const archive = join(base, "snap.zst");
    await packSnapshot(snap.dir, archive);
    await unpackSnapshot(archive, dest);
    expect((await failure(unpackSnapshot(archive, dest))).code).toBe("SNAPSHOT_EXISTS");
    const { snapshot } = await unpackSnapshot(archive, dest, { force: true });
    expect(snapshot.dir).toBe(dest);
  });

  it("refuses to pack a directory that was never published", async () => {
    const { base, snap } = await publishedSnapshot(SMALL);
    await unlink(join(snap.dir, "COMPLETE"));
    expect((await failure(packSnapshot(snap.dir, join(base, "x.zst")))).code).toBe("SNAPSHOT_INCOMPLETE");
    expect(existsSync(join(base, "x.zst"))).toBe(false);
  });
});
