/** The Action's host steps with injected hosts: making /dev/kvm usable, finding or installing QEMU. */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureKvm, UDEV_RULE, UDEV_RULE_FILE, type KvmDeps } from "../../src/action/kvm.js";
import { resolveQemu, type QemuDeps } from "../../src/action/qemu.js";
import { EngineError } from "../../src/engine/errors.js";

function kvmHost(over: Partial<KvmDeps> & { writableAfter?: string } = {}) {
  const ran: string[] = [];
  let writable = false;
  const deps: KvmDeps = {
    platform: "linux",
    device: "/dev/kvm",
    exists: () => true,
    writable: () => writable,
    isRoot: false,
    canBeRoot: async () => true,
    asRoot: async (argv, input) => {
      ran.push(argv.join(" ") + (input ? ` <<< ${input.trim()}` : ""));
      if (argv.join(" ") === over.writableAfter) writable = true;
    },
    ...over,
  };
  return { deps, ran };
}

describe("making /dev/kvm usable", () => {
  it("leaves a writable /dev/kvm alone", async () => {
    const { deps, ran } = kvmHost({ writable: () => true });
    expect(await ensureKvm(deps)).toMatchObject({ state: "usable" });
    expect(ran).toEqual([]);
  });

  it("says the runner has no KVM when /dev/kvm is missing", async () => {
    const { deps } = kvmHost({ exists: () => false });
    const r = await ensureKvm(deps);
    expect(r.state).toBe("missing");
    expect(r.message).toContain("/dev/kvm does not exist");
  });

  it("installs the udev rule with sudo when the device is not writable", async () => {
    const { deps, ran } = kvmHost({ writableAfter: "udevadm trigger --name-match=kvm" });
    const r = await ensureKvm(deps);
    expect(r).toMatchObject({ state: "enabled" });
    expect(r.message).toContain(UDEV_RULE_FILE);
    expect(ran).toEqual([
      `tee ${UDEV_RULE_FILE} <<< ${UDEV_RULE.trim()}`,
      "udevadm control --reload-rules",
      "udevadm trigger --name-match=kvm",
    ]);
  });

  it("falls back to chmod where udev does not run, and says what it did", async () => {
    const { deps, ran } = kvmHost({ writableAfter: "chmod 666 /dev/kvm" });
    const plain = deps.asRoot;
    deps.asRoot = async (argv, input) => {
      await plain(argv, input);
      if (argv[0] === "udevadm") throw new Error("udevadm: not found");
    };
    const r = await ensureKvm(deps);
    expect(r.state).toBe("enabled");
    expect(r.message).toContain("chmod 666 /dev/kvm");
    expect(ran.at(-1)).toBe("chmod 666 /dev/kvm");
  });

  it("explains what to do when sudo needs a password", async () => {
    const { deps, ran } = kvmHost({ canBeRoot: async () => false });
    const r = await ensureKvm(deps);
    expect(r.state).toBe("not-writable");
    expect(r.message).toContain("kvm group");
    expect(ran).toEqual([]);
  });

  it("reports when nothing helped", async () => {
    const { deps } = kvmHost();
    const r = await ensureKvm(deps);
    expect(r.state).toBe("not-writable");
    expect(r.message).toContain("still not writable");
  });

  it("does nothing off Linux", async () => {
    const { deps } = kvmHost({ platform: "darwin" });
    expect((await ensureKvm(deps)).state).toBe("not-linux");
  });
});

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
