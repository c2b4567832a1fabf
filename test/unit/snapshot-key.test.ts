import { describe, expect, it } from "vitest";
import {
  SNAPSHOT_FORMAT_VERSION,
  describeKeyDifference,
  diffKeyParts,
  snapshotKey,
} from "../../src/engine/snapshot/key.js";
import type { SnapshotKeyParts } from "../../src/engine/snapshot/key.js";
import { guestCpuFingerprint, romFiles } from "../../src/engine/host/probe.js";

const NEHALEM =
  "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 pni ssse3 cx16 sse4_1 sse4_2 popcnt lm syscall nx lahf_lm";
const x86 = (vendor: string, model: string, flags: string) =>
  `processor\t: 0\nvendor_id\t: ${vendor}\nmodel name\t: ${model}\nflags\t\t: ${flags}\n`;

function parts(): SnapshotKeyParts {
  return {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    arch: "amd64",
    accelerator: "tcg",
    qemuVersion: "7.2.22",
    qemuBuild: "Debian 1:7.2+dfsg-7+deb12u7 sha256:" + "12".repeat(32),
    romDigest: "34".repeat(32),
    machineType: "pc-q35-7.2",
    cpuModel: "max",
    cpuFingerprint: "f00d",
    ramMiB: 4096,
    cpus: 2,
    imageDigest: "ab".repeat(32),
    firmwareDigest: "none",
    layoutHash: "layout-1",
    strategy: "template",
    hostPorts: { dashboard: 8101, backend: 8102, minio: 8103, inbucket: 8104, mockOauth: 8105 },
    portPrefix: "81",
  };
}

/** One changed value for every part, nested ports included. */
const changes: [string, (p: SnapshotKeyParts) => void][] = [
  ["formatVersion", (p) => (p.formatVersion = SNAPSHOT_FORMAT_VERSION + 1)],
  ["arch", (p) => (p.arch = "arm64")],
  ["accelerator", (p) => (p.accelerator = "kvm")],
  ["qemuVersion", (p) => (p.qemuVersion = "10.0.13")],
  ["qemuBuild", (p) => (p.qemuBuild = "Debian 1:7.2+dfsg-7+deb12u8 sha256:" + "12".repeat(32))],
  ["romDigest", (p) => (p.romDigest = "56".repeat(32))],
  ["machineType", (p) => (p.machineType = "pc-q35-10.0")],
  ["cpuModel", (p) => (p.cpuModel = "host")],
  ["cpuFingerprint", (p) => (p.cpuFingerprint = "beef")],
  ["ramMiB", (p) => (p.ramMiB = 2048)],
  ["cpus", (p) => (p.cpus = 4)],
  ["imageDigest", (p) => (p.imageDigest = "cd".repeat(32))],
  ["firmwareDigest", (p) => (p.firmwareDigest = "ef".repeat(32))],
  ["layoutHash", (p) => (p.layoutHash = "layout-2")],
  ["strategy", (p) => (p.strategy = "mapped-ram")],
  ["hostPorts.dashboard", (p) => (p.hostPorts.dashboard = 9101)],
  ["hostPorts.backend", (p) => (p.hostPorts.backend = 9102)],
  ["hostPorts.minio", (p) => (p.hostPorts.minio = 9103)],
  ["hostPorts.inbucket", (p) => (p.hostPorts.inbucket = 9104)],
  ["hostPorts.mockOauth", (p) => (p.hostPorts.mockOauth = 9105)],
  ["portPrefix", (p) => (p.portPrefix = "91")],
];

describe("snapshot key", () => {
  it("is stable, readable and safe as a path component and cache key", () => {
    const key = snapshotKey(parts());
    expect(key).toBe(snapshotKey(parts()));
    expect(key).toMatch(/^hxe-v2-amd64-tcg-q7\.2\.22-[0-9a-f]{24}$/);
  });

  it("does not depend on property order", () => {
    const p = parts();
    const reordered = Object.fromEntries(Object.entries(p).reverse()) as SnapshotKeyParts;
    reordered.hostPorts = Object.fromEntries(
      Object.entries(p.hostPorts).reverse(),
    ) as SnapshotKeyParts["hostPorts"];
    expect(snapshotKey(reordered)).toBe(snapshotKey(p));
  });

  it("covers every part (the test list names them all)", () => {
    const named = new Set(changes.map(([n]) => n.split(".")[0]));
    expect([...named].sort()).toEqual(Object.keys(parts()).sort());
  });

  it.each(changes)("changes when %s changes", (_name, change) => {
    const p = parts();
    change(p);
    expect(snapshotKey(p)).not.toBe(snapshotKey(parts()));
  });

  it("keeps odd version strings filesystem-safe", () => {
    const p = parts();
    p.qemuVersion = "7.2.22 (Debian 1:7.2+dfsg-7+deb12u7)";
    expect(snapshotKey(p)).toMatch(/^[a-z0-9._-]+$/);
  });
});

describe("the CPU part of the key: what the guest sees", () => {
  it("under KVM with a pinned model, ignores host flags the model does not have", () => {
    const a = x86("GenuineIntel", "Xeon Platinum 8370C", `${NEHALEM} avx avx2 avx512f sha_ni`);
    const b = x86("GenuineIntel", "Xeon E5-2673 v4", `${NEHALEM} avx avx2 rdseed`);
    expect(guestCpuFingerprint("kvm", "Nehalem", a)).toBe(guestCpuFingerprint("kvm", "Nehalem", b));
    expect(guestCpuFingerprint("kvm", "Nehalem", a)).toBe("kvm:Nehalem:GenuineIntel:missing=none");
  });

  it("changes with the host's vendor (the guest sees it) and with a model feature the host lacks", () => {
    const intel = x86("GenuineIntel", "x", NEHALEM);
    const amd = x86("AuthenticAMD", "EPYC 7763", `${NEHALEM} avx2`);
    const old = x86("GenuineIntel", "Core 2", NEHALEM.replace(" sse4_2", "").replace(" popcnt", ""));
    expect(guestCpuFingerprint("kvm", "Nehalem", amd)).not.toBe(guestCpuFingerprint("kvm", "Nehalem", intel));
    expect(guestCpuFingerprint("kvm", "Nehalem", old)).toBe("kvm:Nehalem:GenuineIntel:missing=popcnt,sse4_2");
  });

  it("keeps TCG host-independent and arm64's host CPU keyed by its core", () => {
    expect(guestCpuFingerprint("tcg", "max", x86("GenuineIntel", "x", "avx"))).toBe("tcg:max");
    const arm = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";
    expect(guestCpuFingerprint("kvm", "host", arm)).toMatch(/^kvm:host:arm:0x41:0xd0c:/);
  });
});

describe("the ROM part of the key", () => {
  it("names the BIOS and option ROMs QEMU would load, the first directory winning", () => {
    const dirs: Record<string, string[]> = {
      "/usr/share/qemu": ["bios-256k.bin", "kvmvapic.bin", "linuxboot_dma.bin", "s390-ccw.img", "keymaps"],
      "/usr/share/seabios": ["bios-256k.bin", "vgabios-stdvga.bin"],
      "/usr/lib/ipxe/qemu": ["efi-virtio.rom", "pxe-virtio.rom"],
    };
    expect(romFiles(Object.keys(dirs), (d) => dirs[d] ?? [])).toEqual([
      "/usr/share/qemu/bios-256k.bin",
      "/usr/share/qemu/kvmvapic.bin",
      "/usr/share/qemu/linuxboot_dma.bin",
      "/usr/share/seabios/vgabios-stdvga.bin",
      "/usr/lib/ipxe/qemu/efi-virtio.rom",
      "/usr/lib/ipxe/qemu/pxe-virtio.rom",
    ]);
  });
});

describe("key diff", () => {
  it("explains a miss by naming exactly the parts that differ", () => {
    const wanted = parts();
    wanted.qemuVersion = "10.0.13";
    wanted.hostPorts.minio = 9000;
    const diffs = diffKeyParts(parts(), wanted);
    expect(diffs.map(describeKeyDifference)).toEqual([
      "hostPorts.minio: 8103 → 9000",
      "qemuVersion: 7.2.22 → 10.0.13",
    ]);
  });

  it.each(changes)("reports %s and nothing else", (name, change) => {
    const p = parts();
    change(p);
    expect(diffKeyParts(parts(), p).map((d) => d.part)).toEqual([name]);
  });

  it("is empty for equal parts", () => {
    expect(diffKeyParts(parts(), parts())).toEqual([]);
  });
});
