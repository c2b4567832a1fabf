/** The snapshot key of a context: everything that makes a snapshot valid. */
import { imageDigest } from "../snapshot/image-digest.js";
import { SNAPSHOT_FORMAT_VERSION, snapshotKey, type SnapshotKeyParts } from "../snapshot/key.js";
import { layoutHash } from "../qemu/argv.js";
import { resolveContext, type EngineContext } from "./context.js";
import type { EmulatorConfig } from "../config/index.js";
import { planFor } from "./plan.js";

export async function keyParts(ctx: EngineContext): Promise<SnapshotKeyParts> {
  const c = ctx.config;
  const plan = planFor(ctx, "capture", { base: c.image, layer: "<layer>" }, "<ram>");
  return {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    arch: c.arch,
    accelerator: ctx.accel.accelerator,
    qemuVersion: ctx.qemu.versionString,
    machineType: ctx.machineType,
    cpuModel: ctx.cpuModel,
    cpuFingerprint: ctx.cpuFingerprint,
    ramMiB: c.snapshotRamMiB,
    cpus: c.snapshotCpus,
    imageDigest: await imageDigest(c.image, { cacheDir: ctx.cacheDir }),
    firmwareDigest: ctx.firmware ? await imageDigest(ctx.firmware, { cacheDir: ctx.cacheDir }) : "none",
    layoutHash: layoutHash(plan),
    strategy: ctx.strategy,
    hostPorts: { ...c.ports },
    portPrefix: String(c.portPrefix),
  };
}

export async function keyOf(ctx: EngineContext): Promise<{ key: string; parts: SnapshotKeyParts }> {
  const parts = await keyParts(ctx);
  return { key: snapshotKey(parts), parts };
}

/**
 * The snapshot key a start with this config would use on this host, without
 * starting anything (the Action keys its cache entry with it).
 */
export async function snapshotKeyFor(config: EmulatorConfig): Promise<string> {
  return (await keyOf(await resolveContext(config))).key;
}
