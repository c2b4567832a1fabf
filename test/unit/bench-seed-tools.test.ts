import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { SEED_TOOLS, missingSeedTools } from "../../bench/seed.js";

describe("the bench's seed section on a machine without the seed's tools", () => {
  it("names each missing tool with the Debian package that brings it", () => {
    const present = new Set(["curl", "lsof", "zstd", "openssl"]);
    expect(missingSeedTools((t) => present.has(t))).toEqual(["socat", "nc (netcat-openbsd)", "genisoimage"]);
  });

  it("finds nothing missing when every tool is on PATH", () => {
    expect(missingSeedTools(() => true)).toEqual([]);
  });

  it("asks for the same packages scripts/install-qemu.sh --seed-tools installs", () => {
    const script = readFileSync(new URL("../../scripts/install-qemu.sh", import.meta.url), "utf8");
    const line = /\[ "\$seed_tools" = 0 \] \|\| host_packages\+=\(([^)]*)\)/.exec(script);
    expect(line, "install-qemu.sh's --seed-tools package list").not.toBeNull();
    const installed = new Set([...line![1]!.split(/\s+/).filter(Boolean), "zstd"]);
    for (const pkg of Object.values(SEED_TOOLS)) expect(installed, pkg).toContain(pkg);
  });
});
