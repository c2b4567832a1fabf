/**
 * The Helm chart, rendered by helm (built from its Go module) and checked by
 * a real API server: every object passes server-side dry-run validation, and
 * the controller's ServiceAccount can do exactly what src/controller/rbac.ts
 * lists (SubjectAccessReview: each permission allowed, the rest denied).
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { AuthorizationV1Api } from "@kubernetes/client-node";
import {
  createNamespace,
  serviceAccountToken,
  k8sTools,
  startTestCluster,
  type TestCluster,
} from "../support/controller-apiserver.js";
import { applyCrd } from "../support/controller-env.js";
import { REPO_ROOT } from "../support/tools.js";
import {
  CONTROLLER_PERMISSIONS,
  controllerPermissions,
  LEASE_PERMISSIONS,
} from "../../src/controller/rbac.js";
import { ControllerOptions } from "../../src/controller/options.js";
import { agentEnv, buildPod } from "../../src/controller/objects/pod.js";
import { markPodWarmed, runWarm } from "../../src/controller/agent/warm.js";
import { parseSpec } from "../../src/controller/crd/types.js";

const CHART = join(REPO_ROOT, "charts/hexclave-emulator");
const RELEASE_NS = "hexclave-emulator";

type Doc = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
};
type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };

describe("the Helm chart", () => {
  let cluster: TestCluster;
  let helm: string;
  const render = (sets: string[] = [], extra: string[] = []): Doc[] => {
    const out = execFileSync(
      helm,
      [
        "template",
        "emu",
        CHART,
        "-n",
        RELEASE_NS,
        "--kube-version",
        "1.34.4",
        "--include-crds",
        ...extra,
        ...sets.flatMap((s) => ["--set", s]),
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
    return parseAllDocuments(out)
      .map((d) => d.toJSON() as Doc | null)
      .filter((d): d is Doc => d !== null);
  };
  const byKind = (docs: Doc[], kind: string, name?: string) =>
    docs.filter((d) => d.kind === kind && (!name || d.metadata.name === name));
  const dryRun = (docs: Doc[]) =>
    cluster.kubectl(["apply", "--dry-run=server", "-f", "-"], docs.map((d) => JSON.stringify(d)).join("\n"));

  beforeAll(async () => {
    helm = k8sTools(["helm"]).helm;
    cluster = await startTestCluster(27865);
    applyCrd(cluster);
    createNamespace(cluster, RELEASE_NS);
    createNamespace(cluster, "team-a");
    createNamespace(cluster, "team-b");
  }, 180_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it("lints", () => {
    expect(execFileSync(helm, ["lint", CHART, "--kube-version", "1.34.4"], { encoding: "utf8" })).toMatch(
      /1 chart\(s\) linted, 0 chart\(s\) failed/,
    );
  });

  const variants: [string, string[]][] = [
    ["the defaults", []],
    ["one watched namespace", ["controller.watchNamespace=team-b"]],
    [
      "the warm-up DaemonSet with a hostPath /dev/kvm",
      [
        "warmup.enabled=true",
        "warmup.emulatorImage=https://example.com/stack-emulator-amd64.qcow2",
        "agent.kvm.mode=host-path",
        "agent.privileged=true",
      ],
    ],
    [
      "a single replica without leader election",
      ["controller.replicas=1", "controller.leaderElection.enabled=false"],
    ],
  ];
  for (const [what, sets] of variants) {
    it(`renders ${what} into objects the API server accepts (dry-run=server)`, () => {
      const docs = render(sets);
      expect(docs.length).toBeGreaterThan(5);
      const out = dryRun(docs);
      for (const d of docs) expect(out).toContain(`${d.metadata.name}`);
      expect(out).toMatch(/\(server dry run\)/);
    });
  }

  it("refuses values its schema forbids", () => {
    expect(() => render(["agent.kvm.mode=magic"])).toThrow(
      /values don't meet the specifications of the schema|kvm/,
    );
    expect(() => render(["warmup.memory=4G"])).toThrow(/memory/);
    expect(() => render(["warmup.enabled=true"])).toThrow(/warmup.emulatorImage is required/);
  });

  it("runs two controller replicas with leader election on a Lease it may update by name only", () => {
    const docs = render();
    const [dep] = byKind(docs, "Deployment");
    expect((dep as unknown as { spec: { replicas: number } }).spec.replicas).toBe(2);
    const [cm] = byKind(docs, "ConfigMap");
    const config = ControllerOptions.parse(
      JSON.parse((cm as unknown as { data: Record<string, string> }).data["controller.json"]!),
    );
    expect(config.leaderElection).toMatchObject({ enabled: true, leaseName: "emu-hexclave-emulator-leader" });
    expect(config.agent).toMatchObject({
      image: "ghcr.io/hexclave/emulator-action:0.1.0",
      port: 8090,
      kvm: { mode: "device-plugin" },
    });
    const leaseRole = byKind(docs, "Role", "emu-hexclave-emulator-leader")[0] as unknown as { rules: Rule[] };
    expect(leaseRole.rules).toEqual(
      LEASE_PERMISSIONS.map((p) => ({
        apiGroups: [p.group],
        resources: [p.resource],
        ...(p.leaseOnly ? { resourceNames: ["emu-hexclave-emulator-leader"] } : {}),
        verbs: [...p.verbs],
      })),
    );
  });

  it("grants in its ClusterRole exactly the permissions the controller's calls need", () => {
    const role = byKind(render(), "ClusterRole")[0] as unknown as { rules: Rule[] };
    const granted = new Set(
      role.rules.flatMap((r) =>
        r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`))),
      ),
    );
    const needed = new Set(
      CONTROLLER_PERMISSIONS.flatMap((p) => p.verbs.map((v) => `${p.group}/${p.resource}:${v}`)),
    );
    expect([...granted].sort()).toEqual([...needed].sort());
    for (const r of role.rules) expect(r.resourceNames).toBeUndefined();
  });

  it("lets the controller list and watch Secrets only where asked: in one watched namespace by default, cluster-wide with always", () => {
    const grants = (docs: Doc[], kind: string) => {
      const role = byKind(docs, kind).find((d) => !d.metadata.name.endsWith("-leader")) as unknown as {
        rules: Rule[];
      };
      return role.rules
        .filter((r) => r.resources.includes("secrets"))
        .flatMap((r) => r.verbs)
        .sort();
    };
    const configOf = (docs: Doc[]) =>
      ControllerOptions.parse(
        JSON.parse(
          (byKind(docs, "ConfigMap")[0] as unknown as { data: Record<string, string> }).data[
            "controller.json"
          ]!,
        ),
      );
    const cluster = render();
    expect(grants(cluster, "ClusterRole")).toEqual(["create", "delete", "get"]);
    expect(configOf(cluster).watchSecrets).toBe(false);
    const scoped = render(["controller.watchNamespace=team-b"]);
    expect(grants(scoped, "Role")).toEqual(["create", "delete", "get", "list", "watch"]);
    expect(configOf(scoped).watchSecrets).toBe(true);
    const always = render(["controller.watchSecrets=always"]);
    expect(grants(always, "ClusterRole")).toEqual(["create", "delete", "get", "list", "watch"]);
    expect(configOf(always).watchSecrets).toBe(true);
    // The permissions the controller needs with the watch are exactly these.
    expect(
      controllerPermissions(true)
        .find((p) => p.resource === "secrets")!
        .verbs.slice()
        .sort(),
    ).toEqual(["create", "delete", "get", "list", "watch"]);
    expect(
      grants(render(["controller.watchNamespace=team-b", "controller.watchSecrets=never"]), "Role"),
    ).toEqual(["create", "delete", "get"]);
  });

  describe("RBAC against the API server (SubjectAccessReview)", () => {
    let authz: AuthorizationV1Api;
    const can = async (
      user: string,
      group: string,
      resource: string,
      verb: string,
      namespace: string,
      name?: string,
    ) => {
      const [res, sub] = resource.split("/");
      const r = await authz.createSubjectAccessReview({
        body: {
          spec: {
            user,
            groups: [
              "system:serviceaccounts",
              `system:serviceaccounts:${RELEASE_NS}`,
              "system:authenticated",
            ],
            resourceAttributes: {
              group,
              resource: res,
              subresource: sub,
              verb,
              namespace,
              ...(name ? { name } : {}),
            },
          },
        },
      });
      return r.status?.allowed ?? false;
    };
    const sa = `system:serviceaccount:${RELEASE_NS}:emu-hexclave-emulator`;

    beforeAll(() => {
      authz = cluster.admin().makeApiClient(AuthorizationV1Api);
      const docs = render().filter((d) =>
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"].includes(d.kind),
      );
      cluster.kubectl(["apply", "-f", "-"], docs.map((d) => JSON.stringify(d)).join("\n"));
    });

    it("allows every call the controller makes, in any namespace", async () => {
      for (const ns of ["team-a", "team-b"]) {
        for (const p of CONTROLLER_PERMISSIONS) {
          for (const v of p.verbs)
            expect(await can(sa, p.group, p.resource, v, ns), `${v} ${p.resource} in ${ns}`).toBe(true);
        }
      }
      expect(
        await can(sa, "coordination.k8s.io", "leases", "update", RELEASE_NS, "emu-hexclave-emulator-leader"),
      ).toBe(true);
      expect(
        await can(sa, "coordination.k8s.io", "leases", "get", RELEASE_NS, "emu-hexclave-emulator-leader"),
      ).toBe(true);
      expect(await can(sa, "coordination.k8s.io", "leases", "create", RELEASE_NS)).toBe(true);
    });

    it("denies everything else it was tempted to have", async () => {
      const denied: [string, string, string, string?][] = [
        ["", "secrets", "list"],
        ["", "secrets", "watch"],
        ["", "secrets", "update"],
        ["", "secrets", "patch"],
        ["", "pods", "get"],
        ["", "pods", "update"],
        ["", "pods/exec", "create"],
        ["", "pods/proxy", "get"],
        ["", "pods/log", "get"],
        ["", "serviceaccounts/token", "create"],
        ["", "configmaps", "get"],
        ["", "nodes", "list"],
        ["", "nodes", "patch"],
        ["emulator.hexclave.com", "emulators", "patch"],
        ["emulator.hexclave.com", "emulatorpools", "update"],
        ["emulator.hexclave.com", "emulatorpools", "create"],
        ["emulator.hexclave.com", "emulatorclaims", "update"],
        ["emulator.hexclave.com", "emulatorclaims", "delete"],
        ["apps", "deployments", "create"],
        ["rbac.authorization.k8s.io", "roles", "create"],
        ["coordination.k8s.io", "leases", "update", "someone-elses-lease"],
        ["coordination.k8s.io", "leases", "delete", "emu-hexclave-emulator-leader"],
      ];
      for (const [group, resource, verb, name] of denied) {
        expect(await can(sa, group, resource, verb, "team-a", name), `${verb} ${resource}`).toBe(false);
      }
      expect(
        await can(sa, "coordination.k8s.io", "leases", "update", "team-a", "emu-hexclave-emulator-leader"),
      ).toBe(false);
    });

    it("with one watched namespace, is allowed there and nowhere else", async () => {
      const docs = render(["controller.watchNamespace=team-b", "fullnameOverride=scoped"]).filter((d) =>
        ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"].includes(d.kind),
      );
      expect(docs.some((d) => d.kind === "ClusterRole")).toBe(false);
      cluster.kubectl(["apply", "-f", "-"], docs.map((d) => JSON.stringify(d)).join("\n"));
      const scoped = `system:serviceaccount:${RELEASE_NS}:scoped`;
      expect(await can(scoped, "", "pods", "create", "team-b")).toBe(true);
      expect(await can(scoped, "emulator.hexclave.com", "emulators", "watch", "team-b")).toBe(true);
      expect(await can(scoped, "", "pods", "create", "team-a")).toBe(false);
      expect(await can(scoped, "emulator.hexclave.com", "emulators", "watch", "team-a")).toBe(false);
      // It watches its Secrets there (controller.watchSecrets: namespaced), and nowhere else.
      expect(await can(scoped, "", "secrets", "watch", "team-b")).toBe(true);
      expect(await can(scoped, "", "secrets", "list", "team-a")).toBe(false);
    });
  });

  it("warms the node store under the snapshot key Emulators with the same settings use", () => {
    const url = "https://example.com/stack-emulator-amd64.qcow2";
    const docs = render([
      "warmup.enabled=true",
      `warmup.emulatorImage=${url}`,
      "warmup.memory=2Gi",
      "warmup.cpus=3",
    ]);
    const ds = byKind(docs, "DaemonSet")[0] as unknown as {
      spec: {
        template: { spec: { containers: { env: { name: string; value: string }[]; args: string[] }[] } };
      };
    };
    const warm = Object.fromEntries(ds.spec.template.spec.containers[0]!.env.map((e) => [e.name, e.value]));
    expect(ds.spec.template.spec.containers[0]!.args).toEqual(["warm"]);
    const spec = parseSpec({ image: url, resources: { memory: "2Gi", cpus: 3 } });
    if (!spec.ok) throw new Error(spec.problems.join());
    const pod = Object.fromEntries(
      agentEnv({ name: "x", namespace: "y", uid: "z" }, spec.spec, ControllerOptions.parse({}).agent).map(
        (e) => [e.name, e.value],
      ),
    );
    for (const k of [
      "HEXCLAVE_EMULATOR_IMAGE",
      "HEXCLAVE_AGENT_IMAGE_URL",
      "EMULATOR_RAM",
      "EMULATOR_CPUS",
      "HEXCLAVE_EMULATOR_SNAPSHOT_DIR",
      "EMULATOR_IMAGE_DIR",
    ]) {
      expect(warm[k], k).toBe(pod[k]);
    }
  });

  it("warms without holding an emulator's share of the node, may label only Pods of its namespace, and makes emulators prefer warmed nodes", () => {
    const docs = render([
      "warmup.enabled=true",
      "warmup.emulatorImage=https://example.com/stack-emulator-amd64.qcow2",
      "warmup.memory=4Gi",
      "warmup.cpus=2",
    ]);
    type Res = { requests: Record<string, string>; limits: Record<string, string> };
    const ds = byKind(docs, "DaemonSet")[0] as unknown as {
      spec: {
        template: {
          spec: {
            serviceAccountName: string;
            containers: { resources: Res; env: { name: string; valueFrom?: unknown }[] }[];
          };
        };
      };
    };
    const c = ds.spec.template.spec.containers[0]!;
    // Requests little (scheduling reserves requests), may burst to a capture's memory.
    expect(c.resources.requests).toMatchObject({ cpu: "50m", memory: "128Mi" });
    expect(c.resources.limits.memory).toBe(`${4096 + 512}Mi`);
    expect(c.env.map((e) => e.name)).toEqual(expect.arrayContaining(["POD_NAME", "POD_NAMESPACE"]));
    const role = byKind(docs, "Role").find((d) => d.metadata.name.endsWith("-warmup")) as unknown as {
      metadata: { name: string; namespace: string };
      rules: Rule[];
    };
    expect(role.metadata.namespace).toBe(RELEASE_NS);
    expect(role.rules).toEqual([{ apiGroups: [""], resources: ["pods"], verbs: ["patch"] }]);
    expect(ds.spec.template.spec.serviceAccountName).toBe(`${role.metadata.name}`);
    const [cm] = byKind(docs, "ConfigMap");
    const config = ControllerOptions.parse(
      JSON.parse((cm as unknown as { data: Record<string, string> }).data["controller.json"]!),
    );
    expect(config.agent.preferWarmNodesIn).toBe(RELEASE_NS);
    const spec = parseSpec({ image: "/x.qcow2" });
    if (!spec.ok) throw new Error(spec.problems.join());
    const pod = buildPod({ name: "x", namespace: "y", uid: "z" }, spec.spec, config.agent);
    expect(
      pod.spec?.affinity?.podAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0],
    ).toMatchObject({
      podAffinityTerm: {
        labelSelector: { matchLabels: { "emulator.hexclave.com/warmed": "true" } },
        namespaces: [RELEASE_NS],
        topologyKey: "kubernetes.io/hostname",
      },
    });
    // Without the warm-up, no preference.
    const plain = ControllerOptions.parse(
      JSON.parse(
        (byKind(render(), "ConfigMap")[0] as unknown as { data: Record<string, string> }).data[
          "controller.json"
        ]!,
      ),
    );
    expect(
      buildPod({ name: "x", namespace: "y", uid: "z" }, spec.spec, plain.agent).spec?.affinity,
    ).toBeUndefined();
  });

  it("lets the warm-up Pod, with its own ServiceAccount, mark itself warmed once its capture is done", async () => {
    const docs = render([
      "warmup.enabled=true",
      "warmup.emulatorImage=https://example.com/stack-emulator-amd64.qcow2",
    ]).filter((d) => d.metadata.name.endsWith("-warmup") && d.kind !== "DaemonSet");
    expect(docs.map((d) => d.kind).sort()).toEqual(["Role", "RoleBinding", "ServiceAccount"]);
    cluster.kubectl(["apply", "-f", "-"], docs.map((d) => JSON.stringify(d)).join("\n"));
    const pod = "emu-hexclave-emulator-warmup-abcde";
    cluster.kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: pod, namespace: RELEASE_NS },
        spec: { containers: [{ name: "warmup", image: "x" }] },
      }),
    );
    const kc = cluster.withToken(serviceAccountToken(cluster, RELEASE_NS, "emu-hexclave-emulator-warmup"));
    let marked!: () => void;
    const wasMarked = new Promise<void>((r) => (marked = r));
    const warm = await runWarm(
      {
        HEXCLAVE_AGENT_PORT: "0",
        HEXCLAVE_EMULATOR_IMAGE: "/x.qcow2",
        POD_NAME: pod,
        POD_NAMESPACE: RELEASE_NS,
      },
      {
        capture: () => Promise.resolve({ key: "k", skipped: true } as never),
        markWarmed: async (env) => {
          await markPodWarmed(env, kc);
          marked();
        },
        log: () => undefined,
      },
    );
    try {
      await wasMarked;
      const labels = JSON.parse(cluster.kubectl(["get", "pod", pod, "-n", RELEASE_NS, "-o", "json"])).metadata
        .labels;
      expect(labels).toMatchObject({ "emulator.hexclave.com/warmed": "true" });
      // The same token may not touch Pods elsewhere.
      await expect(markPodWarmed({ POD_NAME: pod, POD_NAMESPACE: "team-a" }, kc)).rejects.toThrow(
        /403|forbidden/i,
      );
    } finally {
      await warm.stop();
    }
  });

  it("installs (dry-run against the API server) and prints how to create a first Emulator", () => {
    const out = execFileSync(
      helm,
      // A release of its own: the RBAC tests above applied emu's objects for real.
      [
        "install",
        "fresh",
        CHART,
        "-n",
        "team-a",
        "--dry-run=server",
        "--kubeconfig",
        cluster.adminKubeconfigPath,
      ],
      { encoding: "utf8" },
    );
    expect(out).toContain("NOTES:");
    expect(out).toContain("kind: Emulator");
    expect(out).toContain("kubectl get emulators");
  });
});
