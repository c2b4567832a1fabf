import { DEFAULTS, SERVICE_NAMES, type ServiceName } from "../../engine/index.js";
import type { EmulatorSpec } from "../crd/types.js";

/** The engine's default port of each service. */
export const DEFAULT_PORTS: Record<ServiceName, number> = {
  dashboard: DEFAULTS["ports.dashboard"],
  backend: DEFAULTS["ports.backend"],
  minio: DEFAULTS["ports.minio"],
  inbucket: DEFAULTS["ports.inbucket"],
  mockOauth: DEFAULTS["ports.mockOauth"],
};

/** The port of each service in the Pod (the engine's host ports) and on the Service. */
export function servicePortsOf(spec: Pick<EmulatorSpec, "ports">): Record<ServiceName, number> {
  return Object.fromEntries(SERVICE_NAMES.map((s) => [s, spec.ports?.[s] ?? DEFAULT_PORTS[s]])) as Record<
    ServiceName,
    number
  >;
}
