import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  statSync,
  watch,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { progressPrinter, pullImage, releaseAssetUrl } from "../../src/engine/image/pull.js";

const image = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
const good = createHash("sha256").update(image).digest("hex");

describe("pull", () => {
  let server: Server;
  let base = "";
  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = req.url ?? "";
      if (url === "/r/good/stack-emulator-amd64.qcow2.sha256")
        return res.end(`${good}  stack-emulator-amd64.qcow2\n`);
      if (url === "/r/bad/stack-emulator-amd64.qcow2.sha256") return res.end(`${"0".repeat(64)}  x\n`);
      if (url.endsWith(".qcow2") && !url.includes("missing")) {
        res.setHeader("content-length", String(image.length));
        if (url.includes("short")) return res.end(image.subarray(0, 1000)); // lies about its length
        return res.end(image);
      }
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const addr = server.address() as { port: number };
    base = `http://127.0.0.1:${addr.port}/r`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const dest = () => join(mkdtempSync(join(tmpdir(), "hxe-pull-")), "images", "stack-emulator-amd64.qcow2");

  it("downloads the release asset, verifies its checksum and publishes it by rename", async () => {
    const d = dest();
    const seen: number[] = [];
    const r = await pullImage(releaseAssetUrl("good", "amd64", base), d, (p) => seen.push(p.received));
    expect(r).toMatchObject({ bytes: image.length, sha256: good, checksumVerified: true });
    expect(readFileSync(d).equals(image)).toBe(true);
    expect(existsSync(`${d}.part`)).toBe(false);
    expect(seen.at(-1)).toBe(image.length);
  });

  it("accepts a release without a checksum and says so", async () => {
    const r = await pullImage(releaseAssetUrl("plain", "amd64", base), dest());
    expect(r.checksumVerified).toBe(false);
  });

  it("refuses a checksum mismatch and leaves nothing behind", async () => {
    const d = dest();
    await expect(pullImage(releaseAssetUrl("bad", "amd64", base), d)).rejects.toMatchObject({
      code: "CHECKSUM_MISMATCH",
    });
    expect(existsSync(d) || existsSync(`${d}.part`)).toBe(false);
  });

  it("refuses a truncated download", async () => {
    const d = dest();
    await expect(pullImage(`${base}/short/stack-emulator-amd64.qcow2`, d)).rejects.toThrow();
    expect(existsSync(d) || existsSync(`${d}.part`)).toBe(false);
  });

  it("names the fix for a missing asset", async () => {
    await expect(pullImage(`${base}/missing/stack-emulator-amd64.qcow2`, dest())).rejects.toMatchObject({
      code: "DOWNLOAD_FAILED",
      hint: expect.stringContaining("release tag"),
    });
  });

  it("rejects a tag that is not a tag", () => {
    expect(() => releaseAssetUrl("../x", "amd64")).toThrow(/release tag/);
  });

  it("prints progress every 10 % when not on a terminal", () => {
    const out: string[] = [];
    const p = progressPrinter((s) => out.push(s), false);
    for (let i = 0; i <= 100; i += 5) p({ received: i, total: 100 });
    expect(out).toHaveLength(11);
  });
});

/** Names beside the image that a pull leaves only while it runs. */
const partsBeside = (d: string): string[] =>
  readdirSync(dirname(d)).filter((n) => n.startsWith(`${basename(d)}.part`));

/** Resolves when a file whose name starts with `prefix` appears in `dir` (or is there already). */
function appears(dir: string, prefix: string): Promise<string> {
  return new Promise((resolve) => {
    const found = () => readdirSync(dir).find((n) => n.startsWith(prefix));
    const watcher = watch(dir, () => {
      const name = found();
      if (name) {
        watcher.close();
        resolve(name);
      }
    });
    const now = found();
    if (now) {
      watcher.close();
      resolve(now);
    }
  });
}

describe("two pulls of one image at once (two Pods on a node)", () => {
  let server: Server;
  let base = "";
  let imageGets = 0;
  /** Called when the server has sent half of an image; the rest goes when it resolves. */
  let halfway: () => Promise<void> = () => Promise.resolve();
  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = req.url ?? "";
      if (url === "/r/good/stack-emulator-amd64.qcow2.sha256")
        return res.end(`${good}  stack-emulator-amd64.qcow2\n`);
      if (url.endsWith(".qcow2")) {
        imageGets++;
        res.setHeader("content-length", String(image.length));
        const half = Math.floor(image.length / 2);
        res.write(image.subarray(0, half));
        void halfway().then(() => res.end(image.subarray(half)));
        return;
      }
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}/r`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const dest = () => {
    const d = join(mkdtempSync(join(tmpdir(), "hxe-pull2-")), "images", "stack-emulator-amd64.qcow2");
    mkdirSync(dirname(d), { recursive: true });
    return d;
  };

  for (const release of ["good", "plain"]) {
    const how =
      release === "good" ? "verified by the release's checksum" : "from a release without a checksum";
    it(`downloads once into a private temporary file and the second reuses it (${how})`, async () => {
      const d = dest();
      imageGets = 0;
      const modes: number[] = [];
      halfway = async () => {
        // The download is under way: its temporary file is its own, readable by nobody else.
        const part = await appears(dirname(d), `${basename(d)}.part-`);
        modes.push(statSync(join(dirname(d), part)).mode & 0o777);
      };
      const url = releaseAssetUrl(release, "amd64", base);
      const [a, b] = await Promise.all([pullImage(url, d), pullImage(url, d)]);
      expect(imageGets).toBe(1);
      expect(modes).toEqual([0o600]);
      expect([a.reused, b.reused].sort()).toEqual([false, true]);
      for (const r of [a, b]) expect(r).toMatchObject({ path: d, bytes: image.length, sha256: good });
      expect(readFileSync(d).equals(image)).toBe(true);
      expect(statSync(d).mode & 0o777).toBe(0o644);
      expect(partsBeside(d)).toEqual([]);
    });
  }

  it("removes what a dead pull left and downloads again", async () => {
    const d = dest();
    imageGets = 0;
    halfway = () => Promise.resolve();
    writeFileSync(`${d}.part`, "old engine's partial");
    writeFileSync(`${d}.part-0badf00d`, "a killed pull's partial");
    const r = await pullImage(releaseAssetUrl("good", "amd64", base), d);
    expect(r.reused).toBe(false);
    expect(imageGets).toBe(1);
    expect(partsBeside(d)).toEqual([]);
  });
});
