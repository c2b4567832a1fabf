/** The Action's host steps with injected hosts: finding or installing QEMU (/dev/kvm: action-kvm.test.ts). */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveQemu, type QemuDeps } from "../../src/action/qemu.js";
import { EngineError } from "../../src/engine/errors.js";

const made: string[] = [];
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

function qemuHost(over: Partial<QemuDeps> = {}) {
  const bin = mkdtempSync(join(tmpdir(), "hxe-qemu-path-"));
  made.push(bin);
  const ran: string[] = [];
  const logs: string[] = [];
  const deps: QemuDeps = {
    platform: "linux",
    env: { PATH: bin },
    osRelease: () => 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n',
    exists: () => false,
    isRoot: false,
    canBeRoot: async () => true,
    asRoot: async (argv) => {
      ran.push(argv.join(" "));
      if (argv[1] === "install") {
        writeFileSync(join(bin, "qemu-system-x86_64"), "#!/bin/sh\n");
        chmodSync(join(bin, "qemu-system-x86_64"), 0o755);
      }
    },
    // Package lists that offer nothing yet (a fresh runner): apt-get update runs first.
    run: async () => "",
    log: (m) => logs.push(m),
    ...over,
  };
  return { deps, ran, logs, bin };
}

describe("choosing QEMU", () => {
  it("uses the qemu input's path, and refuses one that does not exist", async () => {
    const { deps } = qemuHost({ exists: (p) => p === "/opt/q/qemu-system-x86_64" });
    expect(await resolveQemu("/opt/q/qemu-system-x86_64", "amd64", deps)).toMatchObject({ source: "input" });
    await expect(resolveQemu("/nope/qemu", "amd64", deps)).rejects.toThrow(/does not exist/);
  });

  it("uses the runner's QEMU on PATH", async () => {
    const { deps, bin, ran } = qemuHost();
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "qemu-system-x86_64"), "");
    expect(await resolveQemu("auto", "amd64", deps)).toMatchObject({
      source: "path",
      binary: join(bin, "qemu-system-x86_64"),
    });
    expect(ran).toEqual([]);
  });

  it("installs qemu-system-x86 and qemu-utils with apt on Ubuntu when there is none", async () => {
    const { deps, ran, bin } = qemuHost();
    const c = await resolveQemu("auto", "amd64", deps);
    expect(c).toMatchObject({ source: "installed", binary: join(bin, "qemu-system-x86_64") });
    expect(ran).toEqual([
      "apt-get update -q",
      "apt-get install -y -q --no-install-recommends qemu-system-x86 qemu-utils",
    ]);
    // Without an Actions cache nothing is kept for the post step.
    expect(c.apt).toMatchObject({ cache: "off" });
    expect(c.aptSave).toBeUndefined();
  });

  it("refuses clearly where it cannot install", async () => {
    const notDebian = qemuHost({ osRelease: () => "ID=fedora\n" });
    const e1 = await resolveQemu("auto", "amd64", notDebian.deps).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(EngineError);
    expect((e1 as EngineError).describe()).toMatch(
      /not Ubuntu\/Debian.*hint: install QEMU in an earlier step/,
    );
    const noSudo = qemuHost({ canBeRoot: async () => false });
    await expect(resolveQemu("auto", "amd64", noSudo.deps)).rejects.toThrow(/needs root/);
    const mac = qemuHost({ platform: "darwin" });
    await expect(resolveQemu("auto", "amd64", mac.deps)).rejects.toThrow(/cannot install/);
  });

  it("says so when apt-get fails", async () => {
    const { deps } = qemuHost({
      asRoot: async () => {
        throw new Error("E: Unable to locate package");
      },
    });
    await expect(resolveQemu("auto", "amd64", deps)).rejects.toThrow(/apt-get could not install/);
  });
});
