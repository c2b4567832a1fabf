/**
 * The warm pools' reconciles through their deps seam: an in-memory API that
 * checks resourceVersions as the API server does (an update or a delete of a
 * version that is not the current one is a Conflict), and caches that show
 * the API's objects, or a snapshot of them where a test makes the cache lag.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { V1Pod } from "@kubernetes/client-node";
import type { Emulator } from "../../src/controller/crd/types.js";
import {
  CLAIM_LABEL,
  POOL_LABEL,
  type EmulatorClaim,
  type EmulatorPool,
} from "../../src/controller/crd/pool-types.js";
import type { EmulatorList, List } from "../../src/controller/kube/client.js";
import { KubeError } from "../../src/controller/kube/errors.js";
import { PoolReconciler } from "../../src/controller/pool/pool-reconciler.js";
import { ClaimReconciler } from "../../src/controller/pool/claim-reconciler.js";
import { randomSuffix } from "../../src/controller/pool/instances.js";
import { parseSpec } from "../../src/controller/crd/types.js";
import { buildPod } from "../../src/controller/objects/pod.js";
import { AgentOptions } from "../../src/controller/options.js";

const NS = "ns";
const IMAGE = "/var/lib/hexclave-emulator/images/e.qcow2";
const conflict = (what: string) => new KubeError(409, "Conflict", `${what}: the object has been modified`);
const notFound = (what: string) => new KubeError(404, "NotFound", `${what} not found`);

class FakeApi {
  readonly emulators = new Map<string, Emulator>();
  readonly pools = new Map<string, EmulatorPool>();
  readonly claims = new Map<string, EmulatorClaim>();
  readonly calls: string[] = [];
  private rv = 1;
  private uid = 1;
  private clock = 0;

  private stamp<T extends { metadata: Emulator["metadata"] }>(o: T): T {
    return {
      ...o,
      metadata: {
        ...o.metadata,
        uid: o.metadata.uid ?? `uid-${this.uid++}`,
        creationTimestamp: o.metadata.creationTimestamp ?? new Date(Date.UTC(2026, 0, 1, 0, 0, this.clock++)),
        generation: o.metadata.generation ?? 1,
        resourceVersion: String(++this.rv),
      },
    };
  }
  addPool(name: string, spec: Partial<EmulatorPool["spec"]> = {}): EmulatorPool {
    const p = this.stamp<EmulatorPool>({
      apiVersion: "emulator.hexclave.com/v1alpha1",
      kind: "EmulatorPool",
      metadata: { name, namespace: NS },
      spec: { template: { image: IMAGE }, replicas: 2, maxCreating: 2, ...spec },
    });
    this.pools.set(name, p);
    return p;
  }
  addClaim(name: string, poolName: string): EmulatorClaim {
    const c = this.stamp<EmulatorClaim>({
      apiVersion: "emulator.hexclave.com/v1alpha1",
      kind: "EmulatorClaim",
      metadata: { name, namespace: NS },
      spec: { poolName },
    });
    this.claims.set(name, c);
    return c;
  }
  /** What the Emulator reconcile and the agent would write: Ready and rotated, with its Secret and Service. */
  makeReady(name: string, ready = true): void {
    const e = this.emulators.get(name)!;
    const cond = (type: string) => ({
      type,
      status: ready ? ("True" as const) : ("False" as const),
      reason: ready ? "Ready" : "Starting",
      message: ready ? "ok" : "the Pod is starting",
      lastTransitionTime: "2026-01-01T00:00:00Z",
    });
    this.emulators.set(name, {
      ...e,
      metadata: { ...e.metadata, resourceVersion: String(++this.rv) },
      status: {
        conditions: [cond("Ready"), cond("SecretsRotated")],
        secretName: `${name}-emulator-keys`,
        endpoints: [
          {
            name: "backend",
            host: `${name}.${NS}.svc.cluster.local`,
            port: 26701,
            url: `http://${name}.${NS}.svc.cluster.local:26701`,
          },
        ],
      },
    });
  }
  instances(pool: string): Emulator[] {
    return [...this.emulators.values()].filter((e) => e.metadata.labels?.[POOL_LABEL] === pool);
  }

  listEmulators = (_ns?: string, selector?: string): Promise<EmulatorList> => {
    const [k, v] = (selector ?? "").split("=");
    return Promise.resolve({
      items: [...this.emulators.values()].filter((e) => !k || e.metadata.labels?.[k] === v),
    });
  };
  createEmulator = (emu: Emulator): Promise<Emulator> => {
    const name = emu.metadata.name ?? "";
    this.calls.push(`create emulator ${name}`);
    if (this.emulators.has(name)) return Promise.reject(new KubeError(409, "AlreadyExists", name));
    const stored = this.stamp(emu);
    this.emulators.set(name, stored);
    return Promise.resolve(stored);
  };
  replaceEmulator = (emu: Emulator): Promise<Emulator> => {
    const name = emu.metadata.name ?? "";
    const cur = this.emulators.get(name);
    if (!cur) return Promise.reject(notFound(name));
    if (cur.metadata.resourceVersion !== emu.metadata.resourceVersion) {
      this.calls.push(`conflict emulator ${name}`);
      return Promise.reject(conflict(name));
    }
    this.calls.push(`update emulator ${name} claim=${emu.metadata.labels?.[CLAIM_LABEL] ?? ""}`);
    const stored = {
      ...emu,
      status: cur.status,
      metadata: { ...emu.metadata, resourceVersion: String(++this.rv) },
    };
    this.emulators.set(name, stored);
    return Promise.resolve(stored);
  };
  deleteEmulator = (_ns: string, name: string, uid: string, resourceVersion?: string): Promise<void> => {
    const cur = this.emulators.get(name);
    if (!cur || cur.metadata.uid !== uid) return Promise.reject(notFound(name));
    if (resourceVersion && cur.metadata.resourceVersion !== resourceVersion) {
      this.calls.push(`conflict delete ${name}`);
      return Promise.reject(conflict(name));
    }
    this.calls.push(`delete emulator ${name}`);
    this.emulators.delete(name);
    return Promise.resolve();
  };
  listPools = (): Promise<List<EmulatorPool>> => Promise.resolve({ items: [...this.pools.values()] });
  replacePoolStatus = (pool: EmulatorPool): Promise<EmulatorPool> => {
    const cur = this.pools.get(pool.metadata.name ?? "")!;
    const stored = { ...cur, status: pool.status };
    this.pools.set(pool.metadata.name ?? "", stored);
    return Promise.resolve(stored);
  };
  listClaims = (): Promise<List<EmulatorClaim>> => Promise.resolve({ items: [...this.claims.values()] });
  replaceClaimStatus = (claim: EmulatorClaim): Promise<EmulatorClaim> => {
    const cur = this.claims.get(claim.metadata.name ?? "")!;
    const stored = { ...cur, status: claim.status };
    this.claims.set(claim.metadata.name ?? "", stored);
    return Promise.resolve(stored);
  };
}

describe("an EmulatorPool and its claims", () => {
  let api: FakeApi;
  let events: string[];
  /** The Emulators the cache shows: the API's, unless a test froze a snapshot. */
  let frozen: Emulator[] | undefined;
  const pods = new Map<string, V1Pod>();
  let pool: PoolReconciler;
  let claims: ClaimReconciler;
  const reconcilePool = (name = "p") => pool.reconcile(NS, name);
  const reconcileClaim = (name: string) => claims.reconcile(NS, name);
  const claimStatus = (name: string) => api.claims.get(name)!.status!;
  const claimReady = (name: string) => claimStatus(name).conditions?.find((c) => c.type === "Ready");
  const poolCondition = (type: string, name = "p") =>
    api.pools.get(name)!.status?.conditions?.find((c) => c.type === type);

  beforeEach(() => {
    api = new FakeApi();
    events = [];
    frozen = undefined;
    pods.clear();
    const caches = {
      pool: (_n: string, name: string) => api.pools.get(name),
      claim: (_n: string, name: string) => api.claims.get(name),
      pod: (_n: string, name: string) => pods.get(name),
      emulators: () => frozen ?? [...api.emulators.values()],
    };
    const recorder = {
      normal: (o: { kind?: string }, reason: string) => events.push(`${o.kind} ${reason}`),
      warning: (o: { kind?: string }, reason: string, message: string) =>
        events.push(`${o.kind} warning ${reason}: ${message}`),
    };
    let n = 0;
    const suffix = () => `s${String(++n).padStart(4, "0")}`;
    pool = new PoolReconciler({ api, caches, events: recorder, suffix });
    claims = new ClaimReconciler({ api, caches, events: recorder, suffix });
  });

  /** A pool of `replicas` whose instances are all Ready. */
  async function filledPool(replicas = 2, name = "p"): Promise<string[]> {
    api.addPool(name, { replicas, maxCreating: replicas });
    await reconcilePool(name);
    for (const e of api.instances(name)) api.makeReady(e.metadata.name!);
    await reconcilePool(name);
    return api.instances(name).map((e) => e.metadata.name!);
  }

  it("names instance suffixes with five random lower-case characters", () => {
    expect(randomSuffix()).toMatch(/^[a-z0-9]{5}$/);
  });

  it("fills the pool with instances of its template, at most maxCreating starting at once", async () => {
    api.addPool("p", {
      replicas: 3,
      maxCreating: 2,
      template: { image: IMAGE, resources: { memory: "1Gi", cpus: 1 } },
    });
    await reconcilePool();
    const first = api.instances("p");
    expect(first.map((e) => e.metadata.name)).toEqual(["p-s0001", "p-s0002"]);
    expect(first[0]!.spec).toEqual({ image: IMAGE, resources: { memory: "1Gi", cpus: 1 } });
    expect(first[0]!.metadata.ownerReferences).toEqual([
      expect.objectContaining({
        kind: "EmulatorPool",
        name: "p",
        uid: api.pools.get("p")!.metadata.uid,
        controller: true,
      }),
    ]);
    expect(api.pools.get("p")!.status).toMatchObject({
      ready: 0,
      creating: 2,
      claimed: 0,
      observedGeneration: 1,
    });
    expect(poolCondition("Ready")).toMatchObject({ status: "False", reason: "Filling" });
    // Both still starting: no third yet.
    await reconcilePool();
    expect(api.instances("p")).toHaveLength(2);
    api.makeReady("p-s0001");
    await reconcilePool();
    expect(api.instances("p").map((e) => e.metadata.name)).toEqual(["p-s0001", "p-s0002", "p-s0003"]);
    for (const e of api.instances("p")) api.makeReady(e.metadata.name!);
    await reconcilePool();
    expect(api.pools.get("p")!.status).toMatchObject({ ready: 3, creating: 0, claimed: 0 });
    expect(poolCondition("Ready")).toMatchObject({ status: "True", reason: "Filled", observedGeneration: 1 });
  });

  it("binds a claim at once to the oldest ready instance: its name, Secret and endpoints, Ready True", async () => {
    const [oldest] = await filledPool(2);
    api.addClaim("c", "p");
    await reconcileClaim("c");
    const bound = api.emulators.get(oldest!)!;
    expect(bound.metadata.labels?.[CLAIM_LABEL]).toBe("c");
    expect(bound.metadata.ownerReferences?.map((r) => [r.kind, r.controller])).toEqual([
      ["EmulatorPool", true],
      ["EmulatorClaim", false],
    ]);
    expect(claimStatus("c")).toMatchObject({
      emulatorName: oldest,
      source: "pool",
      secretName: `${oldest}-emulator-keys`,
      endpoints: [
        expect.objectContaining({ name: "backend", url: `http://${oldest}.ns.svc.cluster.local:26701` }),
      ],
    });
    expect(claimReady("c")).toMatchObject({ status: "True", reason: "Bound", observedGeneration: 1 });
    expect(events).toContain("EmulatorClaim Bound");
    // Bound, the instance no longer counts as ready in the pool: a replacement starts.
    await reconcilePool();
    expect(api.pools.get("p")!.status).toMatchObject({ ready: 1, creating: 1, claimed: 1 });
  });

  it("never binds one instance to two claims: the second, with a stale cache, gets a Conflict and takes the next", async () => {
    const [a, b] = await filledPool(2);
    api.addClaim("one", "p");
    api.addClaim("two", "p");
    frozen = [...api.emulators.values()];
    api.calls.length = 0;
    await reconcileClaim("one");
    await reconcileClaim("two");
    expect(api.calls.filter((c) => c.includes("emulator p-"))).toEqual([
      `update emulator ${a} claim=one`,
      `conflict emulator ${a}`,
      `update emulator ${b} claim=two`,
    ]);
    expect(claimStatus("one").emulatorName).toBe(a);
    expect(claimStatus("two").emulatorName).toBe(b);
  });

  it("falls back to an on-demand Emulator from the template, owned by the claim, and says so", async () => {
    api.addPool("p", { replicas: 0, template: { image: IMAGE, resources: { memory: "1Gi", cpus: 1 } } });
    await reconcilePool();
    api.addClaim("c", "p");
    await reconcileClaim("c");
    const od = api.emulators.get("c-s0001")!;
    expect(od.spec).toEqual({ image: IMAGE, resources: { memory: "1Gi", cpus: 1 } });
    expect(od.metadata.labels).toEqual({ [CLAIM_LABEL]: "c" });
    expect(od.metadata.ownerReferences).toEqual([
      expect.objectContaining({
        kind: "EmulatorClaim",
        name: "c",
        controller: true,
        blockOwnerDeletion: true,
      }),
    ]);
    expect(claimStatus("c")).toMatchObject({ emulatorName: "c-s0001", source: "on-demand" });
    expect(claimReady("c")).toMatchObject({ status: "False", reason: "OnDemandStarting" });
    expect(claimReady("c")!.message).toMatch(/pool p had no ready instance/);
    expect(events).toContain("EmulatorClaim OnDemand");
    // Not an instance: the pool does not count it.
    await reconcilePool();
    expect(api.pools.get("p")!.status).toMatchObject({ ready: 0, creating: 0, claimed: 0 });
    api.makeReady("c-s0001");
    await reconcileClaim("c");
    expect(claimReady("c")).toMatchObject({ status: "True", reason: "OnDemand" });
    expect(claimStatus("c").secretName).toBe("c-s0001-emulator-keys");
    expect(api.emulators.size).toBe(1);
  });

  it("finds its bound instance again when the status write was lost, and binds no second one", async () => {
    const [a] = await filledPool(2);
    api.addClaim("c", "p");
    const write = api.replaceClaimStatus;
    api.replaceClaimStatus = () => Promise.reject(new KubeError(500, "InternalError", "etcd hiccup"));
    await expect(reconcileClaim("c")).rejects.toThrow(/etcd hiccup/);
    api.replaceClaimStatus = write;
    await reconcileClaim("c");
    expect(claimStatus("c").emulatorName).toBe(a);
    expect(api.instances("p").filter((e) => e.metadata.labels?.[CLAIM_LABEL])).toHaveLength(1);
  });

  it("deletes an instance whose claim is gone (never handed on) and refills", async () => {
    const [a, b] = await filledPool(2);
    api.addClaim("c", "p");
    await reconcileClaim("c");
    api.claims.delete("c");
    await reconcilePool();
    expect(api.emulators.has(a!)).toBe(false);
    expect(api.emulators.has(b!)).toBe(true);
    expect(api.instances("p")).toHaveLength(2);
    expect(events).toContain("EmulatorPool InstanceReleased");
    // A new claim of the same name is another claim: it gets the other instance, not the first's.
    api.addClaim("c", "p");
    await reconcileClaim("c");
    expect(claimStatus("c").emulatorName).toBe(b);
  });

  it("scales down by deleting only unclaimed instances, starting ones first, and never a claimed one", async () => {
    const [a] = await filledPool(3);
    api.addClaim("c", "p");
    await reconcileClaim("c");
    await reconcilePool(); // one replacement starts
    api.pools.set("p", { ...api.pools.get("p")!, spec: { ...api.pools.get("p")!.spec, replicas: 1 } });
    await reconcilePool();
    const left = api.instances("p");
    expect(left.map((e) => e.metadata.name)).toContain(a);
    expect(left.filter((e) => !e.metadata.labels?.[CLAIM_LABEL])).toHaveLength(1);
    expect(api.calls).toContain("delete emulator p-s0004"); // the one still starting
    api.pools.set("p", { ...api.pools.get("p")!, spec: { ...api.pools.get("p")!.spec, replicas: 0 } });
    await reconcilePool();
    expect(api.instances("p").map((e) => e.metadata.name)).toEqual([a]);
    expect(api.pools.get("p")!.status).toMatchObject({ ready: 0, creating: 0, claimed: 1 });
  });

  it("keeps an instance a claim bound between the pool's read and its delete (the delete is of the version seen)", async () => {
    const [a] = await filledPool(1);
    api.pools.set("p", { ...api.pools.get("p")!, spec: { ...api.pools.get("p")!.spec, replicas: 0 } });
    api.addClaim("c", "p");
    // The pool lists the instance unclaimed; the claim binds it before the delete arrives.
    const list = api.listEmulators;
    api.listEmulators = async (ns, sel) => {
      const got = await list(ns, sel);
      api.listEmulators = list;
      await reconcileClaim("c");
      return got;
    };
    await reconcilePool();
    expect(api.calls).toContain(`conflict delete ${a}`);
    expect(api.emulators.get(a!)!.metadata.labels?.[CLAIM_LABEL]).toBe("c");
    expect(claimReady("c")).toMatchObject({ status: "True", reason: "Bound" });
  });

  it("says in a condition and a Warning when its instances cannot be scheduled", async () => {
    api.addPool("p", { replicas: 1 });
    await reconcilePool();
    const [inst] = api.instances("p");
    pods.set(`${inst!.metadata.name}-emulator`, {
      metadata: { name: `${inst!.metadata.name}-emulator` },
      status: {
        phase: "Pending",
        conditions: [
          {
            type: "PodScheduled",
            status: "False",
            reason: "Unschedulable",
            message: "0/1 nodes are available: 1 Insufficient cpu.",
          },
        ],
      },
    });
    await reconcilePool();
    expect(poolCondition("Schedulable")).toMatchObject({ status: "False", reason: "Unschedulable" });
    expect(poolCondition("Schedulable")!.message).toMatch(/Insufficient cpu/);
    expect(events.filter((e) => e.startsWith("EmulatorPool warning Unschedulable"))).toHaveLength(1);
    pods.clear();
    api.makeReady(inst!.metadata.name!);
    await reconcilePool();
    expect(poolCondition("Schedulable")).toMatchObject({ status: "True" });
  });

  it("reports a claim of a pool that does not exist as PoolNotFound, and binds once the pool has an instance", async () => {
    api.addClaim("c", "nope");
    await reconcileClaim("c");
    expect(claimReady("c")).toMatchObject({ status: "False", reason: "PoolNotFound" });
    expect(events).toContain("EmulatorClaim warning PoolNotFound: there is no EmulatorPool nope in ns");
    await filledPool(1, "nope");
    await reconcileClaim("c");
    expect(claimReady("c")).toMatchObject({ status: "True", reason: "Bound" });
  });

  it("deletes a deleted claim's on-demand Emulator, and an instance bound to an earlier claim of its name", async () => {
    api.addPool("p", { replicas: 0 });
    api.addClaim("c", "p");
    await reconcileClaim("c");
    expect(api.emulators.has("c-s0001")).toBe(true);
    api.claims.delete("c");
    await reconcileClaim("c");
    expect(api.emulators.size).toBe(0);
  });

  it("reports the Emulator of a bound claim gone as EmulatorLost, and takes no other", async () => {
    const [a] = await filledPool(2);
    api.addClaim("c", "p");
    await reconcileClaim("c");
    api.emulators.delete(a!);
    await reconcileClaim("c");
    expect(claimReady("c")).toMatchObject({ status: "False", reason: "EmulatorLost" });
    expect(claimStatus("c").emulatorName).toBe(a);
    expect(api.instances("p").filter((e) => e.metadata.labels?.[CLAIM_LABEL])).toHaveLength(0);
  });

  it("replaces unclaimed instances made from an earlier template, and keeps claimed ones", async () => {
    const [a, b] = await filledPool(2);
    api.addClaim("c", "p");
    await reconcileClaim("c");
    const p = api.pools.get("p")!;
    api.pools.set("p", {
      ...p,
      metadata: { ...p.metadata, generation: 2 },
      spec: { ...p.spec, template: { image: IMAGE, resources: { memory: "2Gi", cpus: 1 } } },
    });
    await reconcilePool();
    expect(api.emulators.has(a!)).toBe(true);
    expect(api.emulators.has(b!)).toBe(false);
    expect(events).toContain("EmulatorPool TemplateChanged");
    const fresh = api.instances("p").filter((e) => !e.metadata.labels?.[CLAIM_LABEL]);
    expect(fresh.map((e) => e.spec.resources?.memory)).toEqual(["2Gi", "2Gi"]);
  });

  it("spreads a pool's instance Pods over the nodes, and leaves other Emulators' Pods as they were", () => {
    const spec = parseSpec({ image: IMAGE });
    if (!spec.ok) throw new Error(spec.problems.join());
    const agent = AgentOptions.parse({});
    const pooled = buildPod({ name: "p-abcde", namespace: NS, uid: "u", pool: "p" }, spec.spec, agent);
    expect(pooled.metadata?.labels?.[POOL_LABEL]).toBe("p");
    expect(pooled.spec?.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution).toEqual([
      {
        weight: 100,
        podAffinityTerm: {
          topologyKey: "kubernetes.io/hostname",
          labelSelector: { matchLabels: { [POOL_LABEL]: "p" } },
        },
      },
    ]);
    const plain = buildPod({ name: "e", namespace: NS, uid: "u" }, spec.spec, agent);
    expect(plain.metadata?.labels?.[POOL_LABEL]).toBeUndefined();
    expect(plain.spec?.affinity?.podAntiAffinity).toBeUndefined();
  });

  it("deletes a deleted pool's unclaimed instances, and leaves its claimed ones serving their claims", async () => {
    const [a, b] = await filledPool(2);
    api.addClaim("c", "p");
    await reconcileClaim("c");
    api.pools.delete("p");
    await reconcilePool();
    expect(api.emulators.has(a!)).toBe(true);
    expect(api.emulators.has(b!)).toBe(false);
    await reconcileClaim("c");
    expect(claimReady("c")).toMatchObject({ status: "True", reason: "Bound" });
  });

  it("reconciles a settled pool and a bound claim without writing anything", async () => {
    await filledPool(1);
    api.addClaim("c", "p");
    await reconcileClaim("c");
    await reconcilePool();
    for (const e of api.instances("p")) api.makeReady(e.metadata.name!);
    await reconcilePool();
    api.calls.length = 0;
    const poolStatus = api.pools.get("p")!.status;
    const cs = api.claims.get("c")!.status;
    await reconcilePool();
    await reconcileClaim("c");
    expect(api.calls).toEqual([]);
    expect(api.pools.get("p")!.status).toBe(poolStatus);
    expect(api.claims.get("c")!.status).toBe(cs);
  });
});
