/**
 * The controller when its API server stops answering.
 *
 * Leader election when the leader's API server hangs: two kube-apiservers
 * over one etcd (an HA control plane), the leader talking to one, the
 * standby to the other. The leader's server is frozen with SIGSTOP, so its
 * renewal hangs on an open connection instead of failing. The leader must
 * step down at its renew deadline, while the call still hangs, and so before
 * the standby may take the Lease (leaseDuration > renewDeadline): the two
 * never lead at once. Waits end on the controllers' own hooks.
 *
 * A watch whose connection goes silent (half-open: nothing arrives, nothing
 * closes): the informer ends it at its bound and watches again from where
 * it was, without a relist, instead of keeping a stale cache for as long as
 * TCP keepalive takes (here, through a proxy that keeps the socket alive:
 * forever).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createNamespace,
  startTestCluster,
  type ExtraApiserver,
  type TestCluster,
} from "../support/controller-apiserver.js";
import {
  applyCrd,
  ClusterView,
  CONTROLLER_NS,
  controllerServiceAccount,
  emulatorManifest,
  Signal,
} from "../support/controller-env.js";
import { startStallProxy } from "../support/stall-proxy.js";
import { EmulatorController } from "../../src/controller/controller.js";
import { GROUP, PLURAL, VERSION } from "../../src/controller/crd/types.js";
import { ResilientInformer } from "../../src/controller/kube/informer.js";
import { CustomObjectsApi, KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import { controllerOptions, type ControllerOptions } from "../../src/controller/options.js";

const NS = "api-faults";
const LEASE = "hexclave-emulator-leader-faults";
const LEASE_SEC = 4;
const RENEW_SEC = 3;

describe("leader election with a hung API server under the leader", () => {
  let cluster: TestCluster;
  let frozenServer: ExtraApiserver;
  let token: string;
  let view: ClusterView;
  const controllers: EmulatorController[] = [];
  /** When each replica started and stopped leading (performance.now(), one clock for both). */
  const led: Record<string, { from?: number; to?: number }> = {};

  const replica = (identity: string, kc: ReturnType<TestCluster["admin"]>, options: ControllerOptions) => {
    led[identity] = {};
    const c = new EmulatorController(
      kc,
      { ...options, identity },
      {
        log: () => undefined,
        hooks: {
          startedLeading: () => {
            led[identity]!.from = performance.now();
            view.notify();
          },
        },
        onLostLeadership: () => {
          led[identity]!.to = performance.now();
          view.notify();
        },
      },
    );
    controllers.push(c);
    return c;
  };

  beforeAll(async () => {
    cluster = await startTestCluster(27880);
    frozenServer = await cluster.addApiserver(27883);
    applyCrd(cluster);
    createNamespace(cluster, NS);
    token = controllerServiceAccount(cluster, LEASE);
    view = new ClusterView(cluster.admin(), NS);
    await view.start();
  }, 180_000);

  afterAll(async () => {
    frozenServer?.thaw();
    await Promise.all(controllers.map((c) => c.stop()));
    await view?.stop();
    await cluster?.stop();
  });

  it("steps down at its renew deadline while its renewal hangs; the standby leads only after that", async () => {
    const options = controllerOptions({
      namespace: CONTROLLER_NS,
      watchNamespace: NS,
      leaderElection: {
        enabled: true,
        leaseName: LEASE,
        leaseDurationSec: LEASE_SEC,
        renewDeadlineSec: RENEW_SEC,
        retryPeriodSec: 0.5,
      },
      http: { host: "127.0.0.1", port: 0 },
    });
    const leader = replica("on-frozen-server", frozenServer.withToken(token), options);
    await leader.start();
    await view.until("the first replica leads", () => leader.isLeader(), 30_000);
    const standby = replica("standby", cluster.withToken(token), options);
    await standby.start();
    expect(standby.isLeader()).toBe(false);

    const frozenAt = performance.now();
    frozenServer.freeze();
    await view.until("the standby leads", () => standby.isLeader(), 30_000);
    const first = led["on-frozen-server"]!;
    const second = led.standby!;
    // The old leader let go, with its call still hung on the frozen server ...
    expect(first.to, "the leader on the frozen server never stepped down").toBeDefined();
    // ... before the standby began: never two leaders at once.
    expect(first.to!).toBeLessThan(second.from!);
    console.log(
      `[leader-faults] frozen → old leader stepped down ${((first.to! - frozenAt) / 1000).toFixed(2)} s, ` +
        `→ standby leads ${((second.from! - frozenAt) / 1000).toFixed(2)} s (lease ${LEASE_SEC} s, renew deadline ${RENEW_SEC} s)`,
    );

    // The new leader reconciles: a new Emulator gets its Pod.
    cluster.kubectl(["apply", "-f", "-"], emulatorManifest("after-freeze", NS, { image: "/x.qcow2" }));
    await view.until("a Pod from the new leader", () => view.pod("after-freeze-emulator"), 30_000);
    // Thawed, the old leader's late answers do not make it leader again.
    frozenServer.thaw();
    await leader.stop();
    expect(leader.isLeader()).toBe(false);
    expect(standby.isLeader()).toBe(true);
  }, 120_000);
});

describe("a silent watch, a lost node", () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startTestCluster(27885);
    applyCrd(cluster);
    createNamespace(cluster, NS);
  }, 180_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it("is ended at its bound and watched again from its resourceVersion: the cache sees what came meanwhile", async () => {
    const proxy = await startStallProxy(Number(new URL(cluster.server).port));
    const direct = cluster.admin();
    const kc = new KubeConfig();
    kc.loadFromString(direct.exportConfig());
    kc.clusters[0] = { ...kc.clusters[0]!, server: `https://127.0.0.1:${proxy.port}` };
    const custom = kc.makeApiClient(CustomObjectsApi);
    const seen = new Signal();
    const informer = new ResilientInformer<KubernetesObject>(
      PLURAL,
      kc,
      `/apis/${GROUP}/${VERSION}/namespaces/${NS}/${PLURAL}`,
      () =>
        custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace: NS }),
      { minBackoffMs: 100, watch: { timeoutSec: 2, graceMs: 1_000 } },
    );
    informer.onChange(() => seen.notify());
    try {
      await informer.start();
      await informer.waitForSync(30_000);
      cluster.kubectl(["apply", "-f", "-"], emulatorManifest("before", NS, { image: "/x.qcow2" }));
      await seen.until("before in the cache", () => informer.get("before", NS), 30_000);
      const lists = informer.lists;
      proxy.stall();
      cluster.kubectl(["apply", "-f", "-"], emulatorManifest("meanwhile", NS, { image: "/x.qcow2" }));
      await seen.until(
        "meanwhile in the cache, after the silent watch was ended",
        () => informer.get("meanwhile", NS),
        20_000,
      );
      expect(informer.restarts).toBeGreaterThanOrEqual(1);
      expect(informer.lists, "resumed from its resourceVersion, no relist").toBe(lists);
    } finally {
      await informer.stop();
      await proxy.close();
    }
  }, 120_000);

  it("deletes an Emulator whose Pod is on a lost node: the Pod is force-deleted past its grace period, with a Warning event", async () => {
    const ns = "lost-node";
    createNamespace(cluster, ns);
    const token = controllerServiceAccount(cluster, "unused-lease");
    const view = new ClusterView(cluster.admin(), ns);
    await view.start();
    const controller = new EmulatorController(
      cluster.withToken(token),
      controllerOptions({
        namespace: CONTROLLER_NS,
        watchNamespace: ns,
        leaderElection: { enabled: false },
        http: { host: "127.0.0.1", port: 0 },
        forceDeleteAfterSec: 1,
        // The Pod's grace period is stopGraceSec + 15 s.
        agent: { stopGraceSec: 0 },
      }),
      { log: () => undefined },
    );
    try {
      await controller.start();
      cluster.kubectl(
        ["apply", "-f", "-"],
        emulatorManifest("stranded", ns, { image: "/x.qcow2", rotation: false }),
      );
      await view.until("its Pod", () => view.pod("stranded-emulator"), 30_000);
      // Scheduled to a node whose kubelet is gone: nothing will ever confirm the Pod's deletion.
      cluster.kubectl(
        ["create", "-f", "-"],
        JSON.stringify({
          apiVersion: "v1",
          kind: "Binding",
          metadata: { name: "stranded-emulator", namespace: ns },
          target: { apiVersion: "v1", kind: "Node", name: "lost-node" },
        }),
      );
      await view.until("bound", () => view.pod("stranded-emulator")?.spec?.nodeName === "lost-node", 30_000);
      const t0 = performance.now();
      cluster.kubectl(["delete", "emulator", "stranded", "-n", ns, "--wait=false"]);
      await view.until(
        "the Emulator and its Pod gone",
        () => !view.emulator("stranded") && !view.pod("stranded-emulator"),
        60_000,
        () => JSON.stringify(view.pod("stranded-emulator")?.metadata),
      );
      console.log(
        `[api-faults] delete on a lost node → gone: ${((performance.now() - t0) / 1000).toFixed(1)} s (grace 15 s + bound 1 s)`,
      );
      await view.until(
        "a ForceDeleted event",
        () => view.eventReasons("stranded").includes("ForceDeleted"),
        30_000,
      );
    } finally {
      await controller.stop();
      await view.stop();
    }
  }, 120_000);
});
