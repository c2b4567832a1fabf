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
import {
  CONFLICT_RECHECK_MS,
  Reconciler,
  ROLLOUT_RECHECK_MS,
  SAFETY_NET_MS,
  type ReconcileDeps,
} from "../../src/controller/reconcile/reconciler.js";
import { controllerMetrics } from "../../src/controller/metrics/controller-metrics.js";

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
  /** What the API server answers the next creates with (admission, validation, quota). */
  refuse: Partial<Record<"pod" | "service" | "secret", KubeError>> = {};
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
    const refused = this.refuse[what as "pod"];
    if (refused) throw refused;
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
  deletePod = (_ns: string, name: string, _uid: string, graceSec: number) => {
    this.calls.push(graceSec === 0 ? `force-delete pod ${name}` : `delete pod ${name}`);
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
  listSecrets = () => Promise.resolve({ items: [...this.secrets.values()] });
  createSecret = async (secret: V1Secret) => this.create(this.secrets, secret, "secret").metadata ?? {};
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
    reconciler = reconcilerWith();
  });

  function reconcilerWith(extra: Partial<ReconcileDeps> = {}): Reconciler {
    return new Reconciler({
      api,
      caches: {
        emulator: () => api.emulator,
        pod: (_n, name) => cache.pods.get(name),
        service: (_n, name) => cache.services.get(name),
      },
      options: controllerOptions({ identity: "test" }),
      fetchReport: () => Promise.resolve(undefined),
      events: {
        normal: (_e, reason) => events.push(reason),
        warning: (_e, reason, message) => events.push(`warning ${reason}: ${message}`),
      },
      ...extra,
    });
  }

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

  describe("when the API server refuses an object", () => {
    it("puts Pod Security's refusal of the Pod in Degraded with the server's words and a hint, once as a Warning event, and backs off", async () => {
      api.refuse.pod = new KubeError(
        403,
        "Forbidden",
        'create pod e-emulator: 403 Forbidden pods "e-emulator" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "store")',
      );
      expect(await reconciler.reconcile(`${NS}/e`)).toEqual({ requeue: true });
      const d = degraded()!;
      expect(d).toMatchObject({ status: "True", reason: "PodRejected" });
      expect(d.message).toMatch(/violates PodSecurity "baseline:latest": hostPath volumes/);
      expect(d.message).toMatch(/pod-security.kubernetes.io\/enforce=privileged/);
      expect(api.emulator.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("False");
      // The same refusal again: status unchanged, no second event.
      expect(await reconciler.reconcile(`${NS}/e`)).toEqual({ requeue: true });
      expect(events.filter((e) => e.startsWith("warning PodRejected"))).toHaveLength(1);
      // Admission lets it through: the Pod is made and the condition clears.
      delete api.refuse.pod;
      await reconciler.reconcile(`${NS}/e`);
      expect(api.pods.has("e-emulator")).toBe(true);
      expect(degraded()?.status).toBe("False");
    });

    it("names an exceeded quota as such, with what to change", async () => {
      const metrics = controllerMetrics();
      reconciler = reconcilerWith({ metrics });
      api.refuse.pod = new KubeError(
        403,
        "Forbidden",
        'create pod e-emulator: 403 Forbidden pods "e-emulator" is forbidden: exceeded quota: small, requested: memory=4608Mi, used: memory=0, limited: memory=1Gi',
      );
      await reconciler.reconcile(`${NS}/e`);
      expect(degraded()).toMatchObject({ reason: "PodQuotaExceeded" });
      expect(degraded()!.message).toMatch(/exceeded quota: small.*ResourceQuota or lower spec.resources/);
      expect(await metrics.render()).toContain(
        'hexclave_emulator_api_rejections_total{kind="Pod",reason="PodQuotaExceeded"} 1',
      );
    });

    it("reports an invalid Service (422) and makes no Pod", async () => {
      api.refuse.service = new KubeError(
        422,
        "Invalid",
        'create service e: 422 Invalid Service "e" is invalid: spec.ports[0].nodePort: Invalid value: 80',
      );
      expect(await reconciler.reconcile(`${NS}/e`)).toEqual({ requeue: true });
      expect(degraded()).toMatchObject({ reason: "ServiceRejected" });
      expect(degraded()!.message).toMatch(/spec.ports\[0\].nodePort: Invalid value: 80/);
      expect(api.pods.size).toBe(0);
    });

    it("treats a namespace being deleted as no user problem: an error for the queue's backoff", async () => {
      api.refuse.secret = new KubeError(
        403,
        "Forbidden",
        "create secret: 403 Forbidden unable to create new content in namespace ns because it is being terminated",
      );
      await expect(reconciler.reconcile(`${NS}/e`)).rejects.toThrow(/being terminated/);
      expect(degraded()).toBeUndefined();
    });
  });

  describe("when the Pod it runs is out of date", () => {
    /** The Pod of the first reconcile, as the cache and the kubelet would have it: running and Ready. */
    async function runningPod(): Promise<V1Pod> {
      await reconciler.reconcile(`${NS}/e`);
      const pod = api.pods.get("e-emulator")!;
      const ready: V1Pod = {
        ...pod,
        status: { phase: "Running", podIP: "10.0.0.9", conditions: [{ type: "Ready", status: "True" }] },
      };
      api.pods.set("e-emulator", ready);
      cache.pods.set("e-emulator", ready);
      api.calls.length = 0;
      return ready;
    }
    const upgraded = () =>
      reconcilerWith({ options: controllerOptions({ identity: "test", agent: { memoryOverheadMiB: 384 } }) });

    it("replaces it for a new controller template only while a rollout slot is free, then in turn", async () => {
      await runningPod();
      reconciler = upgraded();
      // Another Emulator's replacement is still coming up: this one waits, its VM keeps running.
      expect(reconciler.rollout.admit(`${NS}/other`)).toBe(true);
      const waiting = await reconciler.reconcile(`${NS}/e`);
      expect(api.calls).not.toContain("delete pod e-emulator");
      expect(waiting.requeueAfterMs).toBeLessThanOrEqual(ROLLOUT_RECHECK_MS);
      // That one is Ready: the slot is free and this Pod is replaced.
      reconciler.rollout.settle(`${NS}/other`);
      await reconciler.reconcile(`${NS}/e`);
      expect(api.calls).toContain("delete pod e-emulator");
      expect(events).toContain("PodReplaced");
      expect(reconciler.rollout.inFlight).toBe(1);
    });

    it("restarts nothing for a controller value that does not reach the Pod", async () => {
      await runningPod();
      reconciler = reconcilerWith({
        options: controllerOptions({ identity: "test", workers: 7, resyncSec: 600 }),
      });
      await reconciler.reconcile(`${NS}/e`);
      expect(api.calls.filter((c) => c.includes("pod"))).toEqual([]);
    });

    it("replaces it at once for a change of the Emulator's own spec, whatever the rollout", async () => {
      await runningPod();
      reconciler = upgraded();
      reconciler.rollout.admit(`${NS}/other`);
      api.emulator = {
        ...api.emulator,
        metadata: { ...api.emulator.metadata, generation: 2 },
        spec: { ...api.emulator.spec, resources: { memory: "2Gi", cpus: 2 } },
      };
      await reconciler.reconcile(`${NS}/e`);
      expect(api.calls).toContain("delete pod e-emulator");
      expect(reconciler.rollout.inFlight).toBe(1);
    });
  });

  it("replaces the Pod when its Secret was replaced with new keys, and says the guest does not run them meanwhile", async () => {
    const report = {
      state: "ready" as const,
      startedAt: "2026-12-01T00:00:00Z",
      bootMode: "resume" as const,
      rotatedToSecret: true,
    };
    reconciler = reconcilerWith({ fetchReport: () => Promise.resolve(report) });
    await reconciler.reconcile(`${NS}/e`);
    const pod = api.pods.get("e-emulator")!;
    const firstKeys = api.secrets.get("e-emulator-keys")!.metadata!.uid;
    expect(pod.metadata?.annotations?.["emulator.hexclave.com/keys-uid"]).toBe(firstKeys);
    const running: V1Pod = {
      ...pod,
      status: { phase: "Running", podIP: "10.0.0.9", conditions: [{ type: "Ready", status: "True" }] },
    };
    api.pods.set("e-emulator", running);
    cache.pods.set("e-emulator", running);
    await reconciler.reconcile(`${NS}/e`);
    const rotated = () => api.emulator.status?.conditions?.find((c) => c.type === "SecretsRotated");
    expect(rotated()).toMatchObject({ status: "True" });
    // Somebody deletes the Secret: the next reconcile makes a new one, with new keys.
    api.secrets.delete("e-emulator-keys");
    api.calls.length = 0;
    await reconciler.reconcile(`${NS}/e`);
    expect(api.secrets.get("e-emulator-keys")!.metadata!.uid).not.toBe(firstKeys);
    expect(api.calls).toContain("delete pod e-emulator");
    expect(rotated()).toMatchObject({ status: "False", reason: "KeysReplaced" });
  });

  it("counts a boot once, on the reconcile that first writes it to status, and not again after a failover", async () => {
    const metrics = controllerMetrics();
    const report = {
      state: "ready" as const,
      startedAt: "2026-12-01T00:00:00Z",
      bootMode: "resume" as const,
      startupSeconds: 1.2,
      rotatedToSecret: true,
    };
    reconciler = reconcilerWith({ metrics, fetchReport: () => Promise.resolve(report) });
    await reconciler.reconcile(`${NS}/e`);
    const pod = api.pods.get("e-emulator")!;
    const running: V1Pod = { ...pod, status: { phase: "Running", podIP: "10.0.0.9", conditions: [] } };
    cache.pods.set("e-emulator", running);
    await reconciler.reconcile(`${NS}/e`);
    await reconciler.reconcile(`${NS}/e`);
    const boots = async (m: typeof metrics) =>
      /hexclave_emulator_boots_total\{mode="resume"\} (\d+)/.exec(await m.render())?.[1] ?? "0";
    expect(await boots(metrics)).toBe("1");
    // A new leader reads the same status: the boot is known, not counted again.
    const standby = controllerMetrics();
    await reconcilerWith({ metrics: standby, fetchReport: () => Promise.resolve(report) }).reconcile(
      `${NS}/e`,
    );
    expect(await boots(standby)).toBe("0");
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

    it("force-deletes a Pod no kubelet confirms (a lost node) once its grace period and the bound have passed, saying so", async () => {
      const end = new Date("2026-12-01T10:00:00Z");
      const pod: V1Pod = {
        metadata: { ...ours("e-emulator"), deletionTimestamp: end },
        spec: { nodeName: "lost-node", containers: [] },
      };
      api.pods.set("e-emulator", pod);
      cache.pods.set("e-emulator", pod);
      let now = new Date(end.getTime() + 10_000);
      reconciler = reconcilerWith({ now: () => now });
      const early = await reconciler.reconcile(`${NS}/e`);
      expect(api.calls.filter((c) => c.includes("delete pod"))).toEqual([]);
      // Woken again when the bound (60 s after the grace period's end) is reached, not at the 30 s safety net only.
      expect(early.requeueAfterMs).toBeLessThanOrEqual(SAFETY_NET_MS);
      now = new Date(end.getTime() + 60_001);
      await reconciler.reconcile(`${NS}/e`);
      expect(api.calls).toContain("force-delete pod e-emulator");
      expect(events.find((e) => e.startsWith("warning ForceDeleted"))).toMatch(
        /node lost-node lost or not ready/,
      );
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
