import { describe, expect, it } from "vitest";
import { parseSpec, type EmulatorSpec, type EmulatorSpecInput } from "../../src/controller/crd/types.js";
import { buildPod, pulledImagePath, specHash } from "../../src/controller/objects/pod.js";
import { buildSecret, generateKeys, SECRET_KEYS } from "../../src/controller/objects/secret.js";
import { buildService, endpointsOf, serviceDrift } from "../../src/controller/objects/service.js";
import { ownerName, isOwnedBy, type Owned } from "../../src/controller/objects/names.js";
import { AgentOptions } from "../../src/controller/options.js";
import { loadConfig } from "../../src/engine/config/index.js";
import { AGENT_ENV } from "../../src/controller/agent/contract.js";

const owner: Owned = { name: "ci", namespace: "team-a", uid: "1111-2222" };
const agent = AgentOptions.parse({ image: "registry.example/hexclave-emulator:1.0" });
const specOf = (input: EmulatorSpecInput): EmulatorSpec => {
  const r = parseSpec(input);
  if (!r.ok) throw new Error(r.problems.join("; "));
  return r.spec;
};
const base = specOf({ image: "/var/lib/hexclave-emulator/images/e.qcow2" });
const envOf = (pod: ReturnType<typeof buildPod>) =>
  Object.fromEntries((pod.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));

describe("the Secret", () => {
  it("holds four fresh 64-hex keys, base64-encoded, immutable, owned by the Emulator", () => {
    const a = buildSecret(owner);
    const b = buildSecret(owner);
    expect(Object.keys(a.data ?? {})).toEqual([...SECRET_KEYS]);
    for (const k of SECRET_KEYS) {
      const v = Buffer.from(a.data![k]!, "base64").toString();
      expect(v).toMatch(/^[0-9a-f]{64}$/);
      expect(v).not.toBe(Buffer.from(b.data![k]!, "base64").toString());
    }
    expect(a.immutable).toBe(true);
    expect(a.metadata?.name).toBe("ci-emulator-keys");
    expect(a.metadata?.ownerReferences).toEqual([
      {
        apiVersion: "emulator.hexclave.com/v1alpha1",
        kind: "Emulator",
        name: "ci",
        uid: "1111-2222",
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    expect(isOwnedBy(a.metadata, "1111-2222")).toBe(true);
    expect(ownerName(a.metadata)).toBe("ci");
  });

  it("draws its keys from the random source it is given", () => {
    const keys = generateKeys((n) => Buffer.alloc(n, 0xab));
    expect(keys.cronSecret).toBe("ab".repeat(32));
  });
});

describe("the Pod", () => {
  it("configures the engine through its own environment variables, which the engine's loader accepts", () => {
    const pod = buildPod(
      owner,
      specOf({ image: "/var/lib/hexclave-emulator/images/e.qcow2", resources: { memory: "2Gi", cpus: 3 } }),
      agent,
    );
    const env = envOf(pod);
    expect(env).toMatchObject({
      EMULATOR_RAM: "2048",
      EMULATOR_CPUS: "3",
      HEXCLAVE_EMULATOR_SNAPSHOT: "auto",
      EMULATOR_NO_ROTATION: "0",
      HEXCLAVE_EMULATOR_BIND_ADDRESS: "0.0.0.0",
      HEXCLAVE_EMULATOR_HOST_SHARE: "none",
      HEXCLAVE_EMULATOR_SNAPSHOT_DIR: "/var/lib/hexclave-emulator/snapshots",
      [AGENT_ENV.keysDir]: "/var/run/secrets/hexclave-emulator",
      [AGENT_ENV.emulator]: "team-a/ci",
    });
    const config = loadConfig({ env, cwd: "/", homeDir: "/nonexistent", hostArch: "x64" });
    expect(config.ramMiB).toBe(2048);
    expect(config.runDir).toBe("/run/hexclave-emulator/run");
    expect(config.image).toBe("/var/lib/hexclave-emulator/images/e.qcow2");
    expect(config.ports).toEqual({
      dashboard: 26700,
      backend: 26701,
      minio: 26702,
      inbucket: 26703,
      mockOauth: 26704,
    });
    expect(config.hostShare.mode).toBe("none");
  });

  it("requests a share of a core per vCPU when told to overcommit, in millicores", () => {
    const half = buildPod(owner, base, { ...agent, cpuRequestPercent: 40 });
    expect(half.spec!.containers[0]!.resources?.requests?.cpu).toBe("800m");
    expect(buildPod(owner, base, agent).spec!.containers[0]!.resources?.requests?.cpu).toBe("2");
  });

  it("mounts the keys read-only, asks for RAM plus overhead, and needs no API token", () => {
    const pod = buildPod(owner, base, agent);
    const c = pod.spec!.containers[0]!;
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
    expect(pod.spec?.volumes?.find((v) => v.name === "keys")?.secret).toEqual({
      secretName: "ci-emulator-keys",
      defaultMode: 0o400,
    });
    expect(c.volumeMounts?.find((m) => m.name === "keys")).toMatchObject({ readOnly: true });
    expect(c.resources?.requests).toEqual({ cpu: "2", memory: "4608Mi", "devices.kubevirt.io/kvm": "1" });
    expect(c.resources?.limits).toEqual({ memory: "4608Mi", "devices.kubevirt.io/kvm": "1" });
    expect(c.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "agent" });
    // One slow or failed health round on a busy node does not take the endpoints away: 10 s of them do.
    const r = c.readinessProbe!;
    expect(r.failureThreshold! * r.periodSeconds!).toBeGreaterThanOrEqual(10);
    expect(r.timeoutSeconds!).toBeGreaterThan(r.periodSeconds!);
    expect(r.successThreshold ?? 1).toBe(1);
    expect(c.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    expect(pod.spec?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532 });
    expect(pod.spec?.volumes?.find((v) => v.name === "store")?.hostPath).toEqual({
      path: "/var/lib/hexclave-emulator",
      type: "DirectoryOrCreate",
    });
  });

  it("gets /dev/kvm from a device plugin, a hostPath device, or not at all", () => {
    const hostPath = buildPod(
      owner,
      base,
      AgentOptions.parse({ kvm: { mode: "host-path" }, privileged: true }),
    );
    expect(hostPath.spec?.volumes?.find((v) => v.name === "kvm")?.hostPath).toEqual({
      path: "/dev/kvm",
      type: "CharDevice",
    });
    expect(hostPath.spec?.containers[0]?.resources?.limits).not.toHaveProperty("devices.kubevirt.io/kvm");
    expect(hostPath.spec?.containers[0]?.securityContext?.privileged).toBe(true);
    const none = buildPod(owner, base, AgentOptions.parse({ kvm: { mode: "none" } }));
    expect(none.spec?.volumes?.some((v) => v.name === "kvm")).toBe(false);
    expect(none.spec?.containers[0]?.resources?.limits).toEqual({ memory: "4608Mi" });
  });

  it("leaves the keys out when rotation is off, and shares only a claim, never the node", () => {
    const pod = buildPod(
      owner,
      specOf({ image: "/x.qcow2", rotation: false, hostShare: { claimName: "src" } }),
      agent,
    );
    expect(pod.spec?.volumes?.some((v) => v.name === "keys")).toBe(false);
    expect(envOf(pod)).toMatchObject({
      EMULATOR_NO_ROTATION: "1",
      HEXCLAVE_EMULATOR_HOST_SHARE: "/host-share",
      HEXCLAVE_EMULATOR_HOST_SHARE_READ_ONLY: "1",
    });
    expect(envOf(pod)[AGENT_ENV.keysDir]).toBeUndefined();
    expect(pod.spec?.volumes?.find((v) => v.name === "host-share")?.persistentVolumeClaim).toEqual({
      claimName: "src",
      readOnly: true,
    });
  });

  it("pulls a URL image into the node store, one file per URL", () => {
    const url = "https://example.com/releases/stack-emulator-amd64.qcow2";
    const env = envOf(buildPod(owner, specOf({ image: url }), agent));
    expect(env[AGENT_ENV.imageUrl]).toBe(url);
    expect(env.HEXCLAVE_EMULATOR_IMAGE).toBe(pulledImagePath("/var/lib/hexclave-emulator", url));
    expect(env.HEXCLAVE_EMULATOR_IMAGE).toMatch(
      /^\/var\/lib\/hexclave-emulator\/images\/url-[0-9a-f]{16}\.qcow2$/,
    );
  });

  it("schedules by the spec's and the chart's node selectors and tolerations", () => {
    const pod = buildPod(
      owner,
      specOf({
        image: "/x",
        arch: "amd64",
        nodeSelector: { pool: "ci" },
        tolerations: [{ key: "kvm", operator: "Exists" }],
      }),
      AgentOptions.parse({
        nodeSelector: { "emulator.hexclave.com/kvm": "true" },
        tolerations: [{ key: "emulators", operator: "Exists", effect: "NoSchedule" }],
      }),
    );
    expect(pod.spec?.nodeSelector).toEqual({
      "emulator.hexclave.com/kvm": "true",
      "kubernetes.io/arch": "amd64",
      pool: "ci",
    });
    expect(pod.spec?.tolerations).toHaveLength(2);
  });

  it("has a spec hash that is stable and changes with anything the controller decides", () => {
    const a = buildPod(owner, base, agent);
    const b = buildPod(owner, specOf({ image: "/var/lib/hexclave-emulator/images/e.qcow2" }), agent);
    expect(a.metadata?.annotations?.["emulator.hexclave.com/spec-hash"]).toBe(
      b.metadata?.annotations?.["emulator.hexclave.com/spec-hash"],
    );
    expect(specHash(a)).toBe(a.metadata?.annotations?.["emulator.hexclave.com/spec-hash"]);
    const c = buildPod(
      owner,
      specOf({ image: "/var/lib/hexclave-emulator/images/e.qcow2", resources: { memory: "2Gi" } }),
      agent,
    );
    expect(c.metadata?.annotations?.["emulator.hexclave.com/spec-hash"]).not.toBe(
      a.metadata?.annotations?.["emulator.hexclave.com/spec-hash"],
    );
  });
});

describe("the Service", () => {
  it("exposes the chosen services on their ports, targeting the Pod's named ports", () => {
    const spec = specOf({
      image: "/x",
      ports: { backend: 8102 },
      service: { type: "NodePort", expose: ["backend", "mockOauth"] },
    });
    const svc = buildService(owner, spec);
    expect(svc.spec?.type).toBe("NodePort");
    expect(svc.spec?.selector).toEqual({
      "app.kubernetes.io/managed-by": "hexclave-emulator-controller",
      "emulator.hexclave.com/name": "ci",
    });
    expect(svc.spec?.ports).toEqual([
      { name: "backend", protocol: "TCP", port: 8102, targetPort: "backend" },
      { name: "mock-oauth", protocol: "TCP", port: 26704, targetPort: "mock-oauth" },
    ]);
    expect(endpointsOf(owner, spec, "cluster.local")).toEqual([
      {
        name: "backend",
        host: "ci.team-a.svc.cluster.local",
        port: 8102,
        url: "http://ci.team-a.svc.cluster.local:8102",
      },
      {
        name: "mockOauth",
        host: "ci.team-a.svc.cluster.local",
        port: 26704,
        url: "http://ci.team-a.svc.cluster.local:26704",
      },
    ]);
  });

  it("tells drift in what the controller owns from what the API server fills in", () => {
    const desired = buildService(owner, base);
    const live = {
      ...desired,
      spec: {
        ...desired.spec,
        clusterIP: "10.96.0.12",
        sessionAffinity: "None",
        ports: desired.spec?.ports?.map((p) => ({ ...p })),
      },
    };
    expect(serviceDrift(live, desired)).toBeUndefined();
    const other = buildService(owner, specOf({ image: "/x", service: { type: "LoadBalancer" } }));
    expect(serviceDrift(live, other)).toMatch(/type/);
    const fewer = buildService(owner, specOf({ image: "/x", service: { expose: ["backend"] } }));
    expect(serviceDrift(live, fewer)).toBe("ports");
  });
});
