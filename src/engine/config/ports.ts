import { ConfigError } from "../errors.js";
import { SERVICE_NAMES, guestPorts } from "./schema.js";
import type { EmulatorConfig, ServiceName } from "./schema.js";

export interface PortPair {
  /** Port on the host (bindAddress). */
  host: number;
  /** Port the service listens on inside the guest. */
  guest: number;
}

/** Host and guest port of every service, in SERVICE_NAMES order (the hostfwd rules). */
export function servicePorts(
  config: Pick<EmulatorConfig, "portPrefix" | "ports">,
): Record<ServiceName, PortPair> {
  const guest = guestPorts(config.portPrefix, config.ports.mockOauth);
  return Object.fromEntries(
    SERVICE_NAMES.map((s) => [s, { host: config.ports[s], guest: guest[s] }]),
  ) as Record<ServiceName, PortPair>;
}

/**
 * The guest contract's runtime.env, as ordered key/values. `vmDirHost` is the
 * run directory as the guest sees it under /host, or "" when the host
 * filesystem is not shared (capture).
 */
export function runtimeEnv(
  config: Pick<EmulatorConfig, "portPrefix" | "ports">,
  vmDirHost: string,
): Record<string, string> {
  if (/[\r\n\0]/.test(vmDirHost)) {
    throw new ConfigError([`vmDirHost ${JSON.stringify(vmDirHost)}: must not contain line breaks or NUL`]);
  }
  const { ports } = config;
  return {
    STACK_EMULATOR_PORT_PREFIX: String(config.portPrefix),
    STACK_EMULATOR_DASHBOARD_HOST_PORT: String(ports.dashboard),
    STACK_EMULATOR_BACKEND_HOST_PORT: String(ports.backend),
    STACK_EMULATOR_MINIO_HOST_PORT: String(ports.minio),
    STACK_EMULATOR_INBUCKET_HOST_PORT: String(ports.inbucket),
    STACK_EMULATOR_MOCK_OAUTH_HOST_PORT: String(ports.mockOauth),
    STACK_EMULATOR_VM_DIR_HOST: vmDirHost,
  };
}
