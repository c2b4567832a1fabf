/** The image input's download form: tool cache, published or given checksum, mismatch. */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveImage, toolVersion } from "../../src/action/image.js";
import { EngineError } from "../../src/engine/errors.js";

const image = randomBytes(2 * 1024 * 1024 + 5);
const digest = createHash("sha256").update(image).digest("hex");
const saved = { RUNNER_TEMP: process.env.RUNNER_TEMP, RUNNER_TOOL_CACHE: process.env.RUNNER_TOOL_CACHE };

describe("the image input", () => {
  let server: Server;
  let base = "";
  let root = "";
  const hits: string[] = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "hxe-action-image-"));
    process.env.RUNNER_TEMP = join(root, "temp");
    process.env.RUNNER_TOOL_CACHE = join(root, "tool-cache");
    mkdirSync(process.env.RUNNER_TEMP, { recursive: true });
    server = createServer((req, res) => {
      const url = req.url ?? "";
      hits.push(url);
      if (url === "/signed/stack-emulator-amd64.qcow2.sha256")
        return void res.end(`${digest}  stack-emulator-amd64.qcow2\n`);
      if (url === "/lying/stack-emulator-amd64.qcow2.sha256") return void res.end(`${"0".repeat(64)}  x\n`);
      if (url.endsWith("/stack-emulator-amd64.qcow2")) {
        res.writeHead(200, { "content-length": String(image.length) });
        return void res.end(image);
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(root, { recursive: true, force: true });
  });

  const opts = (extra: { expectedSha256?: string } = {}) => ({
    arch: "amd64" as const,
    defaultPath: join(root, "nowhere.qcow2"),
    log: () => undefined,
    ...extra,
  });

  it("downloads a URL, checks the release's .sha256, and keeps it in the tool cache", async () => {
    const url = `${base}/signed/stack-emulator-amd64.qcow2`;
    const first = await resolveImage({ kind: "url", url }, opts());
    expect(first.source).toBe("download");
    expect(first.message).toContain(`sha256 ${digest} verified`);
    expect(
      first.path.startsWith(join(root, "tool-cache", "hexclave-emulator-image", toolVersion(url, undefined))),
    ).toBe(true);
    expect(readFileSync(first.path).equals(image)).toBe(true);

    const before = hits.length;
    const again = await resolveImage({ kind: "url", url }, opts());
    expect(again).toMatchObject({ source: "tool-cache", path: first.path });
    expect(hits.length).toBe(before);
  });

  it("accepts a plain URL that publishes no checksum, with a warning", async () => {
    const warned: string[] = [];
    const r = await resolveImage(
      { kind: "url", url: `${base}/plain/stack-emulator-amd64.qcow2` },
      { ...opts(), warn: (m: string) => warned.push(m) },
    );
    expect(r.message).toContain("no checksum published");
    expect(warned.join("\n")).toContain("not verified");
  });

  it("fails closed on a release tag that publishes no .sha256, unless image-sha256 is given", async () => {
    const tagged = { kind: "tag" as const, tag: "plain" };
    const e = await resolveImage(tagged, { ...opts(), releaseBase: base }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(EngineError);
    expect((e as EngineError).code).toBe("CHECKSUM_INVALID");
    expect((e as EngineError).message).toContain("release tag plain publishes no checksum");
    expect((e as EngineError).hint).toContain("image-sha256");
    const ok = await resolveImage(tagged, { ...opts({ expectedSha256: digest }), releaseBase: base });
    expect(ok.message).toContain(`sha256 ${digest} verified`);
  });

  it("fails on a checksum mismatch, from the release or from image-sha256, and caches nothing", async () => {
    const lying = `${base}/lying/stack-emulator-amd64.qcow2`;
    const e1 = await resolveImage({ kind: "url", url: lying }, opts()).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(EngineError);
    expect((e1 as EngineError).code).toBe("CHECKSUM_MISMATCH");
    expect((e1 as EngineError).message).toContain(`${lying}.sha256 says`);
    expect(
      existsSync(join(root, "tool-cache", "hexclave-emulator-image", toolVersion(lying, undefined))),
    ).toBe(false);

    const given = `${base}/given/stack-emulator-amd64.qcow2`;
    const e2 = await resolveImage(
      { kind: "url", url: given },
      opts({ expectedSha256: "1".repeat(64) }),
    ).catch((e: unknown) => e);
    expect((e2 as EngineError).message).toContain("the image-sha256 input says");
    const ok = await resolveImage({ kind: "url", url: given }, opts({ expectedSha256: digest }));
    expect(ok.message).toContain("verified");
  });

  it("uses a path as it is, and refuses one that does not exist", async () => {
    const p = join(root, "local.qcow2");
    writeFileSync(p, "x");
    expect(await resolveImage({ kind: "path", path: p }, opts())).toMatchObject({ source: "path", path: p });
    await expect(resolveImage({ kind: "path", path: join(root, "missing.qcow2") }, opts())).rejects.toThrow(
      /does not exist/,
    );
    await expect(resolveImage({ kind: "default" }, opts())).rejects.toThrow(/no image input/);
  });
});
