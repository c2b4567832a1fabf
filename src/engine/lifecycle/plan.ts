/** Builds QEMU plans for a context: the one place layouts meet the config. */
import type { QemuPlan, Layout, DiskChain } from "../qemu/argv.js";
import { servicePorts, SERVICE_NAMES } from "../config/index.js";
import type { EngineContext } from "./context.js";

export function hostShareOf(ctx: EngineContext): QemuPlan["hostShare"] {
  const share = ctx.config.hostShare;
  if (share.mode === "none" || share.path === undefined) return undefined;
  return { path: share.path, readOnly: share.readOnly };
}

export function planFor(ctx: EngineContext, layout: Layout, disk: DiskChain, ramFile?: string): QemuPlan {
  const c = ctx.config;
  const snapshot = layout !== "cold";
  const ports = servicePorts(c);
  return {
    layout,
    strategy: snapshot ? ctx.strategy : undefined,
    arch: c.arch,
    accelerator: ctx.accel.accelerator,
    machineType: ctx.machineType,
    cpuModel: ctx.cpuModel,
    firmware: ctx.firmware,
    vmgenid: ctx.qemu.vmgenid,
    ramMiB: snapshot ? c.snapshotRamMiB : c.ramMiB,
    cpus: snapshot ? c.snapshotCpus : c.cpus,
    disk,
    phantoms: snapshot ? ctx.paths.phantoms : undefined,
    runtimeIso: ctx.paths.runtimeIso,
    ramFile,
    bindAddress: c.bindAddress,
    forwards: SERVICE_NAMES.map((s) => ({ hostPort: ports[s].host, guestPort: ports[s].guest })),
    qmpSocket: ctx.paths.qmpSocket,
    qgaSocket: ctx.paths.qgaSocket,
    serialLog: ctx.paths.serialLog,
    hostShare: layout === "capture" ? undefined : hostShareOf(ctx),
  };
}

export function forwardedPorts(ctx: EngineContext): number[] {
  return SERVICE_NAMES.map((s) => ctx.config.ports[s]);
}
