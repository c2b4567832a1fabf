export {
  EmulatorConfig,
  ARCHES,
  SNAPSHOT_MODES,
  STRATEGIES,
  HOST_SHARE_MODES,
  SERVICE_NAMES,
  LIMITS,
  guestPorts,
} from "./schema.js";
export type { Arch, ConfigOverrides, HostShare, Ports, ServiceName } from "./schema.js";
export { loadConfig } from "./load.js";
export type { LoadConfigOptions } from "./load.js";
export { ENV_VARS } from "./env.js";
export type { EnvVar } from "./env.js";
export type { FieldPath } from "./fields.js";
export { servicePorts, runtimeEnv } from "./ports.js";
export type { PortPair } from "./ports.js";
export { hostArchToArch } from "./defaults.js";
