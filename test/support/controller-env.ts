/**
 * The pieces the controller's API-server tests share: the CRD applied, the
 * controller's ServiceAccount with exactly the rules of src/controller/rbac.ts
 * (the chart test checks the chart grants the same), a token for it, and
 * a way to wait for a condition.
 */
import { join } from "node:path";
import { stringify } from "yaml";
import { CONTROLLER_PERMISSIONS, LEASE_PERMISSIONS } from "../../src/controller/rbac.js";
import { REPO_ROOT } from "./tools.js";
import { serviceAccountToken, type TestCluster } from "./controller-apiserver.js";

export const CONTROLLER_NS = "hexclave-system";
export const CONTROLLER_SA = "hexclave-emulator";

export function applyCrd(cluster: TestCluster): void {
  cluster.kubectl(["apply", "-f", join(REPO_ROOT, "charts/hexclave-emulator/crds/emulators.yaml")]);
  cluster.kubectl([
    "wait",
    "--for=condition=Established",
    "crd/emulators.emulator.hexclave.com",
    "--timeout=60s",
  ]);
}

/** The controller's identity with least-privilege RBAC; returns its token. */
export function controllerServiceAccount(cluster: TestCluster, leaseName: string): string {
  cluster.kubectl(["create", "namespace", CONTROLLER_NS]);
  cluster.kubectl(["create", "serviceaccount", CONTROLLER_SA, "-n", CONTROLLER_NS]);
  const rule = (p: (typeof CONTROLLER_PERMISSIONS)[number]) => ({
    apiGroups: [p.group],
    resources: [p.resource],
    verbs: [...p.verbs],
    ...(p.leaseOnly ? { resourceNames: [leaseName] } : {}),
  });
  const subject = [{ kind: "ServiceAccount", name: CONTROLLER_SA, namespace: CONTROLLER_NS }];
  const docs = [
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "hexclave-emulator" },
      rules: CONTROLLER_PERMISSIONS.map(rule),
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "hexclave-emulator" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "hexclave-emulator" },
      subjects: subject,
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "hexclave-emulator-leader", namespace: CONTROLLER_NS },
      rules: LEASE_PERMISSIONS.map(rule),
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "hexclave-emulator-leader", namespace: CONTROLLER_NS },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "hexclave-emulator-leader" },
      subjects: subject,
    },
  ];
  cluster.kubectl(["apply", "-f", "-"], docs.map((d) => stringify(d)).join("---\n"));
  return serviceAccountToken(cluster, CONTROLLER_NS, CONTROLLER_SA);
}

export async function eventually<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function getJson<T = Record<string, unknown>>(cluster: TestCluster, args: string[]): T | undefined {
  try {
    return JSON.parse(cluster.kubectl(["get", ...args, "-o", "json"])) as T;
  } catch (err) {
    if (/NotFound|not found/.test((err as { stderr?: string }).stderr ?? "")) return undefined;
    throw err;
  }
}
