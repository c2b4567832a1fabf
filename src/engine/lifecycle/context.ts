/**
 * Everything a lifecycle verb needs, resolved once from a config: the host,
 * the QEMU and what it can do, the accelerator, machine type, CPU model and
 * strategy, and the run directory's paths.
 */
import { join } from "node:path";
import { EngineError } from "../errors.js";
import type { EmulatorConfig } from "../config/index.js";
import {
  chooseAccelerator,
  cpuFingerprint,
  detectHost,
  type AcceleratorChoice,
  type HostInfo,
} from "../host/host.js";
import { findQemu, pickCpuModel, pickMachineType, probeQemu, type QemuProbe } from "../host/probe.js";
import type { Strategy } from "../qemu/argv.js";
import { runPaths, type RunPaths } from "./run-dir.js";
import { chooseStrategy, supportedStrategies } from "./strategies.js";

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
  paths: RunPaths;
  cacheDir: string;
}

/** qemu-img beside the QEMU binary (wrappers ship one), else on PATH. */
function qemuImgFor(binary: string): string {
  const sibling = join(binary, "..", "qemu-img");
  return binary.includes("/") ? sibling : "qemu-img";
}

export async function resolveContext(config: EmulatorConfig): Promise<EngineContext> {
  const host = detectHost();
  const binary = findQemu(config.arch, config.qemuBinary);
  const cacheDir = join(config.home, "cache");
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
    qemuImg: qemuImgFor(binary),
    accel,
    machineType: pickMachineType(qemu, config.arch),
    cpuModel,
    cpuFingerprint: cpuFingerprint(accel.accelerator, cpuModel).id,
    strategy: chooseStrategy(config.strategy, qemu),
    paths: runPaths(config.runDir),
    cacheDir,
  };
}
