/**
 * Everything a lifecycle verb needs, resolved once from a config: the host,
 * the QEMU and what it can do, the accelerator, machine type, CPU model and
 * strategy, and the run directory's paths.
 */
import { join } from "node:path";
import { EngineError } from "../errors.js";
import type { EmulatorConfig } from "../config/index.js";
import { chooseAccelerator, detectHost, type AcceleratorChoice, type HostInfo } from "../host/host.js";
import {
  findQemu,
  findQemuImg,
  guestCpuFingerprint,
  pickCpuModel,
  pickMachineType,
  probeQemu,
  type QemuProbe,
} from "../host/probe.js";
import type { Strategy } from "../qemu/argv.js";
import { findFirmware } from "../host/firmware.js";
import { withDeps, type EngineDeps } from "./deps.js";
import { checkImage } from "../image/check.js";
import { runPaths, type RunPaths } from "./run-dir.js";
import { chooseStrategy, supportedStrategies } from "./strategies.js";
import { prefetchImageDigest } from "../snapshot/image-digest.js";

/** Where a config's digest and probe caches live (seedImageDigest's cacheDir). */
export const digestCacheDir = (config: Pick<EmulatorConfig, "home">): string => join(config.home, "cache");

export interface EngineContext {
  config: EmulatorConfig;
  host: HostInfo;
  qemu: QemuProbe;
  qemuImg: string;
  accel: AcceleratorChoice;
  machineType: string;
  cpuModel: string;
  cpuFingerprint: string;
  strategy: Strategy;
  /** arm64 UEFI firmware; undefined on amd64. */
  firmware: string | undefined;
  paths: RunPaths;
  cacheDir: string;
  /** The effects the lifecycle has on the world (real unless a caller gave its own). */
  deps: EngineDeps;
}

export interface ResolveOptions {
  /**
   * Check the image first (default). False for a caller still fetching it
   * (the Action restores the image and the snapshot at once): it checks the
   * image itself once it is there (checkImage), before anything boots.
   */
  imageCheck?: boolean;
}

export async function resolveContext(
  config: EmulatorConfig,
  deps: Partial<EngineDeps> = {},
  { imageCheck = true }: ResolveOptions = {},
): Promise<EngineContext> {
  // Before any QEMU runs (the probe starts one): a bad image is one clear error.
  if (imageCheck) checkImage(config.image, config.arch);
  const host = detectHost();
  const binary = findQemu(config.arch, config.qemuBinary);
  const cacheDir = digestCacheDir(config);
  // Every caller goes on to the snapshot key, whose slowest input is the
  // image's digest (seconds for a new multi-GiB image): read it while QEMU is
  // probed. A caller with a verified digest seeds it first (seedImageDigest).
  if (imageCheck) prefetchImageDigest(config.image, { cacheDir });
  const qemu = await probeQemu(binary, {
    cacheDir,
    tryKvm: host.kvmWritable && host.cpuVirtualization && host.arch === config.arch,
  });
  const accel = chooseAccelerator(host, config.arch, {
    kvmUsable: qemu.kvmUsable,
    hvfListed: qemu.accelerators.includes("hvf"),
  });
  const cpuModel = pickCpuModel(config.arch, accel.accelerator, host.arch);
  const supported = supportedStrategies(qemu);
  if (config.strategy !== "auto" && !supported.includes(config.strategy)) {
    throw new EngineError(
      "STRATEGY_UNSUPPORTED",
      `snapshot strategy ${config.strategy} is not supported by QEMU ${qemu.versionString} (it offers ${supported.join(", ")})`,
      {
        hint:
          config.strategy === "mapped-ram"
            ? "mapped-ram needs QEMU 9.0 or later; use strategy auto"
            : "use strategy auto",
      },
    );
  }
  return {
    config,
    host,
    qemu,
    qemuImg: findQemuImg(binary, config.qemuImg),
    accel,
    machineType: pickMachineType(qemu, config.arch),
    cpuModel,
    cpuFingerprint: guestCpuFingerprint(accel.accelerator, cpuModel),
    strategy: chooseStrategy(config.strategy, qemu),
    firmware: findFirmware(config.arch, config.firmware, binary),
    paths: runPaths(config.runDir),
    cacheDir,
    deps: withDeps(deps),
  };
}

/** The config fields resolveContext reads: a context stays valid for a config equal in these. */
const RESOLVED_FROM = [
  "arch",
  "image",
  "qemuBinary",
  "qemuImg",
  "strategy",
  "firmware",
  "home",
  "runDir",
] as const;

/**
 * `ctx` for `config` when config differs from ctx.config only in fields the
 * context was not resolved from (timeouts, ports, rotation…), so a caller
 * that probed once (the Action, to pick its timeouts) does not probe again;
 * else undefined.
 */
export function reuseContext(ctx: EngineContext, config: EmulatorConfig): EngineContext | undefined {
  const same = RESOLVED_FROM.every((f) => JSON.stringify(ctx.config[f]) === JSON.stringify(config[f]));
  return same ? { ...ctx, config } : undefined;
}
