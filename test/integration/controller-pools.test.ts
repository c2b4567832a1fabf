/**
 * Warm pools against a real kube-apiserver and etcd: the controller (as its
 * ServiceAccount, with the chart's RBAC) keeps an EmulatorPool's instances
 * Ready and rotated, binds EmulatorClaims to them through the API server's
 * optimistic concurrency, falls back to an on-demand Emulator when the pool
 * is empty, and deletes an instance once its claim is gone. FakeKubelet plays
 * the scheduler and the kubelet, with a fake agent in each Pod; the real
 * agent and QEMU run in cluster-e2e.test.ts. Waits end on watched changes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNamespace, startTestCluster, type TestCluster } from "../support/controller-apiserver.js";
import {
  applyCrd,
  claimManifest,
  claimReady,
  ClusterView,
  CONTROLLER_NS,
  controllerServiceAccount,
  poolManifest,
  readyInstances,
} from "../support/controller-env.js";
import { fakeAgent, FakeKubelet } from "../support/controller-kubelet.js";
import { EmulatorController } from "../../src/controller/controller.js";
import { controllerOptions } from "../../src/controller/options.js";
import { CLAIM_LABEL, POOL_LABEL } from "../../src/controller/crd/pool-types.js";

const NS = "pools";
const AGENT_PORT = 27890;
const IMAGE = "/var/lib/hexclave-emulator/images/e.qcow2";

describe("warm pools against a real API server", () => {
  let cluster: TestCluster;
  let controller: EmulatorController;
  let kubelet: FakeKubelet;
  let view: ClusterView;
  const stops: string[] = [];
  const scratch = mkdtempSync(join(tmpdir(), "hxe-pools-"));
  const apply = (doc: string) => cluster.kubectl(["apply", "-f", "-"], doc);
  const pool = (name: string, replicas: number, maxCreating = 2) =>
    apply(
      poolManifest(name, NS, {
        template: { image: IMAGE, resources: { memory: "1Gi", cpus: 1 } },
        replicas,
        maxCreating,
      }),
    );
  const instancesOf = (p: string) =>
    view.emulators().filter((e) => e.metadata.labels?.[POOL_LABEL] === p && !e.metadata.deletionTimestamp);
  const filled = (p: string, n: number) =>
    view.until(
      `pool ${p} with ${n} ready`,
      () => {
        const st = view.pool(p)?.status;
        return readyInstances(view, p).length === n && st?.ready === n ? st : undefined;
      },
      60_000,
      () => JSON.stringify(view.pool(p)?.status),
    );
  const keyOf = (secret: string) =>
    Buffer.from(view.secret(secret)?.data?.publishableClientKey ?? "", "base64").toString();

  beforeAll(async () => {
    cluster = await startTestCluster(27890);
    applyCrd(cluster);
    createNamespace(cluster, NS);
    const token = controllerServiceAccount(cluster, "unused");
    const options = controllerOptions({
      namespace: CONTROLLER_NS,
      identity: "pools-1",
      leaderElection: { enabled: false },
      http: { host: "127.0.0.1", port: 0 },
      agent: {
        port: AGENT_PORT,
        storeHostPath: join(scratch, "store"),
        storeMountPath: join(scratch, "store"),
        runMountPath: join(scratch, "run"),
        keysMountPath: join(scratch, "keys"),
      },
    });
    view = new ClusterView(cluster.admin(), NS, { pools: true });
    await view.start();
    controller = new EmulatorController(cluster.withToken(token), options, { log: () => undefined });
    await controller.start();
    kubelet = new FakeKubelet(cluster.admin(), NS, fakeAgent(AGENT_PORT, stops), scratch);
    kubelet.start();
  }, 180_000);

  afterAll(async () => {
    await controller?.stop();
    await kubelet?.stop();
    await view?.stop();
    await cluster?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("fills a pool with Emulators it owns, each with its own Secret, Ready and rotated; the pool says so", async () => {
    pool("warm", 2);
    const status = await filled("warm", 2);
    expect(status).toMatchObject({ ready: 2, creating: 0, claimed: 0, observedGeneration: 1 });
    expect(status.conditions?.find((c) => c.type === "Ready")).toMatchObject({
      status: "True",
      reason: "Filled",
    });
    const insts = instancesOf("warm");
    for (const e of insts) {
      expect(e.metadata.name).toMatch(/^warm-[a-z0-9]{5}$/);
      expect(e.metadata.ownerReferences).toEqual([
        expect.objectContaining({ kind: "EmulatorPool", name: "warm", controller: true }),
      ]);
      expect(view.secret(`${e.metadata.name}-emulator-keys`)).toBeDefined();
      expect(view.pod(`${e.metadata.name}-emulator`)?.spec?.affinity?.podAntiAffinity).toBeDefined();
    }
    const printed = cluster.kubectl(["get", "emupool", "warm", "-n", NS]).split("\n");
    expect(printed[0]!.split(/\s+/).filter(Boolean)).toEqual([
      "NAME",
      "DESIRED",
      "READY",
      "CREATING",
      "CLAIMED",
      "AGE",
    ]);
    expect(printed[1]!.split(/\s+/).slice(0, 5)).toEqual(["warm", "2", "2", "0", "0"]);
  });

  let bound: Record<string, string> = {};
  it("binds two claims applied together to two different instances, each Ready with its instance's Secret and endpoints", async () => {
    const t0 = performance.now();
    apply([claimManifest("job-1", NS, "warm"), claimManifest("job-2", NS, "warm")].join("\n"));
    const [one, two] = await Promise.all(
      ["job-1", "job-2"].map((c) => view.until(`${c} Ready`, claimReady(view, c), 30_000)),
    );
    console.log(
      `[controller-pools] two claims applied → both Ready: ${(performance.now() - t0).toFixed(0)} ms`,
    );
    for (const c of [one!, two!]) {
      expect(c.status).toMatchObject({
        source: "pool",
        secretName: `${c.status!.emulatorName}-emulator-keys`,
      });
      expect(c.status!.conditions?.find((x) => x.type === "Ready")).toMatchObject({
        reason: "Bound",
        observedGeneration: 1,
      });
      expect(c.status!.endpoints?.find((e) => e.name === "backend")?.host).toBe(
        `${c.status!.emulatorName}.${NS}.svc.cluster.local`,
      );
      const inst = view.emulator(c.status!.emulatorName!)!;
      expect(inst.metadata.labels?.[CLAIM_LABEL]).toBe(c.metadata.name);
    }
    expect(one!.status!.emulatorName).not.toBe(two!.status!.emulatorName);
    expect(keyOf(one!.status!.secretName!)).not.toBe(keyOf(two!.status!.secretName!));
    expect(keyOf(one!.status!.secretName!)).toMatch(/^[0-9a-f]{64}$/);
    bound = { "job-1": one!.status!.emulatorName!, "job-2": two!.status!.emulatorName! };
    // The pool refills in the background: two new unclaimed instances, two claimed.
    const st = await filled("warm", 2);
    expect(st.claimed).toBe(2);
    const printed = cluster.kubectl(["get", "emuclaim", "job-1", "-n", NS, "--no-headers"]).split(/\s+/);
    expect(printed.slice(0, 5)).toEqual(["job-1", "True", "warm", bound["job-1"], "pool"]);
  });

  it("deletes an instance once its claim is gone (its VM stopped), never handing it to another claim", async () => {
    const inst = bound["job-1"]!;
    cluster.kubectl(["delete", "emulatorclaim", "job-1", "-n", NS]);
    await view.until(`${inst} gone`, () => !view.emulator(inst) && !view.pod(`${inst}-emulator`), 60_000);
    expect(stops).toContain(`${inst}-emulator`);
    expect(view.eventReasons("warm")).toContain("InstanceReleased");
    const st = await filled("warm", 2);
    expect(st.claimed).toBe(1);
    // A new claim of the same name takes a fresh instance.
    apply(claimManifest("job-1", NS, "warm"));
    const again = await view.until("job-1 Ready again", claimReady(view, "job-1"), 30_000);
    expect(again.status!.emulatorName).not.toBe(inst);
  });

  it("scales down by deleting only unclaimed instances", async () => {
    const claimed = instancesOf("warm")
      .filter((e) => e.metadata.labels?.[CLAIM_LABEL])
      .map((e) => e.metadata.name);
    expect(claimed).toHaveLength(2);
    pool("warm", 0);
    await view.until(
      "only the claimed instances left",
      () => {
        const names = instancesOf("warm").map((e) => e.metadata.name);
        return names.length === 2 && view.pool("warm")?.status?.ready === 0 ? names : undefined;
      },
      60_000,
    );
    expect(
      instancesOf("warm")
        .map((e) => e.metadata.name)
        .sort(),
    ).toEqual(claimed.sort());
    for (const c of ["job-1", "job-2"]) expect(claimReady(view, c)()).toBeDefined();
  });

  it("starts an on-demand Emulator for a claim on an empty pool, and says so (reason OnDemand, an Event)", async () => {
    apply(claimManifest("late", NS, "warm"));
    const starting = await view.until(
      "late falls back",
      () =>
        view
          .claim("late")
          ?.status?.conditions?.find((c) => c.type === "Ready" && c.reason === "OnDemandStarting") ??
        view.claim("late")?.status?.conditions?.find((c) => c.reason === "OnDemand"),
      30_000,
    );
    expect(starting.message).toMatch(/pool warm had no ready instance/);
    const ready = await view.until("late Ready", claimReady(view, "late"), 60_000);
    expect(ready.status).toMatchObject({ source: "on-demand" });
    expect(ready.status!.conditions?.find((c) => c.type === "Ready")?.reason).toBe("OnDemand");
    const od = view.emulator(ready.status!.emulatorName!)!;
    expect(od.metadata.labels?.[POOL_LABEL]).toBeUndefined();
    expect(od.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: "EmulatorClaim", name: "late", controller: true }),
    ]);
    await view.until("an OnDemand event", () => view.eventReasons("late").includes("OnDemand"), 30_000);
    expect(view.pool("warm")?.status).toMatchObject({ ready: 0, claimed: 2 });
    // Deleting the claim deletes its on-demand Emulator (without the garbage collector: none runs here).
    cluster.kubectl(["delete", "emulatorclaim", "late", "-n", NS]);
    await view.until("the on-demand Emulator gone", () => !view.emulator(od.metadata.name!), 60_000);
  });

  it("never binds one instance twice: five claims racing for three instances get three instances and two on-demand", async () => {
    pool("race", 3, 3);
    await filled("race", 3);
    const names = ["r1", "r2", "r3", "r4", "r5"];
    apply(names.map((n) => claimManifest(n, NS, "race")).join("\n"));
    const claims = await Promise.all(
      names.map((n) =>
        view.until(
          `${n} bound`,
          () => (view.claim(n)?.status?.emulatorName ? view.claim(n) : undefined),
          30_000,
        ),
      ),
    );
    const emus = claims.map((c) => c!.status!.emulatorName!);
    expect(new Set(emus).size).toBe(5);
    expect(claims.filter((c) => c!.status!.source === "pool")).toHaveLength(3);
    expect(claims.filter((c) => c!.status!.source === "on-demand")).toHaveLength(2);
    cluster.kubectl(["delete", "emulatorclaims", "--all", "-n", NS]);
    cluster.kubectl(["delete", "emulatorpools", "--all", "-n", NS]);
    await view.until(
      "every Emulator gone",
      () => view.emulators().length === 0,
      90_000,
      () =>
        view
          .emulators()
          .map((e) => e.metadata.name)
          .join(","),
    );
  });
});
