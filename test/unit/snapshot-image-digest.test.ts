import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { appendFile, readFile, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EngineError } from "../../src/engine/errors.js";
import { imageDigest, prefetchImageDigest, seedImageDigest } from "../../src/engine/snapshot/image-digest.js";

const made: string[] = [];
/** A fresh directory under os.tmpdir(), removed after the file's tests. */
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
afterAll(() => Promise.all(made.map((d) => rm(d, { recursive: true, force: true }))));

function setup() {
  const dir = tempDir("hxe-digest-");
  const image = join(dir, "base.qcow2");
  const hashed: string[] = [];
  const opts = { cacheDir: join(dir, "cache"), onHash: (p: string) => hashed.push(p) };
  return { dir, image, hashed, opts };
}

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

describe("image digest", () => {
  it("is the sha256 of the file's content", async () => {
    const { image, opts } = setup();
    const content = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    await writeFile(image, content);
    expect(await imageDigest(image, opts)).toBe(sha(content));
  });

  it("is computed once: a second call answers from the cache without reading the file", async () => {
    const { image, hashed, opts } = setup();
    await writeFile(image, "image v1");
    const first = await imageDigest(image, opts);
    const second = await imageDigest(image, opts);
    expect(second).toBe(first);
    expect(hashed).toHaveLength(1);
  });

  it("reads the file once for callers that ask while it is being hashed (a prefetch, then the key)", async () => {
    const { image, hashed, opts } = setup();
    const content = Buffer.alloc(9 * 1024 * 1024, 3);
    await writeFile(image, content);
    prefetchImageDigest(image, opts);
    const [a, b] = await Promise.all([imageDigest(image, opts), imageDigest(image, opts)]);
    expect([a, b]).toEqual([sha(content), sha(content)]);
    expect(hashed).toHaveLength(1);
  });

  it("leaves a prefetch's failure to the call that needs the digest", async () => {
    const { dir, opts } = setup();
    prefetchImageDigest(join(dir, "missing.qcow2"), opts);
    await expect(imageDigest(join(dir, "missing.qcow2"), opts)).rejects.toMatchObject({
      code: "IMAGE_NOT_FOUND",
    });
  });

  it("shares the cache entry between paths that resolve to the same file", async () => {
    const { dir, image, hashed, opts } = setup();
    await writeFile(image, "image v1");
    await symlink(image, join(dir, "link.qcow2"));
    await imageDigest(image, opts);
    await imageDigest(join(dir, "link.qcow2"), opts);
    expect(hashed).toHaveLength(1);
  });

  it("recomputes when the size changes", async () => {
    const { image, hashed, opts } = setup();
    await writeFile(image, "image v1");
    await imageDigest(image, opts);
    await appendFile(image, "+more");
    expect(await imageDigest(image, opts)).toBe(sha("image v1+more"));
    expect(hashed).toHaveLength(2);
  });

  it("recomputes when only the mtime changes (same size, same inode)", async () => {
    const { image, hashed, opts } = setup();
    await writeFile(image, "image v1");
    await imageDigest(image, opts);
    const before = await stat(image);
    await writeFile(image, "image v2"); // same length, same inode
    await utimes(image, before.atime, new Date(before.mtimeMs + 5000));
    expect(await imageDigest(image, opts)).toBe(sha("image v2"));
    expect(hashed).toHaveLength(2);
  });

  it("recomputes when the file is replaced by another inode", async () => {
    const { dir, image, hashed, opts } = setup();
    const when = new Date("2025-01-01T00:00:00Z");
    await writeFile(image, "image v1");
    await utimes(image, when, when);
    await imageDigest(image, opts);
    const other = join(dir, "new.qcow2");
    await writeFile(other, "image v3");
    await utimes(other, when, when);
    const [a, b] = [await stat(image), await stat(other)];
    expect([b.size, b.mtimeMs]).toEqual([a.size, a.mtimeMs]); // only the inode differs
    expect(b.ino).not.toBe(a.ino);
    await rename(other, image);
    expect(await imageDigest(image, opts)).toBe(sha("image v3"));
    expect(hashed).toHaveLength(2);
  });

  it("treats a damaged cache file as empty and rewrites it", async () => {
    const { image, hashed, opts } = setup();
    await writeFile(image, "image v1");
    await imageDigest(image, opts);
    await writeFile(join(opts.cacheDir, "image-digests.json"), "{not json");
    expect(await imageDigest(image, opts)).toBe(sha("image v1"));
    expect(JSON.parse(await readFile(join(opts.cacheDir, "image-digests.json"), "utf8"))).toMatchObject({
      version: 1,
    });
    expect(hashed).toHaveLength(2);
  });

  it("fails with IMAGE_NOT_FOUND for a missing image", async () => {
    const { dir, opts } = setup();
    const err = await imageDigest(join(dir, "nope.qcow2"), opts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe("IMAGE_NOT_FOUND");
  });
});

describe("seeding the image digest cache", () => {
  it("answers a seeded digest without reading the file", async () => {
    const { image, hashed, opts } = setup();
    await writeFile(image, "downloaded image");
    await seedImageDigest(image, sha("downloaded image").toUpperCase(), { cacheDir: opts.cacheDir });
    expect(await imageDigest(image, opts)).toBe(sha("downloaded image"));
    expect(hashed).toEqual([]);
  });

  it("keys the seed by the file's identity: a changed file is hashed again", async () => {
    const { image, hashed, opts } = setup();
    await writeFile(image, "downloaded image");
    await seedImageDigest(image, sha("downloaded image"), { cacheDir: opts.cacheDir });
    await appendFile(image, "+changed");
    expect(await imageDigest(image, opts)).toBe(sha("downloaded image+changed"));
    expect(hashed).toHaveLength(1);
  });

  it("keeps the entries already cached for other files", async () => {
    const { dir, image, hashed, opts } = setup();
    const other = join(dir, "other.qcow2");
    await writeFile(other, "other image");
    await imageDigest(other, opts);
    await writeFile(image, "downloaded image");
    await seedImageDigest(image, sha("downloaded image"), { cacheDir: opts.cacheDir });
    expect(await imageDigest(other, opts)).toBe(sha("other image"));
    expect(await imageDigest(image, opts)).toBe(sha("downloaded image"));
    expect(hashed).toHaveLength(1);
  });

  it("refuses a digest that is not a sha256, and a file that is not there", async () => {
    const { dir, image, opts } = setup();
    await writeFile(image, "x");
    const bad = await seedImageDigest(image, "abc", { cacheDir: opts.cacheDir }).catch((e: unknown) => e);
    expect((bad as EngineError).code).toBe("CHECKSUM_INVALID");
    const missing = await seedImageDigest(join(dir, "nope.qcow2"), sha("x"), {
      cacheDir: opts.cacheDir,
    }).catch((e: unknown) => e);
    expect((missing as EngineError).code).toBe("IMAGE_NOT_FOUND");
  });
});
