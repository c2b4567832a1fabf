/**
 * The reconcile's decisions about objects of its names, against an
 * in-memory API whose informer caches lag behind it only where a test says
 * so: whose an object is is read from the API, never guessed from time.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { CoreV1Event, V1ObjectMeta, V1Pod, V1Secret, V1Service } from "@kubernetes/client-node";
import { FINALIZER, type Emulator } from "../../src/controller/crd/types.js";
import type { EmulatorApi, EmulatorList, OwnedApi } from "../../src/controller/kube/client.js";
import { KubeError } from "../../src/controller/kube/errors.js";
import { labelsFor, ownerReference } from "../../src/controller/objects/names.js";
import { controllerOptions } from "../../src/controller/options.js";
import { CONFLICT_RECHECK_MS, Reconciler, SAFETY_NET_MS } from "../../src/controller/reconcile/reconciler.js";

const NS = "ns";
const UID = "emu-uid";
const exists = (what: string) => new KubeError(409, "AlreadyExists", `${what} already exists`);
const notFound = (what: string) => new KubeError(404, "NotFound", `${what} not found`);

type Obj = { metadata?: V1ObjectMeta };

/** The API server's objects, by name; `hideOnRead` makes a read miss an object (deleted in between). */
class FakeApi implements EmulatorApi, OwnedApi {
  emulator!: Emulator;
  readonly pods = new Map<string, V1Pod>();
  readonly services = new Map<string, V1Service>();
  readonly secrets = new Map<string, V1Secret>();
  readonly calls: string[] = [];
  hideOnRead = false;
  private rv = 1;

  private stamp<T extends Obj>(o: T): T {
    return {
      ...o,
      metadata: {
        ...o.metadata,
        uid: o.metadata?.uid ?? `uid-${this.rv}`,
        resourceVersion: String(++this.rv),
      },
    };
  }
  private create<T extends Obj>(store: Map<string, T>, o: T, what: string): T {
    const name = o.metadata?.name ?? "";
    this.calls.push(`create ${what} ${name}`);
    if (store.has(name)) throw exists(`${what} ${name}`);
    const stored = this.stamp(o);
    store.set(name, stored);
    return stored;
  }
  private read<T>(store: Map<string, T>, name: string): T | undefined {
    return this.hideOnRead ? undefined : store.get(name);
  }

  listEmulators = (): Promise<EmulatorList> => Promise.resolve({ items: [this.emulator] });
  replaceEmulator = (emu: Emulator): Promise<Emulator> => {
    this.calls.push(`update emulator ${emu.metadata.finalizers?.join(",") ?? ""}`);
    this.emulator = { ...emu, metadata: { ...emu.metadata, resourceVersion: String(++this.rv) } };
    return Promise.resolve(this.emulator);
  };
  replaceEmulatorStatus = (emu: Emulator): Promise<Emulator> => {
    this.emulator = { ...this.emulator, status: emu.status };
    return Promise.resolve(this.emulator);
  };
  deleteEmulator = (): Promise<void> => Promise.resolve();
  listPods = () => Promise.resolve({ items: [...this.pods.values()] });
  readPod = (_ns: string, name: string) => Promise.resolve(this.read(this.pods, name));
  createPod = (pod: V1Pod) => Promise.resolve(this.create(this.pods, pod, "pod"));
  deletePod = (_ns: string, name: string) => {
    this.calls.push(`delete pod ${name}`);
    const pod = this.pods.get(name);
    if (pod) this.pods.set(name, { ...pod, metadata: { ...pod.metadata, deletionTimestamp: new Date() } });
    return Promise.resolve();
  };
  listServices = () => Promise.resolve({ items: [...this.services.values()] });
  readService = (_ns: string, name: string) => Promise.resolve(this.read(this.services, name));
  createService = (svc: V1Service) => Promise.resolve(this.create(this.services, svc, "service"));
  replaceService = (svc: V1Service) => {
    this.calls.push(`update service ${svc.metadata?.name}`);
    const stored = this.stamp(svc);
    this.services.set(svc.metadata?.name ?? "", stored);
    return Promise.resolve(stored);
  };
  deleteService = (_ns: string, name: string) => {
    this.calls.push(`delete service ${name}`);
    this.services.delete(name);
    return Promise.resolve();
  };
  createSecret = async (secret: V1Secret) => {
    this.create(this.secrets, secret, "secret");
  };
  readSecretMeta = (_ns: string, name: string) => {
    const s = this.read(this.secrets, name);
    return s ? Promise.resolve(s.metadata ?? {}) : Promise.reject(notFound(`secret ${name}`));
  };
  deleteSecret = (_ns: string, name: string) => {
    this.calls.push(`delete secret ${name}`);
    this.secrets.delete(name);
    return Promise.resolve();
  };
  createEvent = (_e: CoreV1Event) => Promise.resolve();
}

const ours = (name: string, uid = UID): V1ObjectMeta => ({
  name,
  namespace: NS,
  uid: `${name}-uid`,
  labels: labelsFor("e"),
  ownerReferences: [ownerReference({ name: "e", namespace: NS, uid })],
});
const foreign = (name: string): V1ObjectMeta => ({ name, namespace: NS, uid: `${name}-uid` });

describe("the reconcile, for objects of its names", () => {
  let api: FakeApi;
  /** What the informers have seen: only what a test puts here (the API may be ahead). */
  let cache: { pods: Map<string, V1Pod>; services: Map<string, V1Service> };
  let events: string[];
  let reconciler: Reconciler;
  const degraded = () => api.emulator.status?.conditions?.find((c) => c.type === "Degraded");

  beforeEach(() => {
    api = new FakeApi();
    api.emulator = {
      apiVersion: "emulator.hexclave.com/v1alpha1",
      kind: "Emulator",
      metadata: {
        name: "e",
        namespace: NS,
        uid: UID,
        generation: 1,
        resourceVersion: "1",
        finalizers: [FINALIZER],
      },
      spec: { image: "/var/lib/hexclave-emulator/images/e.qcow2" },
    };
    cache = { pods: new Map(), services: new Map() };
    events = [];
    reconciler = new Reconciler({
      api,
      caches: {
        emulator: () => api.emulator,
        pod: (_n, name) => cache.pods.get(name),
        service: (_n, name) => cache.services.get(name),
      },
      options: controllerOptions({ identity: "test" }),
      fetchReport: () => Promise.resolve(undefined),
      events: { normal: (_e, reason) => events.push(reason), warning: (_e, reason) => events.push(reason) },
    });
  });

  it("reports a Secret of its name that it does not own as SecretConflict at once, and looks again later", async () => {
    api.secrets.set("e-emulator-keys", { metadata: foreign("e-emulator-keys"), data: { mine: "MQ==" } });
    const result = await reconciler.reconcile(`${NS}/e`);
    expect(degraded()).toMatchObject({ status: "True", reason: "SecretConflict", observedGeneration: 1 });
    expect(result).toEqual({ requeueAfterMs: CONFLICT_RECHECK_MS });
    expect(api.secrets.get("e-emulator-keys")?.data).toEqual({ mine: "MQ==" });
    expect(api.calls.filter((c) => c.startsWith("create"))).toEqual([]);
  });

  it("reports a Service of its name that it does not own as ServiceConflict on the first reconcile, and makes no Pod", async () => {
    api.services.set("e", { metadata: foreign("e"), spec: { ports: [{ port: 80 }] } });
    const result = await reconciler.reconcile(`${NS}/e`);
    expect(degraded()).toMatchObject({ status: "True", reason: "ServiceConflict" });
    expect(result).toEqual({ requeueAfterMs: CONFLICT_RECHECK_MS });
    expect(api.pods.size).toBe(0);
    expect(api.calls).not.toContain("update service e");
  });

  it("uses its own Service that the cache has not seen yet, and goes on to the Pod", async () => {
    await reconciler.reconcile(`${NS}/e`);
    expect(api.services.has("e")).toBe(true);
    // A second reconcile before the informer saw any of it: the creates say AlreadyExists.
    api.calls.length = 0;
    api.pods.clear();
    await reconciler.reconcile(`${NS}/e`);
    expect(api.calls).toEqual(["create service e", "create pod e-emulator"]);
    expect(degraded()?.status).toBe("False");
  });

  it("adopts a Service it owns that lost its labels (so the cache never sees it): the labels come back", async () => {
    await reconciler.reconcile(`${NS}/e`);
    const svc = api.services.get("e")!;
    api.services.set("e", { ...svc, metadata: { ...svc.metadata, labels: { other: "x" } } });
    api.calls.length = 0;
    await reconciler.reconcile(`${NS}/e`);
    expect(api.calls).toContain("update service e");
    expect(api.services.get("e")?.metadata?.labels).toEqual(labelsFor("e"));
  });

  it("retries at once when a create says AlreadyExists and the read then finds nothing", async () => {
    api.services.set("e", { metadata: ours("e"), spec: {} });
    api.hideOnRead = true;
    expect(await reconciler.reconcile(`${NS}/e`)).toEqual({ requeue: true });
    expect(degraded()).toBeUndefined();
  });

  it("reports a Pod of its name that it does not own as PodConflict at once", async () => {
    api.pods.set("e-emulator", { metadata: foreign("e-emulator") });
    const result = await reconciler.reconcile(`${NS}/e`);
    expect(degraded()).toMatchObject({ status: "True", reason: "PodConflict" });
    expect(result).toEqual({ requeueAfterMs: CONFLICT_RECHECK_MS });
  });

  it("waits for the delete event of an earlier Emulator's Pod that is going away, without a conflict", async () => {
    const old: V1Pod = { metadata: { ...ours("e-emulator", "earlier-uid"), deletionTimestamp: new Date() } };
    cache.pods.set("e-emulator", old);
    api.pods.set("e-emulator", old);
    const result = await reconciler.reconcile(`${NS}/e`);
    expect(result).toEqual({ requeueAfterMs: SAFETY_NET_MS });
    expect(degraded()?.reason).not.toBe("PodConflict");
    expect(api.calls).not.toContain("delete pod e-emulator");
  });

  it("looks again at the conflict interval for somebody else's Pod going away (no event comes for it)", async () => {
    api.pods.set("e-emulator", { metadata: { ...foreign("e-emulator"), deletionTimestamp: new Date() } });
    expect(await reconciler.reconcile(`${NS}/e`)).toEqual({ requeueAfterMs: CONFLICT_RECHECK_MS });
    expect(degraded()?.reason).not.toBe("PodConflict");
  });

  describe("on deletion", () => {
    beforeEach(() => {
      api.emulator.metadata.deletionTimestamp = new Date().toISOString();
    });

    it("deletes a Pod the cache has not seen yet and keeps the finalizer until its delete event", async () => {
      api.pods.set("e-emulator", { metadata: ours("e-emulator") });
      const result = await reconciler.reconcile(`${NS}/e`);
      expect(result).toEqual({ requeueAfterMs: SAFETY_NET_MS });
      expect(api.calls).toContain("delete pod e-emulator");
      expect(api.emulator.metadata.finalizers).toEqual([FINALIZER]);
      expect(api.emulator.status?.phase).toBe("Terminating");
      expect(events).toEqual(["Stopping"]);
      // Still there (the kubelet has not confirmed): the next reconcile waits again, and deletes nothing twice.
      cache.pods.set("e-emulator", api.pods.get("e-emulator")!);
      expect(await reconciler.reconcile(`${NS}/e`)).toEqual({ requeueAfterMs: SAFETY_NET_MS });
      expect(api.calls.filter((c) => c === "delete pod e-emulator")).toHaveLength(1);
    });

    it("once the Pod is gone, removes the Service and the Secret it owns, then the finalizer", async () => {
      api.services.set("e", { metadata: ours("e"), spec: {} });
      api.secrets.set("e-emulator-keys", { metadata: ours("e-emulator-keys") });
      expect(await reconciler.reconcile(`${NS}/e`)).toEqual({});
      expect(api.calls).toEqual(["delete service e", "delete secret e-emulator-keys", "update emulator "]);
      expect(events).toEqual(["Stopped"]);
    });

    it("leaves a Service and a Secret of its names that it does not own", async () => {
      api.services.set("e", { metadata: foreign("e"), spec: {} });
      api.secrets.set("e-emulator-keys", { metadata: foreign("e-emulator-keys") });
      await reconciler.reconcile(`${NS}/e`);
      expect(api.calls).toEqual(["update emulator "]);
      expect(api.services.has("e") && api.secrets.has("e-emulator-keys")).toBe(true);
    });
  });
});
