import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createOverlay, qcow2VirtualSize, virtualSize } from "../../src/engine/lifecycle/disks.js";
import { qemuTargets } from "../support/tools.js";

const dir = mkdtempSync(join(tmpdir(), "hxe-disks-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a qcow2 overlay's virtual size, read from its header", () => {
  for (const t of qemuTargets()) {
    it(`is what qemu-img info says, for overlays ${t.label} made`, async () => {
      const base = join(dir, `${t.label}-base.qcow2`);
      execFileSync(t.img, ["create", "-q", "-f", "qcow2", base, "3221225984"]);
      const layer = join(dir, `${t.label}-layer.qcow2`);
      await createOverlay(t.img, layer, base, await virtualSize(t.img, base));
      expect(qcow2VirtualSize(layer)).toBe(3221225984);
      expect(qcow2VirtualSize(layer)).toBe(await virtualSize(t.img, layer));
    });
  }

  it("is unknown (so the caller asks qemu-img) for a file that is not qcow2, a short one, or none", () => {
    const raw = join(dir, "raw.img");
    writeFileSync(raw, Buffer.alloc(4096, 1));
    const short = join(dir, "short.qcow2");
    writeFileSync(short, Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]));
    const v9 = join(dir, "v9.qcow2");
    const header = Buffer.alloc(72);
    header.writeUInt32BE(0x514649fb, 0);
    header.writeUInt32BE(9, 4);
    header.writeBigUInt64BE(1n << 30n, 24);
    writeFileSync(v9, header);
    expect([raw, short, v9, join(dir, "missing.qcow2")].map(qcow2VirtualSize)).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });
});
