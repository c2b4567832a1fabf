/**
 * The API calls the controller makes, and nothing else: one narrow
 * interface (so the RBAC rules can be read off it) over client-node.
 * Every failure is a KubeError; Secret calls never carry the server's
 * message (it could quote a value). Every request has a deadline: a call
 * to an API server that stopped answering fails (KubeError "Timeout")
 * instead of holding a worker, or a leader's renewal, forever.
 */
import {
  CoordinationV1Api,
  CoreV1Api,
  createConfiguration,
  CustomObjectsApi,
  ServerConfiguration,
  type CoreV1Event,
  type KubeConfig,
  type V1Lease,
  type V1ObjectMeta,
  type V1Pod,
  type V1PodList,
  type V1Secret,
  type V1Service,
  type V1ServiceList,
  type V1SecretList,
} from "@kubernetes/client-node";
import { GROUP, PLURAL, VERSION, type Emulator } from "../crd/types.js";
import { CLAIM_PLURAL, POOL_PLURAL, type EmulatorClaim, type EmulatorPool } from "../crd/pool-types.js";
import { call } from "./errors.js";

export const FIELD_MANAGER = "hexclave-emulator-controller";

export interface EmulatorList {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string };
  items: Emulator[];
}

export interface EmulatorApi {
  listEmulators(namespace?: string, labelSelector?: string): Promise<EmulatorList>;
  replaceEmulator(emu: Emulator): Promise<Emulator>;
  replaceEmulatorStatus(emu: Emulator): Promise<Emulator>;
  /** With a resourceVersion, only that version is deleted (Conflict when it changed meanwhile). */
  deleteEmulator(namespace: string, name: string, uid: string, resourceVersion?: string): Promise<void>;
}

export interface List<T> {
  metadata?: { resourceVersion?: string };
  items: T[];
}

/** The warm pools' calls: instances and on-demand Emulators are created; pools and claims get status. */
export interface PoolApi {
  createEmulator(emu: Emulator): Promise<Emulator>;
  listPools(namespace?: string): Promise<List<EmulatorPool>>;
  replacePoolStatus(pool: EmulatorPool): Promise<EmulatorPool>;
  listClaims(namespace?: string): Promise<List<EmulatorClaim>>;
  replaceClaimStatus(claim: EmulatorClaim): Promise<EmulatorClaim>;
}

export interface OwnedApi {
  listPods(namespace: string | undefined, labelSelector: string): Promise<V1PodList>;
  /**
   * The Pod of that name as the API has it now, whatever its labels (the informer sees only
   * ours); undefined when there is none. A list by name: the RBAC grants list, not get.
   */
  readPod(namespace: string, name: string): Promise<V1Pod | undefined>;
  createPod(pod: V1Pod): Promise<V1Pod>;
  deletePod(namespace: string, name: string, uid: string, graceSec: number): Promise<void>;
  listServices(namespace: string | undefined, labelSelector: string): Promise<V1ServiceList>;
  /** The Service of that name as the API has it now, like readPod. */
  readService(namespace: string, name: string): Promise<V1Service | undefined>;
  createService(svc: V1Service): Promise<V1Service>;
  replaceService(svc: V1Service): Promise<V1Service>;
  deleteService(namespace: string, name: string, uid: string): Promise<void>;
  /** Only with watchSecrets (the informer's list); the items' data are dropped at once. */
  listSecrets(namespace: string | undefined, labelSelector: string): Promise<V1SecretList>;
  /** Returns the created Secret's metadata (never its data). */
  createSecret(secret: V1Secret): Promise<V1ObjectMeta>;
  /** The Secret's metadata only: its data is dropped before it leaves this function. */
  readSecretMeta(namespace: string, name: string): Promise<V1ObjectMeta>;
  deleteSecret(namespace: string, name: string, uid: string): Promise<void>;
  createEvent(event: CoreV1Event): Promise<void>;
}

export interface LeaseApi {
  getLease(namespace: string, name: string): Promise<V1Lease>;
  createLease(lease: V1Lease): Promise<V1Lease>;
  replaceLease(lease: V1Lease): Promise<V1Lease>;
}

export type ControllerApi = EmulatorApi & OwnedApi & LeaseApi & PoolApi;

const crd = { group: GROUP, version: VERSION, plural: PLURAL };

/** What a request may take by default: a watch is not a request (the informer bounds its own). */
export const REQUEST_TIMEOUT_MS = 10_000;

type ApiType<T> = new (config: ReturnType<typeof createConfiguration>) => T;

/** kc.makeApiClient, plus an abort signal on every request (client-node has no request timeout of its own). */
export function timedClient<T>(kc: KubeConfig, Api: ApiType<T>, timeoutMs: number): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  return new Api(
    createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: kc },
      promiseMiddleware: [
        {
          pre: (ctx) => {
            ctx.setSignal(AbortSignal.timeout(timeoutMs));
            return Promise.resolve(ctx);
          },
          post: (ctx) => Promise.resolve(ctx),
        },
      ],
    }),
  );
}

export function controllerApi(kc: KubeConfig, timeoutMs = REQUEST_TIMEOUT_MS): ControllerApi {
  const core = timedClient(kc, CoreV1Api, timeoutMs);
  const custom = timedClient(kc, CustomObjectsApi, timeoutMs);
  const coord = timedClient(kc, CoordinationV1Api, timeoutMs);
  const fieldManager = FIELD_MANAGER;
  const nameOf = (o: { metadata?: V1ObjectMeta }) => ({
    namespace: o.metadata?.namespace ?? "",
    name: o.metadata?.name ?? "",
  });
  const preconditions = (uid: string) => ({ preconditions: { uid } });
  const byName = (name: string) => `metadata.name=${name}`;
  const listOf = <T>(plural: string, namespace: string | undefined) =>
    call(`list ${plural}`, () =>
      namespace
        ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural, namespace })
        : custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural }),
    ) as Promise<List<T>>;
  const replaceStatusOf = <T extends { metadata: { name?: string; namespace?: string } }>(
    plural: string,
    o: T,
  ) =>
    call(`update ${plural}/status ${o.metadata.namespace}/${o.metadata.name}`, () =>
      custom.replaceNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        plural,
        namespace: o.metadata.namespace ?? "",
        name: o.metadata.name ?? "",
        body: o,
        fieldManager,
      }),
    ) as Promise<T>;
  return {
    listEmulators: (namespace, labelSelector) =>
      call(`list ${PLURAL}`, () =>
        namespace
          ? custom.listNamespacedCustomObject({ ...crd, namespace, labelSelector })
          : custom.listClusterCustomObject({ ...crd, labelSelector }),
      ) as Promise<EmulatorList>,
    createEmulator: (emu) =>
      call(`create ${PLURAL} ${emu.metadata.namespace}/${emu.metadata.name}`, () =>
        custom.createNamespacedCustomObject({
          ...crd,
          namespace: emu.metadata.namespace ?? "",
          body: emu,
          fieldManager,
        }),
      ) as Promise<Emulator>,
    listPools: (namespace) => listOf<EmulatorPool>(POOL_PLURAL, namespace),
    replacePoolStatus: (pool) => replaceStatusOf(POOL_PLURAL, pool),
    listClaims: (namespace) => listOf<EmulatorClaim>(CLAIM_PLURAL, namespace),
    replaceClaimStatus: (claim) => replaceStatusOf(CLAIM_PLURAL, claim),
    replaceEmulator: (emu) =>
      call(`update ${PLURAL} ${emu.metadata.namespace}/${emu.metadata.name}`, () =>
        custom.replaceNamespacedCustomObject({
          ...crd,
          namespace: emu.metadata.namespace ?? "",
          name: emu.metadata.name ?? "",
          body: emu,
          fieldManager,
        }),
      ),
    replaceEmulatorStatus: (emu) =>
      call(`update ${PLURAL}/status ${emu.metadata.namespace}/${emu.metadata.name}`, () =>
        custom.replaceNamespacedCustomObjectStatus({
          ...crd,
          namespace: emu.metadata.namespace ?? "",
          name: emu.metadata.name ?? "",
          body: emu,
          fieldManager,
        }),
      ),
    deleteEmulator: async (namespace, name, uid, resourceVersion) => {
      await call(`delete ${PLURAL} ${namespace}/${name}`, () =>
        custom.deleteNamespacedCustomObject({
          ...crd,
          namespace,
          name,
          body: { preconditions: { uid, ...(resourceVersion ? { resourceVersion } : {}) } },
        }),
      );
    },
    listPods: (namespace, labelSelector) =>
      call("list pods", () =>
        namespace
          ? core.listNamespacedPod({ namespace, labelSelector })
          : core.listPodForAllNamespaces({ labelSelector }),
      ),
    readPod: async (namespace, name) => {
      const list = await call(`get pod ${namespace}/${name}`, () =>
        core.listNamespacedPod({ namespace, fieldSelector: byName(name) }),
      );
      return list.items[0];
    },
    createPod: (pod) =>
      call(`create pod ${pod.metadata?.name}`, () =>
        core.createNamespacedPod({ ...nameOf(pod), body: pod, fieldManager }),
      ),
    deletePod: async (namespace, name, uid, graceSec) => {
      await call(`delete pod ${namespace}/${name}`, () =>
        core.deleteNamespacedPod({
          namespace,
          name,
          gracePeriodSeconds: graceSec,
          body: { ...preconditions(uid), gracePeriodSeconds: graceSec },
        }),
      );
    },
    listServices: (namespace, labelSelector) =>
      call("list services", () =>
        namespace
          ? core.listNamespacedService({ namespace, labelSelector })
          : core.listServiceForAllNamespaces({ labelSelector }),
      ),
    listSecrets: async (namespace, labelSelector) => {
      const list = await call(
        "list secrets",
        () =>
          namespace
            ? core.listNamespacedSecret({ namespace, labelSelector })
            : core.listSecretForAllNamespaces({ labelSelector }),
        true,
      );
      return { ...list, items: list.items.map((x) => ({ ...x, data: undefined, stringData: undefined })) };
    },
    readService: async (namespace, name) => {
      const list = await call(`get service ${namespace}/${name}`, () =>
        core.listNamespacedService({ namespace, fieldSelector: byName(name) }),
      );
      return list.items[0];
    },
    createService: (svc) =>
      call(`create service ${svc.metadata?.name}`, () =>
        core.createNamespacedService({ ...nameOf(svc), body: svc, fieldManager }),
      ),
    replaceService: (svc) =>
      call(`update service ${svc.metadata?.name}`, () =>
        core.replaceNamespacedService({
          ...nameOf(svc),
          name: svc.metadata?.name ?? "",
          body: svc,
          fieldManager,
        }),
      ),
    deleteService: async (namespace, name, uid) => {
      await call(`delete service ${namespace}/${name}`, () =>
        core.deleteNamespacedService({ namespace, name, body: preconditions(uid) }),
      );
    },
    createSecret: async (secret) => {
      const created = await call(
        `create secret ${secret.metadata?.name}`,
        () =>
          core.createNamespacedSecret({
            namespace: secret.metadata?.namespace ?? "",
            body: secret,
            fieldManager,
          }),
        true,
      );
      return created.metadata ?? {};
    },
    readSecretMeta: async (namespace, name) => {
      const s = await call(
        `get secret ${namespace}/${name}`,
        () => core.readNamespacedSecret({ namespace, name }),
        true,
      );
      return s.metadata ?? {};
    },
    deleteSecret: async (namespace, name, uid) => {
      await call(
        `delete secret ${namespace}/${name}`,
        () => core.deleteNamespacedSecret({ namespace, name, body: preconditions(uid) }),
        true,
      );
    },
    createEvent: async (event) => {
      await call("create event", () =>
        core.createNamespacedEvent({ namespace: event.metadata?.namespace ?? "", body: event }),
      );
    },
    getLease: (namespace, name) =>
      call(`get lease ${namespace}/${name}`, () => coord.readNamespacedLease({ namespace, name })),
    createLease: (lease) =>
      call(`create lease ${lease.metadata?.name}`, () =>
        coord.createNamespacedLease({
          namespace: lease.metadata?.namespace ?? "",
          body: lease,
          fieldManager,
        }),
      ),
    replaceLease: (lease) =>
      call(`update lease ${lease.metadata?.name}`, () =>
        coord.replaceNamespacedLease({
          namespace: lease.metadata?.namespace ?? "",
          name: lease.metadata?.name ?? "",
          body: lease,
          fieldManager,
        }),
      ),
  };
}
