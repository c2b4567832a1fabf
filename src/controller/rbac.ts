/**
 * The permissions the controller's calls need (src/controller/kube/client.ts),
 * one row per API call family. The chart's Role/ClusterRole must grant exactly
 * these; the chart test checks it against the rendered RBAC and against a real
 * API server (SubjectAccessReview), allowed and denied.
 */
export interface Permission {
  group: string;
  resource: string;
  verbs: readonly string[];
  /** Granted in the release namespace on one name only (the Lease). */
  leaseOnly?: boolean;
}

/**
 * With `watchSecrets`, the owned Secrets are also watched (so a Secret deleted or replaced wakes
 * its Emulator at once): list and watch on Secrets, which RBAC cannot narrow to ours. The chart
 * grants it by default only in a Role of one watched namespace (controller.watchSecrets).
 */
export function controllerPermissions(watchSecrets: boolean): readonly Permission[] {
  return watchSecrets
    ? CONTROLLER_PERMISSIONS.map((p) =>
        p.resource === "secrets" ? { ...p, verbs: ["list", "watch", ...p.verbs] } : p,
      )
    : CONTROLLER_PERMISSIONS;
}

export const CONTROLLER_PERMISSIONS: readonly Permission[] = [
  // Informer (list, watch); finalizer add/remove and a claim's bind (update); spec.ttlSeconds expiry
  // and a used pool instance (delete); pool instances and claims' on-demand Emulators (create).
  {
    group: "emulator.hexclave.com",
    resource: "emulators",
    verbs: ["list", "watch", "create", "update", "delete"],
  },
  { group: "emulator.hexclave.com", resource: "emulators/status", verbs: ["update"] },
  // Owner references with blockOwnerDeletion need update on the owner's finalizers subresource.
  { group: "emulator.hexclave.com", resource: "emulators/finalizers", verbs: ["update"] },
  // Warm pools and their claims: informers, and status. Their Emulators' owner references block
  // the owner's deletion, which needs update on its finalizers.
  { group: "emulator.hexclave.com", resource: "emulatorpools", verbs: ["list", "watch"] },
  { group: "emulator.hexclave.com", resource: "emulatorpools/status", verbs: ["update"] },
  { group: "emulator.hexclave.com", resource: "emulatorpools/finalizers", verbs: ["update"] },
  { group: "emulator.hexclave.com", resource: "emulatorclaims", verbs: ["list", "watch"] },
  { group: "emulator.hexclave.com", resource: "emulatorclaims/status", verbs: ["update"] },
  { group: "emulator.hexclave.com", resource: "emulatorclaims/finalizers", verbs: ["update"] },
  // list also reads one Pod or Service by name (a field selector) to see whose it is: no get needed.
  { group: "", resource: "pods", verbs: ["list", "watch", "create", "delete"] },
  { group: "", resource: "services", verbs: ["list", "watch", "create", "update", "delete"] },
  // Created once; read to check its owner before trusting or deleting it (listed and watched only
  // with watchSecrets, above).
  { group: "", resource: "secrets", verbs: ["create", "get", "delete"] },
  { group: "", resource: "events", verbs: ["create"] },
];

export const LEASE_PERMISSIONS: readonly Permission[] = [
  { group: "coordination.k8s.io", resource: "leases", verbs: ["create"] },
  { group: "coordination.k8s.io", resource: "leases", verbs: ["get", "update"], leaseOnly: true },
];
