/**
 * The pieces the controller's API-server tests share: the CRD applied, the
 * controller's ServiceAccount with exactly the rules of src/controller/rbac.ts
 * (the chart test checks the chart grants the same), a token for it, and
 * waits that end on the event that makes them true: a ClusterView watches
 * the namespace (informers, as the controller does) and re-checks every
 * wait on every change it sees.
 */
import { join } from "node:path";
import { stringify } from "yaml";
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1Pod,
  type V1Secret,
  type V1Service,
} from "@kubernetes/client-node";
import { GROUP, PLURAL, VERSION, type Emulator } from "../../src/controller/crd/types.js";
import {
  CLAIM_PLURAL,
  POOL_PLURAL,
  type EmulatorClaim,
  type EmulatorPool,
} from "../../src/controller/crd/pool-types.js";
import { ResilientInformer } from "../../src/controller/kube/informer.js";
import type { CONTROLLER_PERMISSIONS } from "../../src/controller/rbac.js";
import { controllerPermissions, LEASE_PERMISSIONS } from "../../src/controller/rbac.js";
import { REPO_ROOT } from "./tools.js";
import { serviceAccountToken, type TestCluster } from "./controller-apiserver.js";

export const CONTROLLER_NS = "hexclave-system";
export const CONTROLLER_SA = "hexclave-emulator";

/** The chart's CRDs: Emulator, EmulatorPool, EmulatorClaim. */
export function applyCrd(cluster: TestCluster): void {
  cluster.kubectl(["apply", "-f", join(REPO_ROOT, "charts/hexclave-emulator/crds")]);
  cluster.kubectl([
    "wait",
    "--for=condition=Established",
    "crd/emulators.emulator.hexclave.com",
    "crd/emulatorpools.emulator.hexclave.com",
    "crd/emulatorclaims.emulator.hexclave.com",
    "--timeout=60s",
  ]);
}

/** The controller's identity with least-privilege RBAC; returns its token. */
export function controllerServiceAccount(
  cluster: TestCluster,
  leaseName: string,
  { watchSecrets = false }: { watchSecrets?: boolean } = {},
): string {
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
      rules: controllerPermissions(watchSecrets).map(rule),
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

/**
 * Waits re-checked on every notify(): each ends on the change that makes it
 * true. The timeout is a failure deadline only, never how long a wait takes.
 */
export class Signal {
  private readonly checks = new Set<() => void>();

  notify(): void {
    for (const c of [...this.checks]) c();
  }

  /**
   * Resolves with the first value of `check` that is neither undefined nor false, checked now and
   * on every notify(). A throw counts as "not yet" (its message is kept for the timeout's error).
   */
  until<T>(
    what: string,
    check: () => T | undefined | false,
    timeoutMs = 30_000,
    detail?: () => string,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let last: unknown;
      const finish = () => {
        clearTimeout(timer);
        this.checks.delete(run);
      };
      const run = () => {
        try {
          const v = check();
          if (v === undefined || v === false) return;
          finish();
          resolve(v);
        } catch (err) {
          last = err;
        }
      };
      const timer = setTimeout(() => {
        finish();
        const why = last ? `: ${(last as Error).message}` : "";
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${what}${why}${detail ? ` (${detail()})` : ""}`,
          ),
        );
      }, timeoutMs);
      this.checks.add(run);
      run();
    });
  }
}

/** One change a ClusterView saw. `rv` is the etcd revision of it: one order across every kind. */
export interface Seen {
  kind: "emulator" | "pod" | "service" | "secret" | "event" | "pool" | "claim";
  type: "add" | "update" | "delete";
  name: string;
  rv: number;
  object: KubernetesObject;
}

type CoreEvent = KubernetesObject & { reason?: string; involvedObject?: { name?: string } };

/**
 * Watches one namespace's Emulators, Pods, Services, Secrets and Events (and, with `pools`, its
 * EmulatorPools and EmulatorClaims); every change re-checks the waits.
 */
export class ClusterView extends Signal {
  /** Every change seen, in the order it arrived. */
  readonly history: Seen[] = [];
  private readonly informers: Partial<Record<Seen["kind"], ResilientInformer<KubernetesObject>>>;

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    { pools = false }: { pools?: boolean } = {},
  ) {
    super();
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const ns = namespace;
    const lists = {
      emulator: [
        `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`,
        () =>
          custom.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
            namespace: ns,
          }),
      ],
      pod: [`/api/v1/namespaces/${ns}/pods`, () => core.listNamespacedPod({ namespace: ns })],
      service: [`/api/v1/namespaces/${ns}/services`, () => core.listNamespacedService({ namespace: ns })],
      secret: [`/api/v1/namespaces/${ns}/secrets`, () => core.listNamespacedSecret({ namespace: ns })],
      event: [`/api/v1/namespaces/${ns}/events`, () => core.listNamespacedEvent({ namespace: ns })],
    } as const;
    const crdList = (plural: string) =>
      [
        `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${plural}`,
        () => custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural, namespace: ns }),
      ] as const;
    const all = pools ? { ...lists, pool: crdList(POOL_PLURAL), claim: crdList(CLAIM_PLURAL) } : lists;
    this.informers = Object.fromEntries(
      Object.entries(all).map(([kind, [path, list]]) => {
        const inf = new ResilientInformer<KubernetesObject>(
          kind,
          kc,
          path,
          list as () => Promise<KubernetesListObject<KubernetesObject>>,
          { minBackoffMs: 100 },
        );
        inf.onChange((type, object) => {
          this.history.push({
            kind: kind as Seen["kind"],
            type,
            name: object.metadata?.name ?? "",
            rv: Number(object.metadata?.resourceVersion ?? 0),
            object,
          });
          this.notify();
        });
        return [kind, inf];
      }),
    ) as ClusterView["informers"];
  }

  async start(): Promise<void> {
    const all = Object.values(this.informers);
    await Promise.all(all.map((i) => i.start()));
    await Promise.all(all.map((i) => i.waitForSync(60_000)));
  }

  async stop(): Promise<void> {
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }

  private get(kind: Seen["kind"], name: string): KubernetesObject | undefined {
    const inf = this.informers[kind];
    if (!inf) throw new Error(`this ClusterView does not watch ${kind}s`);
    return inf.get(name, this.namespace);
  }
  emulator(name: string): Emulator | undefined {
    return this.get("emulator", name) as unknown as Emulator | undefined;
  }
  /** Every Emulator of the namespace. */
  emulators(): Emulator[] {
    return this.informers.emulator!.list(this.namespace) as unknown as Emulator[];
  }
  pod(name: string): V1Pod | undefined {
    return this.get("pod", name) as V1Pod | undefined;
  }
  service(name: string): V1Service | undefined {
    return this.get("service", name) as V1Service | undefined;
  }
  secret(name: string): V1Secret | undefined {
    return this.get("secret", name) as V1Secret | undefined;
  }
  pool(name: string): EmulatorPool | undefined {
    return this.get("pool", name) as unknown as EmulatorPool | undefined;
  }
  claim(name: string): EmulatorClaim | undefined {
    return this.get("claim", name) as unknown as EmulatorClaim | undefined;
  }
  /** The reasons of the Events recorded on an object of that name. */
  eventReasons(involved: string): string[] {
    return (this.informers.event!.list(this.namespace) as CoreEvent[])
      .filter((e) => e.involvedObject?.name === involved)
      .map((e) => e.reason ?? "");
  }

  /** The changes of one object seen since `from` (an index into history). */
  changes(kind: Seen["kind"], name: string, from = 0): Seen[] {
    return this.history.slice(from).filter((h) => h.kind === kind && h.name === name);
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

/** An Emulator's condition of `type`, if it has one. */
export const conditionOf = (e: Emulator | undefined, type: string) =>
  e?.status?.conditions?.find((c) => c.type === type);

/**
 * A ClusterView wait for `name` to be Ready: the Emulator once it is, and a
 * Degraded condition on the way fails the wait with its message.
 */
export const readyOrDegraded = (view: ClusterView, name: string) => (): Emulator | undefined => {
  const e = view.emulator(name);
  const degraded = conditionOf(e, "Degraded");
  if (degraded?.status === "True") throw new Error(degraded.message);
  return conditionOf(e, "Ready")?.status === "True" ? e : undefined;
};

/** An Emulator manifest, for `kubectl apply -f -`. */
export function emulatorManifest(name: string, namespace: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: "Emulator",
    metadata: { name, namespace },
    spec,
  });
}

/** An EmulatorPool manifest, for `kubectl apply -f -`. */
export function poolManifest(
  name: string,
  namespace: string,
  spec: { template: Record<string, unknown>; replicas?: number; maxCreating?: number },
): string {
  return JSON.stringify({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: "EmulatorPool",
    metadata: { name, namespace },
    spec,
  });
}

/** An EmulatorClaim manifest, for `kubectl apply -f -`. */
export function claimManifest(name: string, namespace: string, poolName: string): string {
  return JSON.stringify({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: "EmulatorClaim",
    metadata: { name, namespace },
    spec: { poolName },
  });
}

/** A ClusterView wait for a claim to be Ready: the claim once it is. */
export const claimReady = (view: ClusterView, name: string) => (): EmulatorClaim | undefined => {
  const c = view.claim(name);
  return c?.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True") ? c : undefined;
};

/** The unclaimed instances of a pool that are Ready and rotated, as a ClusterView sees them. */
export const readyInstances = (view: ClusterView, pool: string): Emulator[] =>
  view
    .emulators()
    .filter(
      (e) =>
        e.metadata.labels?.[`${GROUP}/pool`] === pool &&
        !e.metadata.labels?.[`${GROUP}/claim`] &&
        !e.metadata.deletionTimestamp &&
        ["Ready", "SecretsRotated"].every((t) => conditionOf(e, t)?.status === "True"),
    );
