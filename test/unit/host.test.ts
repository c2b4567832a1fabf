import { describe, expect, it } from "vitest";
import { chooseAccelerator, cpuFingerprint, hostArch, type HostInfo } from "../../src/engine/host/host.js";
import { pickCpuModel, pickMachineType, type QemuProbe } from "../../src/engine/host/probe.js";
import { chooseStrategy, migrationSpec, supportedStrategies } from "../../src/engine/lifecycle/strategies.js";

const linux: HostInfo = { arch: "amd64", os: "linux", kvmWritable: true, cpuVirtualization: true };

describe("choosing the accelerator", () => {
  it("uses KVM only when /dev/kvm is writable, the CPU has VT-x/AMD-V and QEMU enabled it", () => {
    expect(chooseAccelerator(linux, "amd64", { kvmUsable: true }).accelerator).toBe("kvm");
    expect(chooseAccelerator({ ...linux, kvmWritable: false }, "amd64", {}).reason).toMatch(/not writable/);
    expect(
      chooseAccelerator({ ...linux, cpuVirtualization: false }, "amd64", { kvmUsable: true }).reason,
    ).toMatch(/vmx\/svm/);
    expect(chooseAccelerator(linux, "amd64", { kvmUsable: false }).reason).toMatch(/could not enable KVM/);
  });

  it("runs a foreign-arch guest under TCG, and uses HVF on macOS when QEMU lists it", () => {
    expect(chooseAccelerator(linux, "arm64", { kvmUsable: true }).accelerator).toBe("tcg");
    const mac: HostInfo = { arch: "arm64", os: "darwin", kvmWritable: false, cpuVirtualization: true };
    expect(chooseAccelerator(mac, "arm64", { hvfListed: true }).accelerator).toBe("hvf");
    expect(chooseAccelerator(mac, "arm64", { hvfListed: false }).accelerator).toBe("tcg");
  });

  it("maps Node's architecture names", () => {
    expect(hostArch("x64")).toBe("amd64");
    expect(hostArch("arm64")).toBe("arm64");
    expect(() => hostArch("ia32")).toThrow(/unsupported host architecture/);
  });
});

describe("CPU model and fingerprint", () => {
  it("never uses host or max under KVM, and qemu64 for a cross-arch amd64 guest", () => {
    expect(pickCpuModel("amd64", "kvm", "amd64")).not.toMatch(/^(host|max)$/);
    expect(pickCpuModel("amd64", "tcg", "arm64")).toBe("qemu64");
    expect(pickCpuModel("amd64", "tcg", "amd64")).toBe("max");
  });

  it("keeps TCG snapshots portable across host CPUs, and ties KVM ones to the host's flags", () => {
    const a = "vendor_id\t: GenuineIntel\nmodel name\t: Xeon\nflags\t\t: fpu vmx sse2\n";
    const b = "vendor_id\t: GenuineIntel\nmodel name\t: Xeon\nflags\t\t: fpu vmx sse2 avx512f\n";
    expect(cpuFingerprint("tcg", "max", a).id).toBe(cpuFingerprint("tcg", "max", b).id);
    expect(cpuFingerprint("kvm", "Nehalem", a).id).not.toBe(cpuFingerprint("kvm", "Nehalem", b).id);
    expect(cpuFingerprint("kvm", "Nehalem", a).vendor).toBe("GenuineIntel");
  });
});

const probe = (major: number, minor: number, caps: string[], machines: string[]): QemuProbe => ({
  binary: "/q",
  version: { major, minor, micro: 0 },
  versionString: `${major}.${minor}.0`,
  package: "",
  machines,
  migrationCapabilities: caps,
  kvmUsable: false,
  accelerators: ["tcg"],
});

describe("strategies and machine types from the probe", () => {
  const q72 = probe(7, 2, ["xbzrle", "events", "x-ignore-shared", "multifd"], ["pc-q35-7.2", "pc-q35-7.1"]);
  const q10 = probe(
    10,
    0,
    ["events", "x-ignore-shared", "multifd", "mapped-ram"],
    ["pc-q35-10.0", "pc-q35-9.2"],
  );

  it("offers template and stream on 7.2, and mapped-ram from 9.0", () => {
    expect(supportedStrategies(q72)).toEqual(["template", "stream"]);
    expect(supportedStrategies(q10)).toEqual(["template", "mapped-ram", "stream"]);
    expect(chooseStrategy("auto", q72)).toBe("template");
    expect(chooseStrategy("auto", probe(6, 0, ["events"], []))).toBe("stream");
  });

  it("streams through exec: before QEMU 8.2 and file: after, always raising max-bandwidth", () => {
    expect(migrationSpec("stream", q72, "/s", 2).outgoingUri).toBe("exec:cat > '/s/ram.bin'");
    expect(migrationSpec("stream", q10, "/s", 2).outgoingUri).toBe("file:/s/ram.bin");
    expect(migrationSpec("template", q72, "/s", 2).capabilities).toContainEqual({
      capability: "x-ignore-shared",
      state: true,
    });
    expect(migrationSpec("mapped-ram", q10, "/s", 8).parameters["multifd-channels"]).toBe(4);
    expect(migrationSpec("template", q72, "/it's", 1).outgoingUri).toBe(
      `exec:cat > '/it'\\''s/device-state.bin'`,
    );
    expect(migrationSpec("stream", q72, "/s", 1).parameters["max-bandwidth"]).toBeGreaterThan(1e9);
  });

  it("picks the newest versioned machine type, never the alias", () => {
    expect(pickMachineType(q10, "amd64")).toBe("pc-q35-10.0");
    expect(() => pickMachineType(probe(7, 2, [], ["q35"]), "amd64")).toThrow(/versioned/);
  });
});
