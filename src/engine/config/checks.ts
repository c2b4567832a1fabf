import type { z } from "zod";
import { SERVICE_NAMES, guestPorts } from "./constants.js";
import type { ServiceName } from "./constants.js";

// Cross-field rules of EmulatorConfig. Each issue names the fields involved in
// `params.related`, so that loadConfig can say where each value came from.

type Ctx = z.RefinementCtx;
interface PortsShape {
  portPrefix: number;
  ports: Record<ServiceName, number>;
}
interface ShareShape {
  hostShare: { mode: string; path?: string | undefined };
}

/**
 * Runs a rule even when other fields are invalid (so one error lists every
 * problem), but not when a field it reads is itself invalid.
 */
export function unlessIssuesUnder(...prefixes: string[]) {
  return {
    when: (payload: { issues: ReadonlyArray<{ path?: readonly PropertyKey[] }> }) =>
      !payload.issues.some((i) => {
        const path = (i.path ?? []).join(".");
        return (
          path === "" ||
          prefixes.some((p) => path === p || path.startsWith(`${p}.`) || p.startsWith(`${path}.`))
        );
      }),
  };
}

/** Every service needs its own host port. */
export function distinctHostPorts(c: PortsShape, ctx: Ctx): void {
  const owner = new Map<number, ServiceName>();
  for (const name of SERVICE_NAMES) {
    const port = c.ports[name];
    const first = owner.get(port);
    if (first === undefined) {
      owner.set(port, name);
      continue;
    }
    ctx.addIssue({
      code: "custom",
      path: ["ports", name],
      message: `uses the same host port ${port} as ports.${first}; give every service its own port`,
      params: { related: [`ports.${first}`, `ports.${name}`] },
    });
  }
}

const GUEST_PORT_ORDER: readonly ServiceName[] = ["minio", "inbucket", "dashboard", "backend", "mockOauth"];

/** Inside the guest, the prefix's ports and mock OAuth's port must not land on another service's. */
export function distinctGuestPorts(c: PortsShape, ctx: Ctx): void {
  const inGuest = guestPorts(c.portPrefix, c.ports.mockOauth);
  const owner = new Map<number, ServiceName>();
  // Fixed guest ports first, so a clash is blamed on the setting that moved a port.
  for (const name of GUEST_PORT_ORDER) {
    const first = owner.get(inGuest[name]);
    if (first === undefined) {
      owner.set(inGuest[name], name);
      continue;
    }
    const byPrefix = name !== "mockOauth";
    ctx.addIssue({
      code: "custom",
      path: byPrefix ? ["portPrefix"] : ["ports", "mockOauth"],
      message: `gives ${name} the guest port ${inGuest[name]}, which ${first} already uses inside the guest; pick another ${byPrefix ? "prefix" : "port"}`,
      params: { related: byPrefix ? ["portPrefix"] : ["ports.mockOauth", "portPrefix"] },
    });
  }
}

/** A shared directory is required for every mode but "none", and not allowed with "none". */
export function hostSharePath(c: ShareShape, ctx: Ctx): void {
  const { mode, path } = c.hostShare;
  if (mode === "none" ? path === undefined : path !== undefined) return;
  ctx.addIssue({
    code: "custom",
    path: ["hostShare", "path"],
    message:
      mode === "none"
        ? `is not used when hostShare.mode is "none"; remove it`
        : `is required when hostShare.mode is "${mode}" (e.g. hostShare.path=/srv/project)`,
    params: { related: mode === "none" ? ["hostShare.mode", "hostShare.path"] : ["hostShare.mode"] },
  });
}
