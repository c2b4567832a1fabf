/**
 * The engine's public API: the only engine module the edges (the Action, the
 * Kubernetes controller and agent, the benchmark) import; package.json
 * `exports` names it, and a lint rule refuses a deep import from an edge.
 * What is not here is the engine's own business and may change freely.
 */

// Lifecycle verbs.
export { start, type StartOptions, type StartResult } from "./lifecycle/start.js";
export { stopVm } from "./lifecycle/stop.js";
export { status, type StatusReport } from "./lifecycle/status.js";
export { captureOnly } from "./lifecycle/capture-verb.js";
export { realDeps, type EngineDeps } from "./lifecycle/deps.js";
export { pullImage, releaseAssetUrl, DEFAULT_RELEASE_BASE, type PullResult } from "./image/pull.js";

// Config.
export {
  loadConfig,
  ARCHES,
  SERVICE_NAMES,
  SNAPSHOT_MODES,
  type Arch,
  type ConfigOverrides,
  EmulatorConfig,
  type FieldPath,
  type ServiceName,
} from "./config/index.js";
export { DEFAULTS } from "./config/defaults.js";
// For the Action: which environment variables the engine reads (its summary lists
// those that applied).
export { ENV_VARS, type EnvVar } from "./config/index.js";

// Events and errors.
export { Phases, silent, type EngineEvent, type EventSink, type SkippedStep } from "./lifecycle/events.js";
export { ConfigError, EngineError, TimeoutError, describeError } from "./errors.js";

// The snapshot key and store, and moving snapshots between machines.
export { snapshotKeyFor, keyOf as snapshotKeyOf, type KnownKeyInputs } from "./lifecycle/snapshot-key.js";
export {
  openSnapshotStore,
  packSnapshot,
  unpackSnapshot,
  unpackSnapshotStream,
  type UnpackResult,
  type PublishedSnapshot,
  type SnapshotStore,
  type Usability,
} from "./snapshot/index.js";
export { sha256File } from "./snapshot/hash.js";
// A zstd stream decompressor, for compressed bytes off the network (the Action's cache entries).
export { zstdDecompressStream, type ZstdStreamDecompressor } from "./snapshot/zstd.js";
export { seedImageDigest } from "./snapshot/image-digest.js";
// The node store's size (the agent's metric) and its clean-up to a budget.
export { storeUsage, type StoreUsage, type SnapshotUsage } from "./snapshot/usage.js";
export { gcStore } from "./snapshot/gc-verb.js";
export type { GcReport } from "./snapshot/evict.js";

// The run directory of an emulator, and its QEMU process.
export { runPaths, type RunPaths } from "./lifecycle/run-dir.js";
export { isAlive, readPidFile, type PidRecord } from "./qemu/process.js";

// The host: QEMU discovery, and running a host command (the engine's one spawn site).
export { findQemu, onPath } from "./host/probe.js";
export { run, CommandError, type RunOptions } from "./exec.js";

// The guest contract's pieces an edge checks itself.
export { checkOnce, probeHost, servicesFor } from "./guest/health.js";
export { checkSecrets, type RotatedSecrets } from "./guest/rotation.js";

// The building blocks of a start, for the benchmark: it measures each phase
// and the floor beneath them (QEMU alone, a resume without the guest steps).
// Kept narrow on purpose: an edge that needs more asks for it here.
export {
  digestCacheDir,
  resolveContext,
  type EngineContext,
  type ResolveOptions,
} from "./lifecycle/context.js";
export { checkImage } from "./image/check.js";
export { planFor } from "./lifecycle/plan.js";
export { launchVm, type LaunchedVm } from "./lifecycle/launch.js";
export { connectAgent, finishGuest, vmDirHost, writeRuntimeIso } from "./lifecycle/boot.js";
export { resumeState } from "./lifecycle/migrate.js";
export { migrationSpec, supportedStrategies, SNAPSHOT_FILES } from "./lifecycle/strategies.js";
export { createOverlay, ensurePhantoms, virtualSize } from "./lifecycle/disks.js";
export { ensureRunDir, clearRuntimeFiles } from "./lifecycle/run-dir.js";
export { killVm } from "./lifecycle/stop.js";
export { buildQemuArgv, escapeOpt, type PortForward, type QemuPlan, type Strategy } from "./qemu/argv.js";
export type { QmpEvent } from "./qemu/qmp.js";
export { detectHost } from "./host/host.js";
export { servicePorts } from "./config/index.js";
