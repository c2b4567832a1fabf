/** The Service in front of an Emulator's Pod: one port per exposed service. */
import type { V1Service, V1ServicePort } from "@kubernetes/client-node";
import { SERVICE_NAMES, type ServiceName } from "../../engine/index.js";
import type { EmulatorSpec, Endpoint } from "../crd/types.js";
import { labelsFor, ownerReference, selectorFor, serviceName, type Owned } from "./names.js";
import { servicePortsOf } from "./ports.js";

/** Port names must be DNS-1035 labels of at most 15 characters. */
export const PORT_NAMES: Record<ServiceName, string> = {
  dashboard: "dashboard",
  backend: "backend",
  minio: "minio",
  inbucket: "inbucket",
  mockOauth: "mock-oauth",
};

export function buildService(owner: Owned, spec: EmulatorSpec): V1Service {
  const ports = servicePortsOf(spec);
  const exposed = SERVICE_NAMES.filter((s) => spec.service.expose.includes(s));
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: serviceName(owner.name),
      namespace: owner.namespace,
      labels: labelsFor(owner.name),
      ownerReferences: [ownerReference(owner)],
    },
    spec: {
      type: spec.service.type,
      selector: selectorFor(owner.name),
      ports: exposed.map((s): V1ServicePort => ({
        name: PORT_NAMES[s],
        protocol: "TCP",
        port: ports[s],
        targetPort: PORT_NAMES[s],
      })),
    },
  };
}

/** What the Service's clients dial: <svc>.<ns>.svc.<domain>:<port>. */
export function endpointsOf(owner: Owned, spec: EmulatorSpec, clusterDomain: string): Endpoint[] {
  const ports = servicePortsOf(spec);
  const host = `${serviceName(owner.name)}.${owner.namespace}.svc.${clusterDomain}`;
  return SERVICE_NAMES.filter((s) => spec.service.expose.includes(s)).map((s) => ({
    name: s,
    host,
    port: ports[s],
    url: `http://${host}:${ports[s]}`,
  }));
}

/**
 * The fields of a live Service the controller owns, to tell whether it must
 * be updated (the API server fills in clusterIP, nodePort, sessionAffinity…).
 */
export function serviceDrift(live: V1Service, desired: V1Service): string | undefined {
  const l = live.spec;
  const d = desired.spec;
  if (!l || !d) return "no spec";
  if ((l.type ?? "ClusterIP") !== d.type) return `type ${l.type} → ${d.type}`;
  if (JSON.stringify(l.selector ?? {}) !== JSON.stringify(d.selector)) return "selector";
  const portsOf = (ps: V1ServicePort[] | undefined) =>
    JSON.stringify((ps ?? []).map((p) => [p.name, p.port, String(p.targetPort), p.protocol ?? "TCP"]));
  if (portsOf(l.ports) !== portsOf(d.ports)) return "ports";
  return undefined;
}
