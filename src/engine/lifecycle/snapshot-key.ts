/** The snapshot key of a context: everything that makes a snapshot valid. */
import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { imageDigest } from "../snapshot/image-digest.js";
import { qemuDataDirs, romFiles } from "../host/probe.js";
import { SNAPSHOT_FORMAT_VERSION, snapshotKey, type SnapshotKeyParts } from "../snapshot/key.js";
import { layoutHash } from "../qemu/argv.js";
import { resolveContext, type EngineContext } from "./context.js";
import type { EmulatorConfig } from "../config/index.js";
import { planFor } from "./plan.js";

/** What a caller already knows of the key's inputs. */
export interface KnownKeyInputs {
  /**
   * The base image's sha256, verified by the caller (a download's checksum):
   * the key is made without reading the image, which need not be there yet.
   */
  imageDigest?: string | undefined;
}

export async function keyParts(ctx: EngineContext, known: KnownKeyInputs = {}): Promise<SnapshotKeyParts> {
  const c = ctx.config;
  const plan = planFor(ctx, "capture", { base: c.image, layer: "<layer>" }, "<ram>");
  return {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    arch: c.arch,
    accelerator: ctx.accel.accelerator,
    qemuVersion: ctx.qemu.versionString,
    qemuBuild: await qemuBuild(ctx),
    romDigest: await romDigest(ctx),
    machineType: ctx.machineType,
    cpuModel: ctx.cpuModel,
    cpuFingerprint: ctx.cpuFingerprint,
    ramMiB: c.snapshotRamMiB,
    cpus: c.snapshotCpus,
    imageDigest: known.imageDigest ?? (await imageDigest(c.image, { cacheDir: ctx.cacheDir })),
    firmwareDigest: ctx.firmware ? await imageDigest(ctx.firmware, { cacheDir: ctx.cacheDir }) : "none",
    layoutHash: layoutHash(plan),
    strategy: ctx.strategy,
    hostPorts: { ...c.ports },
    portPrefix: String(c.portPrefix),
  };
}

/**
 * The QEMU build: its package string (a distribution's rebuild always changes
 * it, e.g. 1:8.2.2+ds-0ubuntu1.4 → …1.5), else, for a build of its own with
 * none, the binary's sha256.
 */
async function qemuBuild(ctx: EngineContext): Promise<string> {
  if (ctx.qemu.package) return ctx.qemu.package;
  return `sha256:${await imageDigest(ctx.qemu.binary, { cacheDir: ctx.cacheDir })}`;
}

/**
 * sha256 over the name and content digest of every ROM image QEMU would load (see probe.ts).
 * They are small (a few MiB in all) and hashed afresh, all at once: through the image-digest
 * cache they took hundreds of milliseconds one after another, and their few dozen entries
 * pushed the base image's digest out of that cache.
 */
function romDigest(ctx: EngineContext): Promise<string> {
  // Once per probe: the Action keys its cache entry, then start() keys the
  // same context again, and the ROMs are those of the QEMU as probed.
  let digest = romDigests.get(ctx.qemu);
  if (!digest) {
    digest = hashRoms(ctx);
    romDigests.set(ctx.qemu, digest);
    digest.catch(() => romDigests.delete(ctx.qemu));
  }
  return digest;
}

const romDigests = new WeakMap<EngineContext["qemu"], Promise<string>>();

async function hashRoms(ctx: EngineContext): Promise<string> {
  const list = (dir: string) => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  const dirs = ctx.qemu.dataDirs ?? (await qemuDataDirs(ctx.qemu.binary));
  const files = romFiles(dirs, list);
  const digests = await Promise.all(
    files.map((f) =>
      readFile(f).then(
        (b) => createHash("sha256").update(b).digest("hex"),
        () => "unreadable",
      ),
    ),
  );
  const h = createHash("sha256");
  files.forEach((file, i) => h.update(`${file.slice(file.lastIndexOf("/") + 1)} ${digests[i]}\n`));
  return h.digest("hex");
}

export async function keyOf(
  ctx: EngineContext,
  known: KnownKeyInputs = {},
): Promise<{ key: string; parts: SnapshotKeyParts }> {
  const parts = await keyParts(ctx, known);
  return { key: snapshotKey(parts), parts };
}

/**
 * The snapshot key a start with this config would use on this host, without
 * starting anything (the Action keys its cache entry with it).
 */
export async function snapshotKeyFor(config: EmulatorConfig): Promise<string> {
  return (await keyOf(await resolveContext(config))).key;
}
