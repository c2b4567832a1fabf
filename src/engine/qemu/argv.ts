/**
 * The QEMU command line, as a pure function of a plan. No I/O.
 *
 * Three layouts:
 *  - cold:    boot with the user's RAM/CPUs, virtio-balloon and virtfs attached.
 *  - capture: the snapshot-compatible layout, booted cold, later migrated out.
 *  - resume:  the same layout with `-incoming defer`.
 * Capture and resume must produce the same guest-visible device tree in the
 * same order (migration matches devices by their PCI slot); everything
 * host-only (block node graph, sockets, hostfwd, -fsdev) may differ.
 */
import { createHash } from "node:crypto";

export type Layout = "cold" | "capture" | "resume";
export type Strategy = "template" | "mapped-ram" | "stream";
export type Accelerator = "kvm" | "hvf" | "tcg";
export type Arch = "amd64" | "arm64";

/** base image ← [snapshot disk layer] ← session overlay. */
export interface DiskChain {
  base: string;
  /** capture: the layer the capture boot writes (rw). resume: the snapshot's read-only layer. */
  layer?: string | undefined;
  /** cold and resume: the overlay this run writes. */
  session?: string | undefined;
}

export interface PortForward {
  hostPort: number;
  guestPort: number;
}

export interface QemuPlan {
  layout: Layout;
  /** Snapshot layouts only. */
  strategy?: Strategy | undefined;
  arch: Arch;
  accelerator: Accelerator;
  /** Versioned, e.g. pc-q35-7.2 or virt-10.0. */
  machineType: string;
  cpuModel: string;
  /** arm64 UEFI firmware. */
  firmware?: string | undefined;
  /** false: this QEMU has no vmgenid device (qemu-system-aarch64 up to 10.0 at least). Default true. */
  vmgenid?: boolean | undefined;
  ramMiB: number;
  cpus: number;
  disk: DiskChain;
  /** Two read-only placeholder disks in the slots the image's build ISOs had. */
  phantoms?: readonly [string, string] | undefined;
  runtimeIso: string;
  /** template strategy: the guest RAM file (memory-backend-file). */
  ramFile?: string | undefined;
  bindAddress: string;
  forwards: readonly PortForward[];
  qmpSocket: string;
  qgaSocket: string;
  serialLog: string;
  hostShare?: { path: string; readOnly: boolean } | undefined;
  /**
   * Not an argument: descriptors QEMU inherits (as its fd 3, 4, …) and so
   * holds while it runs; the snapshot's use lock, so the store knows a VM
   * still reads its files however the engine's process ends.
   */
  holdFds?: readonly number[] | undefined;
  /**
   * TCG's translation buffer, MiB (`-accel tcg,tb-size=`). Undefined: the
   * engine's default (TCG_TB_SIZE_MIB); null: QEMU's own (1 GiB on 64-bit
   * hosts). Host-only: not guest state, not in the layout hash.
   */
  tcgTbSizeMiB?: number | null | undefined;
}

/**
 * The translation buffer fills with code the guest runs and is private to
 * each QEMU: with QEMU's 1 GiB default it was most of what an extra guest
 * from one template costs. Smaller is flushed and refilled more often.
 */
export const TCG_TB_SIZE_MIB = 64;

/** QEMU's option syntax escapes a comma by doubling it. */
export function escapeOpt(value: string): string {
  return value.replace(/,/g, ",,");
}

const blockdev = (spec: Record<string, unknown>): string[] => ["-blockdev", JSON.stringify(spec)];

function fileNode(filename: string, readOnly: boolean): Record<string, unknown> {
  return { driver: "file", filename, "read-only": readOnly };
}

function diskArgs(plan: QemuPlan): string[] {
  const { base, layer, session } = plan.disk;
  const args = blockdev({
    "node-name": "base",
    driver: "qcow2",
    "read-only": true,
    file: fileNode(base, true),
  });
  let top = "base";
  // Backing links are given explicitly, so the paths recorded inside the
  // overlays never matter: a snapshot restored elsewhere still opens.
  if (layer !== undefined) {
    const rw = plan.layout === "capture";
    args.push(
      ...blockdev({
        "node-name": "layer",
        driver: "qcow2",
        "read-only": !rw,
        backing: top,
        file: fileNode(layer, !rw),
      }),
    );
    top = "layer";
  }
  if (plan.layout !== "capture") {
    if (session === undefined) throw new Error(`argv: ${plan.layout} layout needs a session overlay`);
    args.push(
      ...blockdev({ "node-name": "session", driver: "qcow2", backing: top, file: fileNode(session, false) }),
    );
    top = "session";
  }
  args.push("-device", `virtio-blk-pci,drive=${top},id=disk0`);
  return args;
}

function readOnlyRaw(node: string, path: string, id: string): string[] {
  return [
    ...blockdev({ "node-name": node, driver: "raw", "read-only": true, file: fileNode(path, true) }),
    "-device",
    `virtio-blk-pci,drive=${node},id=${id}`,
  ];
}

function machineArgs(plan: QemuPlan): string[] {
  const snapshot = plan.layout !== "cold";
  const template = snapshot && plan.strategy === "template";
  const tb = plan.tcgTbSizeMiB === undefined ? TCG_TB_SIZE_MIB : plan.tcgTbSizeMiB;
  const tbSize = plan.accelerator === "tcg" && tb !== null;
  // -accel and -machine accel= exclude each other; -accel only when it says more.
  const machine = tbSize ? [plan.machineType] : [plan.machineType, `accel=${plan.accelerator}`];
  const args: string[] = tbSize ? ["-accel", `tcg,tb-size=${tb}`] : [];
  if (template) {
    if (plan.ramFile === undefined) throw new Error("argv: the template strategy needs a RAM file");
    machine.push("memory-backend=ram0");
    // Capture writes guest RAM into the file (share=on); resume maps it
    // privately (share=off): copy on write, the template is never modified.
    const share = plan.layout === "capture" ? "on" : "off";
    args.push(
      "-object",
      `memory-backend-file,id=ram0,size=${plan.ramMiB}M,mem-path=${escapeOpt(plan.ramFile)},share=${share}`,
    );
  }
  args.unshift("-machine", machine.join(","), "-cpu", plan.cpuModel);
  if (plan.firmware !== undefined) args.push("-bios", plan.firmware);
  args.push("-m", `${plan.ramMiB}M`, "-smp", String(plan.cpus));
  return args;
}

function netArgs(plan: QemuPlan): string[] {
  const bind = plan.bindAddress.includes(":") ? `[${plan.bindAddress}]` : plan.bindAddress;
  const fwd = plan.forwards.map((f) => `hostfwd=tcp:${bind}:${f.hostPort}-:${f.guestPort}`);
  return ["-netdev", ["user", "id=net0", ...fwd].join(","), "-device", "virtio-net-pci,netdev=net0,id=nic0"];
}

function channelArgs(plan: QemuPlan): string[] {
  return [
    "-chardev",
    `socket,id=qmp,path=${escapeOpt(plan.qmpSocket)},server=on,wait=off`,
    "-mon",
    "chardev=qmp,mode=control",
    "-chardev",
    `socket,id=qga0,path=${escapeOpt(plan.qgaSocket)},server=on,wait=off`,
    "-device",
    "virtio-serial-pci,id=vser0",
    "-device",
    "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
  ];
}

function fsdevArg(share: { path: string; readOnly: boolean }): string[] {
  const ro = share.readOnly ? ",readonly=on" : "";
  return ["-fsdev", `local,id=hostfs,path=${escapeOpt(share.path)},security_model=none${ro}`];
}

/** The argv (without the binary) for a plan. */
export function buildQemuArgv(plan: QemuPlan): string[] {
  const snapshot = plan.layout !== "cold";
  const args: string[] = ["-name", "hexclave-emulator", "-nodefaults", "-no-user-config", "-display", "none"];
  args.push(...machineArgs(plan));
  // A new generation id on every restore makes Linux reseed its RNG. Without
  // it, only the engine's rotation after resume tells resumed guests apart.
  if (plan.vmgenid !== false) args.push("-device", "vmgenid,guid=auto,id=vmgenid0");
  args.push(...diskArgs(plan));
  if (snapshot) {
    const phantoms = plan.phantoms;
    if (phantoms === undefined) throw new Error("argv: snapshot layouts need the two phantom disks");
    args.push(
      ...readOnlyRaw("phantom1", phantoms[0], "phantom1"),
      ...readOnlyRaw("phantom2", phantoms[1], "phantom2"),
    );
  }
  args.push(...readOnlyRaw("stackcfg", plan.runtimeIso, "stackcfg"));
  args.push(...netArgs(plan), ...channelArgs(plan));
  if (snapshot) {
    // Reserved for hot-plugging virtio-9p after resume (a mounted 9p share
    // blocks migration). Must stay the last device.
    args.push("-device", "pcie-root-port,id=hostfs-port,bus=pcie.0,chassis=1");
    if (plan.layout === "resume" && plan.hostShare) args.push(...fsdevArg(plan.hostShare));
    if (plan.layout === "resume") args.push("-incoming", "defer");
  } else {
    args.push("-device", "virtio-balloon-pci,id=balloon0");
    if (plan.hostShare) {
      args.push(
        ...fsdevArg(plan.hostShare),
        "-device",
        "virtio-9p-pci,fsdev=hostfs,mount_tag=hostfs,id=hostfs-dev",
      );
    }
  }
  args.push("-serial", `file:${plan.serialLog}`);
  return args;
}

/**
 * A stable hash of what the guest can see of the layout: the capture argv
 * with every path, socket, port and bind address replaced by a placeholder.
 * Capture and resume of one snapshot hash the same.
 */
export function layoutHash(plan: QemuPlan): string {
  const neutral: QemuPlan = {
    ...plan,
    layout: plan.layout === "cold" ? "cold" : "capture",
    disk: { base: "<base>", layer: plan.layout === "cold" ? undefined : "<layer>", session: "<session>" },
    phantoms: plan.phantoms ? ["<phantom1>", "<phantom2>"] : undefined,
    runtimeIso: "<iso>",
    ramFile: plan.ramFile === undefined ? undefined : "<ram>",
    bindAddress: "<bind>",
    forwards: plan.forwards.map((f, i) => ({ hostPort: i, guestPort: f.guestPort })),
    qmpSocket: "<qmp>",
    qgaSocket: "<qga>",
    serialLog: "<serial>",
    hostShare: undefined,
    firmware: plan.firmware === undefined ? undefined : "<firmware>",
    tcgTbSizeMiB: null,
  };
  return createHash("sha256")
    .update(JSON.stringify(buildQemuArgv(neutral)))
    .digest("hex")
    .slice(0, 16);
}
