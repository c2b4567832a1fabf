import { describe, expect, it } from "vitest";
import {
  buildQemuArgv,
  escapeOpt,
  layoutHash,
  TCG_TB_SIZE_MIB,
  type QemuPlan,
} from "../../src/engine/qemu/argv.js";

const base: QemuPlan = {
  layout: "capture",
  strategy: "template",
  arch: "amd64",
  accelerator: "tcg",
  machineType: "pc-q35-7.2",
  cpuModel: "max",
  ramMiB: 1024,
  cpus: 2,
  disk: { base: "/img/base.qcow2", layer: "/snap/tmp/disk-layer.qcow2" },
  phantoms: ["/run/p1", "/run/p2"],
  runtimeIso: "/run/cfg.iso",
  ramFile: "/snap/tmp/ram.bin",
  bindAddress: "127.0.0.1",
  forwards: [
    { hostPort: 26700, guestPort: 8101 },
    { hostPort: 26701, guestPort: 8102 },
  ],
  qmpSocket: "/run/qmp.sock",
  qgaSocket: "/run/qga.sock",
  serialLog: "/run/serial.log",
};

const devices = (argv: string[]) =>
  argv.flatMap((a, i) => (argv[i - 1] === "-device" ? [a.split(",")[0]] : []));

describe("the QEMU argv builder", () => {
  it("gives capture and resume the same guest-visible devices in the same order", () => {
    const capture = buildQemuArgv(base);
    const resume = buildQemuArgv({
      ...base,
      layout: "resume",
      disk: { ...base.disk, session: "/run/disk.qcow2" },
      hostShare: { path: "/work", readOnly: false },
    });
    expect(devices(resume)).toEqual(devices(capture));
    expect(devices(capture).at(-1)).toBe("pcie-root-port");
    expect(resume).toContain("-incoming");
    expect(capture).not.toContain("-incoming");
  });

  it("maps the template RAM shared while capturing and privately on resume", () => {
    const capture = buildQemuArgv(base).join(" ");
    const resume = buildQemuArgv({ ...base, layout: "resume", disk: { ...base.disk, session: "/s" } }).join(
      " ",
    );
    expect(capture).toContain("memory-backend-file,id=ram0,size=1024M,mem-path=/snap/tmp/ram.bin,share=on");
    expect(resume).toContain("share=off");
    expect(capture).toContain("-machine pc-q35-7.2,memory-backend=ram0");
  });

  it("bounds TCG's translation buffer, and leaves it out of the layout hash", () => {
    const after = (argv: string[], flag: string) => argv[argv.indexOf(flag) + 1];
    expect(after(buildQemuArgv(base), "-accel")).toBe(`tcg,tb-size=${TCG_TB_SIZE_MIB}`);
    expect(after(buildQemuArgv({ ...base, tcgTbSizeMiB: 16 }), "-accel")).toBe("tcg,tb-size=16");
    // QEMU's own default: the accelerator on -machine, as before there was a tb-size.
    const qemuDefault = buildQemuArgv({ ...base, tcgTbSizeMiB: null });
    expect(qemuDefault).not.toContain("-accel");
    expect(after(qemuDefault, "-machine")).toBe("pc-q35-7.2,accel=tcg,memory-backend=ram0");
    const kvm = buildQemuArgv({ ...base, accelerator: "kvm" });
    expect(kvm).not.toContain("-accel");
    expect(after(kvm, "-machine")).toBe("pc-q35-7.2,accel=kvm,memory-backend=ram0");
    expect(layoutHash({ ...base, tcgTbSizeMiB: 16 })).toBe(layoutHash(base));
    expect(layoutHash({ ...base, tcgTbSizeMiB: null })).toBe(layoutHash(base));
  });

  it("stacks base, capture layer and session overlay with explicit backing links", () => {
    const resume = buildQemuArgv({
      ...base,
      layout: "resume",
      disk: { ...base.disk, session: "/run/disk.qcow2" },
    });
    const nodes = resume.flatMap((a, i) => (resume[i - 1] === "-blockdev" ? [JSON.parse(a)] : []));
    const byName = Object.fromEntries(nodes.map((n) => [n["node-name"], n]));
    expect(byName.layer.backing).toBe("base");
    expect(byName.layer["read-only"]).toBe(true);
    expect(byName.session.backing).toBe("layer");
    expect(resume).toContain("virtio-blk-pci,drive=session,id=disk0");
  });

  it("binds every forwarded port to the configured address only", () => {
    const argv = buildQemuArgv({ ...base, bindAddress: "10.1.2.3" }).join(" ");
    expect(argv).toContain("hostfwd=tcp:10.1.2.3:26700-:8101");
    expect(argv).not.toContain("0.0.0.0");
  });

  it("attaches balloon and virtfs only in the cold layout, and never daemonizes", () => {
    const cold = buildQemuArgv({
      ...base,
      layout: "cold",
      disk: { base: "/img/base.qcow2", session: "/run/disk.qcow2" },
      hostShare: { path: "/home/u/proj", readOnly: true },
    });
    expect(devices(cold)).toContain("virtio-balloon-pci");
    expect(cold.join(" ")).toContain(
      "-fsdev local,id=hostfs,path=/home/u/proj,security_model=none,readonly=on",
    );
    expect(devices(buildQemuArgv(base))).not.toContain("virtio-balloon-pci");
    expect(cold).not.toContain("-daemonize");
    expect(devices(cold)).toContain("vmgenid");
  });

  it("escapes commas in paths", () => {
    expect(escapeOpt("/a,b")).toBe("/a,,b");
    expect(buildQemuArgv({ ...base, serialLog: "/x,y/serial.log" }).join(" ")).toContain(
      "file:/x,y/serial.log",
    );
    expect(buildQemuArgv({ ...base, qmpSocket: "/x,y/q.sock" }).join(" ")).toContain("path=/x,,y/q.sock");
  });

  it("hashes the layout without paths or ports, equal for capture and resume", () => {
    const resume = {
      ...base,
      layout: "resume" as const,
      disk: { base: "/elsewhere", layer: "/l", session: "/s" },
    };
    expect(layoutHash(resume)).toBe(layoutHash(base));
    expect(
      layoutHash({
        ...base,
        forwards: [
          { hostPort: 1, guestPort: 8101 },
          { hostPort: 2, guestPort: 8102 },
        ],
      }),
    ).toBe(layoutHash(base));
    expect(layoutHash({ ...base, ramMiB: 2048 })).not.toBe(layoutHash(base));
    expect(layoutHash({ ...base, machineType: "pc-q35-10.0" })).not.toBe(layoutHash(base));
  });
});
