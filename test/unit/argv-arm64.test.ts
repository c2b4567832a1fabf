import { describe, expect, it } from "vitest";
import { buildQemuArgv, layoutHash, type QemuPlan } from "../../src/engine/qemu/argv.js";
import { pickCpuModel } from "../../src/engine/host/probe.js";
import { cpuFingerprint } from "../../src/engine/host/host.js";

/** An arm64 capture plan as the engine makes it on an amd64 host with qemu-system-aarch64 10.0. */
const arm64: QemuPlan = {
  layout: "capture",
  strategy: "template",
  arch: "arm64",
  accelerator: "tcg",
  machineType: "virt-10.0",
  cpuModel: "max,pauth-impdef=on",
  firmware: "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
  vmgenid: false,
  ramMiB: 512,
  cpus: 1,
  disk: { base: "/img/stack-emulator-arm64.qcow2", layer: "/snap/tmp/disk-layer.qcow2" },
  phantoms: ["/run/p1", "/run/p2"],
  runtimeIso: "/run/cfg.iso",
  ramFile: "/snap/tmp/ram.bin",
  bindAddress: "127.0.0.1",
  forwards: [{ hostPort: 26701, guestPort: 8102 }],
  qmpSocket: "/run/qmp.sock",
  qgaSocket: "/run/qga.sock",
  serialLog: "/run/serial.log",
};
const resume: QemuPlan = {
  ...arm64,
  layout: "resume",
  disk: { ...arm64.disk, session: "/run/disk.qcow2" },
  hostShare: { path: "/work", readOnly: false },
};

const devices = (argv: string[]) =>
  argv.flatMap((a, i) => (argv[i - 1] === "-device" ? [a.split(",")[0]] : []));
const after = (argv: string[], flag: string) => argv[argv.indexOf(flag) + 1];

describe("the QEMU argv builder for arm64 (virt)", () => {
  it("boots virt with the UEFI firmware given by -bios and the chosen CPU", () => {
    const argv = buildQemuArgv(arm64);
    expect(after(argv, "-machine")).toBe("virt-10.0,memory-backend=ram0");
    expect(after(argv, "-accel")).toMatch(/^tcg,tb-size=\d+$/);
    expect(after(argv, "-cpu")).toBe("max,pauth-impdef=on");
    expect(after(argv, "-bios")).toBe("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd");
    expect(after(argv, "-serial")).toBe("file:/run/serial.log");
    expect(argv).not.toContain("-kernel");
  });

  it("adds no vmgenid device when the QEMU has none, and one when it has", () => {
    expect(devices(buildQemuArgv(arm64))).not.toContain("vmgenid");
    expect(devices(buildQemuArgv({ ...arm64, vmgenid: true }))).toContain("vmgenid");
    expect(devices(buildQemuArgv({ ...arm64, vmgenid: undefined }))).toContain("vmgenid");
  });

  it("gives capture and resume the same devices, the reserved root port last on pcie.0", () => {
    const capture = buildQemuArgv(arm64);
    const resumed = buildQemuArgv(resume);
    expect(devices(resumed)).toEqual(devices(capture));
    expect(devices(capture)).toEqual([
      "virtio-blk-pci",
      "virtio-blk-pci",
      "virtio-blk-pci",
      "virtio-blk-pci",
      "virtio-net-pci",
      "virtio-serial-pci",
      "virtserialport",
      "pcie-root-port",
    ]);
    expect(capture).toContain("pcie-root-port,id=hostfs-port,bus=pcie.0,chassis=1");
    expect(resumed).toContain("-incoming");
    expect(resumed.join(" ")).toContain("-fsdev local,id=hostfs,path=/work,security_model=none");
  });

  it("attaches balloon and virtfs on a cold boot, with the same firmware", () => {
    const cold = buildQemuArgv({
      ...arm64,
      layout: "cold",
      strategy: undefined,
      ramFile: undefined,
      phantoms: undefined,
      disk: { base: arm64.disk.base, session: "/run/disk.qcow2" },
      hostShare: { path: "/work", readOnly: true },
    });
    expect(after(cold, "-machine")).toBe("virt-10.0");
    expect(after(cold, "-bios")).toBe(arm64.firmware);
    expect(devices(cold)).toContain("virtio-balloon-pci");
    expect(cold).toContain("virtio-9p-pci,fsdev=hostfs,mount_tag=hostfs,id=hostfs-dev");
    expect(devices(cold)).not.toContain("pcie-root-port");
    expect(devices(cold)).not.toContain("vmgenid");
  });

  it("hashes the layout without the firmware's path, but with what the guest sees", () => {
    const h = layoutHash(arm64);
    expect(layoutHash(resume)).toBe(h);
    expect(layoutHash({ ...arm64, firmware: "/elsewhere/AAVMF_CODE.fd" })).toBe(h);
    expect(layoutHash({ ...arm64, vmgenid: true })).not.toBe(h);
    expect(layoutHash({ ...arm64, cpuModel: "cortex-a57" })).not.toBe(h);
    expect(layoutHash({ ...arm64, machineType: "virt-7.2" })).not.toBe(h);
  });
});

describe("the arm64 CPU model and fingerprint", () => {
  it("is max with QEMU's cheap pointer authentication under TCG, the host's own core under KVM", () => {
    expect(pickCpuModel("arm64", "tcg", "amd64")).toBe("max,pauth-impdef=on");
    expect(pickCpuModel("arm64", "tcg", "arm64")).toBe("max,pauth-impdef=on");
    expect(pickCpuModel("arm64", "kvm", "arm64")).toBe("host");
    expect(pickCpuModel("arm64", "hvf", "arm64")).toBe("cortex-a57");
  });

  it("ties a KVM snapshot to the host's core and features, read from arm64 /proc/cpuinfo", () => {
    const cpuinfo = (part: string, features: string) =>
      `processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: ${features}\nCPU implementer\t: 0x41\n` +
      `CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: ${part}\nCPU revision\t: 1\n`;
    const n1 = cpuFingerprint("kvm", "host", cpuinfo("0xd0c", "fp asimd aes atomics"));
    expect([n1.vendor, n1.model]).toEqual(["arm:0x41", "0xd0c"]);
    expect(n1.id).toMatch(/^kvm:host:arm:0x41:0xd0c:[0-9a-f]{12}$/);
    expect(cpuFingerprint("kvm", "host", cpuinfo("0xd49", "fp asimd aes atomics")).id).not.toBe(n1.id);
    expect(cpuFingerprint("kvm", "host", cpuinfo("0xd0c", "fp asimd aes atomics sve")).id).not.toBe(n1.id);
    expect(cpuFingerprint("tcg", "max,pauth-impdef=on", cpuinfo("0xd0c", "fp")).id).toBe(
      "tcg:max,pauth-impdef=on",
    );
  });
});
