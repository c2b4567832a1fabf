/**
 * The controller against a real kube-apiserver and etcd (built from their Go
 * modules), running as its own ServiceAccount with the chart's least-privilege
 * RBAC. The Pod's container is a fake agent here, and the scheduler and
 * kubelet are played by FakeKubelet through the API: what this file shows
 * needs exact control of Pod states (conflicts, a relist after 410, informer
 * failures). The real agent, kubelet and QEMU run in cluster-e2e.test.ts. Every wait ends on the watch event (or the
 * controller's hook) that makes it true; nothing sleeps.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CoreV1Api, type KubernetesObject, type V1ConfigMap } from "@kubernetes/client-node";
import {
  createNamespace,
  serviceAccountToken,
  startTestCluster,
  type TestCluster,
} from "../support/controller-apiserver.js";
import {
  applyCrd,
  ClusterView,
  CONTROLLER_NS,
  controllerServiceAccount,
  getJson,
  Signal,
  type Seen,
  conditionOf,
  emulatorManifest,
} from "../support/controller-env.js";
import { fakeAgent, FakeKubelet } from "../support/controller-kubelet.js";
import { EmulatorController } from "../../src/controller/controller.js";
import { controllerOptions, type ControllerOptions } from "../../src/controller/options.js";
import { controllerApi } from "../../src/controller/kube/client.js";
import { isConflict } from "../../src/controller/kube/errors.js";
import { ResilientInformer } from "../../src/controller/kube/informer.js";
import { Reconciler } from "../../src/controller/reconcile/reconciler.js";
import { httpReportFetcher } from "../../src/controller/reconcile/report.js";
import type { Emulator } from "../../src/controller/crd/types.js";

const NS = "team-a";
const LEASE = "hexclave-emulator-test";
const AGENT_PORT = 27870;

describe("the controller against a real API server", () => {
  let cluster: TestCluster;
  let controller: EmulatorController;
  let kubelet: FakeKubelet;
  let options: ControllerOptions;
  let controllerToken: string;
  let view: ClusterView;
  const stops: string[] = [];
  const logs: string[] = [];
  const scratch = mkdtempSync(join(tmpdir(), "hxe-ctl-"));
  const emu = (name: string) => getJson<Emulator>(cluster, ["emulator", name, "-n", NS]);
  const apply = (name: string, spec: Record<string, unknown>) =>
    cluster.kubectl(["apply", "-f", "-"], emulatorManifest(name, NS, spec));
  const condition = conditionOf;
  const ready = (name: string) => {
    const e = view.emulator(name);
    return condition(e, "Ready")?.status === "True" ? e : undefined;
  };
  /** Waits until the Events on `name` include every reason given (Events are recorded asynchronously). */
  const eventsInclude = (name: string, reasons: string[]) =>
    view.until(`events ${reasons.join(", ")} on ${name}`, () => {
      const seen = view.eventReasons(name);
      return reasons.every((r) => seen.includes(r)) ? seen : undefined;
    });
  /** Waits until an Emulator is gone, as the view and the controller's own cache see it. */
  const gone = (name: string, timeoutMs = 60_000) =>
    view.until(`${name} gone`, () => !view.emulator(name) && !controller.emulators.get(name, NS), timeoutMs);

  beforeAll(async () => {
    cluster = await startTestCluster(27860);
    applyCrd(cluster);
    createNamespace(cluster, NS);
    controllerToken = controllerServiceAccount(cluster, LEASE, { watchSecrets: true });
    options = controllerOptions({
      watchSecrets: true,
      namespace: CONTROLLER_NS,
      identity: "replica-1",
      leaderElection: {
        enabled: true,
        leaseName: LEASE,
        leaseDurationSec: 4,
        renewDeadlineSec: 3,
        retryPeriodSec: 0.5,
      },
      http: { host: "127.0.0.1", port: 0 },
      resyncSec: 30,
      agent: {
        port: AGENT_PORT,
        storeHostPath: join(scratch, "store"),
        storeMountPath: join(scratch, "store"),
        runMountPath: join(scratch, "run"),
        keysMountPath: join(scratch, "keys"),
      },
    });
    view = new ClusterView(cluster.admin(), NS);
    await view.start();
    controller = new EmulatorController(cluster.withToken(controllerToken), options, {
      log: (level, msg, fields) => logs.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`),
    });
    controller.emulators.onChange(() => view.notify());
    await controller.start();
    kubelet = new FakeKubelet(
      cluster.admin(),
      NS,
      fakeAgent(AGENT_PORT, stops, () => view.notify()),
      scratch,
    );
    kubelet.start();
  }, 180_000);

  afterAll(async () => {
    await controller?.stop();
    await kubelet?.stop();
    await view?.stop();
    await cluster?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  describe("the CRD", () => {
    it("is served with its short name and printer columns, and the API server applies its defaults", async () => {
      cluster.kubectl(
        ["apply", "--validate=false", "-f", "-"],
        JSON.stringify({
          apiVersion: "emulator.hexclave.com/v1alpha1",
          kind: "Emulator",
          metadata: { name: "defaults", namespace: NS },
          spec: { image: "/var/lib/hexclave-emulator/images/e.qcow2", unknownField: 1 },
        }),
      );
      const e = emu("defaults")!;
      expect(e.spec).toEqual({
        image: "/var/lib/hexclave-emulator/images/e.qcow2",
        resources: { memory: "4Gi", cpus: 2 },
        rotation: true,
        snapshot: "auto",
        service: { type: "ClusterIP", expose: ["dashboard", "backend", "minio", "inbucket", "mockOauth"] },
      });
      const header = cluster.kubectl(["get", "emu", "defaults", "-n", NS]).split("\n")[0];
      expect(header?.split(/\s+/).filter(Boolean)).toEqual([
        "NAME",
        "READY",
        "BOOT",
        "STARTUP",
        "NODE",
        "AGE",
      ]);
      cluster.kubectl(["delete", "emu", "defaults", "-n", NS, "--wait=false"]);
      await gone("defaults");
    });

    it("rejects what the schema forbids: a bad quantity, a long or odd name", () => {
      expect(() => apply("bad", { image: "/x", resources: { memory: "4G" } })).toThrow(
        /spec\.resources\.memory/,
      );
      expect(() => apply("x".repeat(60), { image: "/x" })).toThrow(/DNS label of at most 54/);
      expect(() => apply("9lives", { image: "/x" })).toThrow(/starting with a letter/);
    });
  });

  it("creates the Secret, Service and Pod with owner references, adds its finalizer, and reports Ready", async () => {
    apply("first", {
      image: "/var/lib/hexclave-emulator/images/e.qcow2",
      resources: { memory: "1Gi", cpus: 1 },
    });
    const first = await view.until("first Ready", () => ready("first"), 60_000);
    const uid = first.metadata.uid;
    expect(first.metadata.finalizers).toContain("emulator.hexclave.com/stop-vm");
    for (const [kind, name] of [
      ["secret", "first-emulator-keys"],
      ["service", "first"],
      ["pod", "first-emulator"],
    ]) {
      const o = getJson<KubernetesObject>(cluster, [kind!, name!, "-n", NS]);
      expect(o?.metadata?.ownerReferences, `${kind} ${name}`).toEqual([
        {
          apiVersion: "emulator.hexclave.com/v1alpha1",
          kind: "Emulator",
          name: "first",
          uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
    }
    expect(first.status).toMatchObject({
      phase: "Ready",
      bootMode: "resume",
      startupSeconds: 0.42,
      node: "local-node",
      secretName: "first-emulator-keys",
      snapshotKey: "test-key",
      observedGeneration: 1,
    });
    expect(first.status?.endpoints?.[1]).toEqual({
      name: "backend",
      host: "first.team-a.svc.cluster.local",
      port: 26701,
      url: "http://first.team-a.svc.cluster.local:26701",
    });
    for (const t of ["Ready", "SnapshotResumed", "SecretsRotated"])
      expect(condition(first, t)).toMatchObject({ status: "True", observedGeneration: 1 });
    expect(condition(first, "Degraded")?.status).toBe("False");
    await eventsInclude("first", ["SecretCreated", "ServiceCreated", "PodCreated", "Ready"]);
    const printed = cluster.kubectl(["get", "emu", "first", "-n", NS, "--no-headers"]);
    expect(printed.split(/\s+/).slice(0, 5)).toEqual(["first", "True", "resume", "0.42", "local-node"]);
  });

  it("keeps the keys out of status, events and its own log", () => {
    const secret = getJson<{ data: Record<string, string> }>(cluster, [
      "secret",
      "first-emulator-keys",
      "-n",
      NS,
    ])!;
    const keys = Object.values(secret.data).map((b) => Buffer.from(b, "base64").toString());
    expect(keys).toHaveLength(4);
    const everywhere = [
      JSON.stringify(emu("first")),
      cluster.kubectl(["get", "events", "-n", NS, "-o", "json"]),
      logs.join("\n"),
    ].join("\n");
    for (const k of keys) {
      expect(k).toMatch(/^[0-9a-f]{64}$/);
      expect(everywhere).not.toContain(k);
    }
  });

  it("replaces the Pod when the spec changes, stopping the old one first", async () => {
    const before = getJson<KubernetesObject>(cluster, ["pod", "first-emulator", "-n", NS])!;
    cluster.kubectl([
      "patch",
      "emu",
      "first",
      "-n",
      NS,
      "--type=merge",
      "-p",
      JSON.stringify({ spec: { resources: { memory: "2Gi" } } }),
    ]);
    const after = await view.until(
      "a new Ready Pod",
      () => {
        const e = ready("first");
        const pod = view.pod("first-emulator");
        return e?.status?.observedGeneration === 2 && pod && pod.metadata?.uid !== before.metadata?.uid
          ? pod
          : undefined;
      },
      60_000,
    );
    expect(stops).toContain("first-emulator");
    expect(after.metadata?.annotations?.["emulator.hexclave.com/spec-hash"]).not.toBe(
      before.metadata?.annotations?.["emulator.hexclave.com/spec-hash"],
    );
    expect(JSON.stringify(after)).toContain('"memory":"2560Mi"');
    await eventsInclude("first", ["PodReplaced"]);
  });

  it("replaces the Pod at once when its Secret is deleted: the guest runs the new keys before SecretsRotated is True again", async () => {
    const before = view.pod("first-emulator")!;
    const oldKeys = view.secret("first-emulator-keys")!.metadata!.uid;
    const from = view.history.length;
    cluster.kubectl(["delete", "secret", "first-emulator-keys", "-n", NS]);
    // The controller watches its Secrets (watchSecrets): the delete wakes the reconcile, not the resync.
    const after = await view.until(
      "a new Pod for the new keys, Ready and rotated",
      () => {
        const e = ready("first");
        const pod = view.pod("first-emulator");
        const rotated = e?.status?.conditions?.find((c) => c.type === "SecretsRotated");
        return pod && pod.metadata?.uid !== before.metadata?.uid && rotated?.status === "True"
          ? pod
          : undefined;
      },
      30_000,
    );
    const keys = view.secret("first-emulator-keys")!.metadata!.uid;
    expect(keys).not.toBe(oldKeys);
    expect(after.metadata?.annotations?.["emulator.hexclave.com/keys-uid"]).toBe(keys);
    // In between, status did not claim the old guest ran the Secret's keys.
    const claims = view
      .changes("emulator", "first", from)
      .map((h) => (h.object as Emulator).status?.conditions?.find((c) => c.type === "SecretsRotated"));
    expect(claims.some((c) => c?.status === "False" && c.reason === "KeysReplaced")).toBe(true);
  });

  it("refuses a write from a stale resourceVersion with 409 Conflict, and a stale reconcile retries", async () => {
    const api = controllerApi(cluster.withToken(controllerToken));
    const stale = emu("first")!;
    cluster.kubectl(["label", "emu", "first", "-n", NS, "touched=yes"]);
    const err = await api
      .replaceEmulatorStatus({ ...stale, status: { ...stale.status, phase: "Pending" } })
      .catch((e: unknown) => e);
    expect(isConflict(err)).toBe(true);
    // The same through a reconcile that reads a stale cache: it fails with the conflict (the queue retries it).
    const staleReconciler = new Reconciler({
      api,
      caches: {
        emulator: () => ({ ...stale, status: { ...stale.status, phase: "Pending" } }),
        pod: (n, name) => controller.pods.get(name, n),
        service: (n, name) => controller.services.get(name, n),
      },
      options,
      fetchReport: httpReportFetcher(1000),
      events: { normal: () => undefined, warning: () => undefined },
    });
    await expect(staleReconciler.reconcile(`${NS}/first`)).rejects.toSatisfy(isConflict);
    // The controller's own reconciles, from its up-to-date cache, keep the labelled Emulator Ready.
    await view.until(
      "the labelled Emulator Ready",
      () => view.emulator("first")?.metadata.labels?.touched === "yes" && ready("first"),
    );
  });

  it("relists when its watch expires (410 Gone after an etcd compaction)", async () => {
    const admin = cluster.admin();
    const core = admin.makeApiClient(CoreV1Api);
    const cm = (name: string, namespace = NS): V1ConfigMap => ({
      metadata: { name, namespace },
      data: { a: "1" },
    });
    await core.createNamespacedConfigMap({ namespace: NS, body: cm("before") });
    const seen = new Set<string>();
    const changed = new Signal();
    const informer = new ResilientInformer<V1ConfigMap>(
      "configmaps",
      admin,
      `/api/v1/namespaces/${NS}/configmaps`,
      () => core.listNamespacedConfigMap({ namespace: NS }),
      // The API server ends each watch after 2 s: the re-watch is what meets the compaction.
      { hooks: { onList: () => changed.notify() }, watch: { timeoutSec: 2, graceMs: 1_000 } },
    );
    informer.onChange((t, o) => {
      if (t === "delete") seen.delete(o.metadata!.name!);
      else seen.add(o.metadata!.name!);
      changed.notify();
    });
    await informer.start();
    await informer.waitForSync(10_000);
    expect(informer.lists).toBe(1);
    // Advance etcd's revision elsewhere, then compact it past everything this informer has seen.
    for (let i = 0; i < 5; i++)
      await core.createNamespacedConfigMap({ namespace: "default", body: cm(`noise-${i}`, "default") });
    const revision = await cluster.compact();
    expect(Number(informer.resourceVersion())).toBeLessThan(revision);
    // The API server ends the watch (timeoutSeconds 2); the re-watch from the old resourceVersion
    // gets 410 Gone, and the informer lists again.
    await changed.until("a relist", () => informer.lists >= 2, 30_000);
    expect(informer.restarts).toBe(0);
    await core.createNamespacedConfigMap({ namespace: NS, body: cm("after") });
    await changed.until("the new object", () => seen.has("after"), 15_000);
    expect(seen.has("before")).toBe(true);
    await informer.stop();
  });

  it("restarts an informer whose list fails, with backoff, until it succeeds", async () => {
    cluster.kubectl(["create", "serviceaccount", "late", "-n", NS]);
    const kc = cluster.withToken(serviceAccountToken(cluster, NS, "late"));
    const core = kc.makeApiClient(CoreV1Api);
    const restarts: number[] = [];
    const changed = new Signal();
    const informer = new ResilientInformer<V1ConfigMap>(
      "configmaps",
      kc,
      `/api/v1/namespaces/${NS}/configmaps`,
      () => core.listNamespacedConfigMap({ namespace: NS }),
      {
        minBackoffMs: 100,
        hooks: {
          onRestart: (_r, _e, delay) => {
            restarts.push(delay);
            changed.notify();
          },
        },
      },
    );
    await informer.start();
    await changed.until("two restarts", () => restarts.length >= 2, 10_000);
    expect(informer.hasSynced()).toBe(false);
    expect(restarts[1]).toBe(2 * restarts[0]!);
    cluster.kubectl(["create", "role", "read-cm", "-n", NS, "--verb=list,watch", "--resource=configmaps"]);
    cluster.kubectl([
      "create",
      "rolebinding",
      "read-cm",
      "-n",
      NS,
      "--role=read-cm",
      `--serviceaccount=${NS}:late`,
    ]);
    await informer.waitForSync(20_000);
    await informer.stop();
  });

  it("never takes over a Secret or a Service of the same name that is not its own", async () => {
    cluster.kubectl([
      "create",
      "secret",
      "generic",
      "taken-emulator-keys",
      "-n",
      NS,
      "--from-literal=mine=1",
    ]);
    cluster.kubectl(["create", "service", "clusterip", "taken", "-n", NS, "--tcp=80:80"]);
    apply("taken", { image: "/x.qcow2" });
    const degraded = (reason: string) => () => {
      const c = condition(view.emulator("taken"), "Degraded");
      return c?.reason === reason ? c : undefined;
    };
    const secretConflict = await view.until("SecretConflict", degraded("SecretConflict"));
    expect(secretConflict).toMatchObject({ status: "True", observedGeneration: 1 });
    expect(
      getJson<{ data: Record<string, string> }>(cluster, ["secret", "taken-emulator-keys", "-n", NS])?.data,
    ).toEqual({
      mine: Buffer.from("1").toString("base64"),
    });
    // Neither the Secret nor the Service is watched (not ours: no labels): the controller looks
    // again every CONFLICT_RECHECK_MS (10 s) by itself; each wait below ends on that re-check.
    cluster.kubectl(["delete", "secret", "taken-emulator-keys", "-n", NS]);
    await view.until("ServiceConflict", degraded("ServiceConflict"), 40_000);
    expect(view.pod("taken-emulator")).toBeUndefined();
    expect(view.service("taken")?.metadata?.ownerReferences).toBeUndefined();
    cluster.kubectl(["delete", "service", "taken", "-n", NS]);
    const taken = await view.until("taken Ready once the way is clear", () => ready("taken"), 40_000);
    expect(view.service("taken")?.metadata?.ownerReferences?.[0]?.uid).toBe(taken.metadata.uid);
    cluster.kubectl(["delete", "emu", "taken", "-n", NS, "--wait=false"]);
    await gone("taken");
  });

  it("deletes an Emulator past its ttlSeconds", async () => {
    apply("short", { image: "/x.qcow2", ttlSeconds: 60 });
    const created = await view.until("the finalizer and the expiry in status", () => {
      const e = view.emulator("short");
      return e?.metadata.finalizers?.length && e.status?.expiresAt ? e : undefined;
    });
    expect(
      new Date(created.status!.expiresAt!).getTime() -
        new Date(created.metadata.creationTimestamp!).getTime(),
    ).toBe(60_000);
    const api = controllerApi(cluster.withToken(controllerToken));
    const later = new Reconciler({
      api,
      caches: {
        emulator: () => emu("short"),
        pod: (n, name) => controller.pods.get(name, n),
        service: (n, name) => controller.services.get(name, n),
      },
      options,
      fetchReport: async () => undefined,
      events: { normal: () => undefined, warning: () => undefined },
      now: () => new Date(new Date(created.metadata.creationTimestamp!).getTime() + 61_000),
    });
    await later.reconcile(`${NS}/short`);
    await gone("short");
    expect(view.pod("short-emulator")).toBeUndefined();
  });

  it("serves /healthz, /readyz and /metrics with reconcile, queue and boot metrics", async () => {
    // What the gauge counts: the controller's cache, which holds "first" alone by now.
    await view.until("the controller's cache: first Ready, nothing else", () => {
      const all = controller.emulators.list() as unknown as Emulator[];
      return all.length === 1 && all[0]?.metadata.name === "first" && all[0].status?.phase === "Ready";
    });
    const base = `http://127.0.0.1:${controller.httpPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/hexclave_emulator_reconcile_total\{result="success"\} [1-9]/);
    expect(text).toMatch(/hexclave_emulator_boots_total\{mode="resume"\} [1-9]/);
    expect(text).toMatch(/hexclave_emulator_startup_seconds_count\{mode="resume"\} [1-9]/);
    expect(text).toContain("hexclave_emulator_workqueue_depth");
    expect(text).toContain("hexclave_emulator_leader 1");
    expect(text).toMatch(/hexclave_emulator_emulators\{phase="Ready"\} 1/);
  });

  it("holds the finalizer until the Pod is gone, then removes the Service and the Secret", async () => {
    const stopsBefore = stops.length;
    const from = view.history.length;
    cluster.kubectl(["delete", "emu", "first", "-n", NS, "--wait=false"]);
    await gone("first");
    // The watch saw every version (no watch cache): the order is the etcd revisions'.
    const changes = view.changes("emulator", "first", from).map((c) => ({ ...c, emu: c.object as Emulator }));
    const terminating = changes.find((c) => c.emu.status?.phase === "Terminating");
    expect(terminating?.emu.metadata).toMatchObject({
      deletionTimestamp: expect.anything(),
      finalizers: ["emulator.hexclave.com/stop-vm"],
    });
    const deletedAt = (kind: Seen["kind"], name: string) => {
      const d = view.changes(kind, name, from).find((c) => c.type === "delete");
      expect(d, `${kind} ${name} deleted`).toBeDefined();
      return d!.rv;
    };
    const emuGone = deletedAt("emulator", "first");
    const podGone = deletedAt("pod", "first-emulator");
    expect(podGone).toBeLessThan(emuGone);
    for (const [kind, name] of [
      ["service", "first"],
      ["secret", "first-emulator-keys"],
    ] as const) {
      const at = deletedAt(kind, name);
      expect(at, `${kind} ${name} after the Pod`).toBeGreaterThan(podGone);
      expect(at, `${kind} ${name} before the Emulator`).toBeLessThan(emuGone);
    }
    expect(stops.slice(stopsBefore)).toEqual(["first-emulator"]);
    await eventsInclude("first", ["Stopping", "Stopped"]);
  });

  it("elects one leader through the Lease; a standby takes over when it steps down", async () => {
    const seenLeaders: string[] = [];
    const standby = new EmulatorController(
      cluster.withToken(controllerToken),
      { ...options, identity: "replica-2" },
      {
        log: () => undefined,
        hooks: {
          newLeader: (id) => {
            seenLeaders.push(id);
            view.notify();
          },
          startedLeading: () => view.notify(),
        },
      },
    );
    standby.emulators.onChange(() => view.notify());
    await standby.start();
    // The standby's first try read the Lease, fresh in replica-1's hands: it stays a standby.
    await view.until("the standby to see replica-1 lead", () => seenLeaders.includes("replica-1"));
    expect(controller.isLeader()).toBe(true);
    expect(standby.isLeader()).toBe(false);
    const lease = () =>
      getJson<{ spec: { holderIdentity: string; leaseTransitions: number } }>(cluster, [
        "lease",
        LEASE,
        "-n",
        CONTROLLER_NS,
      ]);
    expect(lease()?.spec.holderIdentity).toBe("replica-1");
    const old = controller;
    controller = standby;
    await old.stop();
    await view.until("replica-2 leads", () => standby.isLeader(), 15_000);
    expect(lease()?.spec.holderIdentity).toBe("replica-2");
    expect(seenLeaders).toEqual(["replica-1", "replica-2"]);
    // The new leader reconciles: a new Emulator gets its Pod.
    apply("after-failover", { image: "/x.qcow2" });
    await view.until("a Pod from the new leader", () => view.pod("after-failover-emulator"), 30_000);
    cluster.kubectl(["delete", "emu", "after-failover", "-n", NS, "--wait=false"]);
    await gone("after-failover");
  });
});
