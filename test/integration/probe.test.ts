import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findQemu, probeQemu } from "../../src/engine/host/probe.js";
import { qemuTargets } from "../support/tools.js";

describe.each(qemuTargets())("probing $label", (target) => {
  it("learns version, versioned machine types and migration capabilities over QMP, cached per binary", async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), "hxe-probe-cache-"));
    const p = await probeQemu(target.binary, { cacheDir, tryKvm: false });
    const major = target.label === "qemu-7.2" ? 7 : 10;
    expect(p.version.major).toBe(major);
    expect(p.machines[0]).toMatch(new RegExp(`^pc-q35-${major}\\.\\d+$`));
    expect(p.migrationCapabilities).toContain("x-ignore-shared");
    expect(p.migrationCapabilities.includes("mapped-ram")).toBe(major >= 9);
    expect(p.kvmUsable).toBe(false);
    const [file] = readdirSync(cacheDir);
    expect(file).toBeDefined();
    // Mark the cached answer: the second probe must return it, not run QEMU again.
    const cached = join(cacheDir, file as string);
    writeFileSync(cached, JSON.stringify({ ...p, package: "from-the-cache" }));
    expect((await probeQemu(target.binary, { cacheDir, tryKvm: false })).package).toBe("from-the-cache");
  });

  it("finds QEMU by explicit path (a wrapper script works too) and names the fix when missing", () => {
    expect(findQemu("amd64", target.binary)).toBe(target.binary);
    expect(() => findQemu("amd64", "/nope/qemu")).toThrow(/does not exist/);
    expect(() => findQemu("amd64", undefined, { PATH: "/nonexistent" })).toThrow(/not found on PATH/);
  });
});
