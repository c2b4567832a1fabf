import { describe, expect, it } from "vitest";
import type { V1Pod } from "@kubernetes/client-node";
import {
  nextStatus,
  sameStatus,
  viewPod,
  type Observation,
  type PodView,
} from "../../src/controller/reconcile/observe.js";
import { setCondition } from "../../src/controller/reconcile/conditions.js";
import type { AgentReport } from "../../src/controller/agent/contract.js";
import type { Condition } from "../../src/controller/crd/types.js";

const t1 = new Date("2025-01-01T00:00:00.000Z");
const t2 = new Date("2025-01-01T00:05:00.000Z");
const pod = (over: Partial<PodView> = {}): PodView => ({
  name: "ci-emulator",
  uid: "pod-1",
  phase: "Running",
  ready: false,
  ip: "10.0.0.7",
  node: "node-a",
  deleting: false,
  restarts: 0,
  ...over,
});
const ready: AgentReport = {
  state: "ready",
  startedAt: t1.toISOString(),
  startupSeconds: 1.2345,
  bootMode: "resume",
  strategy: "template",
  snapshotKey: "k1",
  qemuVersion: "10.0.2",
  accelerator: "kvm",
  rotatedToSecret: true,
  timings: { resume: 300 },
};
const obs = (o: Partial<Observation>): Observation => ({
  generation: 3,
  now: t1,
  endpoints: [],
  secretName: "ci-emulator-keys",
  rotation: true,
  ...o,
});
const cond = (s: { conditions?: Condition[] }, type: string) => s.conditions?.find((c) => c.type === type);

describe("status from observations", () => {
  it("is Pending without a Pod, with every condition at the observed generation", () => {
    const s = nextStatus(undefined, obs({}));
    expect(s.phase).toBe("Pending");
    expect(cond(s, "Ready")).toMatchObject({ status: "False", reason: "PodPending", observedGeneration: 3 });
    expect(cond(s, "SnapshotResumed")?.status).toBe("Unknown");
    expect(cond(s, "SecretsRotated")?.status).toBe("Unknown");
    expect(s.observedGeneration).toBe(3);
  });

  it("copies a ready agent's report: Ready, SnapshotResumed and SecretsRotated true", () => {
    const s = nextStatus(undefined, obs({ pod: pod({ ready: true }), report: ready }));
    expect(s).toMatchObject({
      phase: "Ready",
      bootMode: "resume",
      startupSeconds: 1.235,
      node: "node-a",
      podUID: "pod-1",
      snapshotKey: "k1",
    });
    expect(cond(s, "Ready")).toMatchObject({ status: "True", reason: "Resumed" });
    expect(cond(s, "SnapshotResumed")).toMatchObject({ status: "True", reason: "Resumed" });
    expect(cond(s, "SecretsRotated")).toMatchObject({ status: "True", reason: "Rotated" });
    expect(cond(s, "Degraded")).toMatchObject({ status: "False" });
  });

  it("keeps a Pod's boot facts without a new report, and drops them with the Pod", () => {
    const first = nextStatus(undefined, obs({ pod: pod({ ready: true }), report: ready }));
    const again = nextStatus(first, obs({ pod: pod({ ready: true }), now: t2 }));
    expect(sameStatus(first, again)).toBe(true);
    const replaced = nextStatus(first, obs({ pod: pod({ uid: "pod-2" }), now: t2 }));
    expect(replaced.bootMode).toBeUndefined();
    expect(replaced.phase).toBe("Starting");
    expect(cond(replaced, "SnapshotResumed")?.status).toBe("Unknown");
  });

  it("moves lastTransitionTime only when a condition's status flips", () => {
    const a = setCondition(
      undefined,
      { type: "Ready", status: "False", reason: "Starting", message: "m" },
      1,
      t1,
    );
    const b = setCondition(a, { type: "Ready", status: "False", reason: "Other", message: "n" }, 2, t2);
    expect(b[0]?.lastTransitionTime).toBe("2025-01-01T00:00:00Z");
    expect(b[0]).toMatchObject({ reason: "Other", observedGeneration: 2 });
    const c = setCondition(b, { type: "Ready", status: "True", reason: "Resumed", message: "" }, 2, t2);
    expect(c[0]?.lastTransitionTime).toBe("2025-01-01T00:05:00Z");
  });

  it("is Degraded with the agent's own words when it failed, or with the termination message", () => {
    const failed = nextStatus(
      undefined,
      obs({
        pod: pod(),
        report: { state: "failed", startedAt: "", error: { code: "X", message: "no KVM" } },
      }),
    );
    expect(failed.phase).toBe("Degraded");
    expect(cond(failed, "Degraded")).toMatchObject({
      status: "True",
      reason: "AgentFailed",
      message: "no KVM",
    });
    expect(cond(failed, "Ready")?.status).toBe("False");
    const crashed = nextStatus(
      undefined,
      obs({ pod: pod({ terminated: { exitCode: 1, reason: "Error", message: "SNAPSHOT_UNUSABLE: bad" } }) }),
    );
    expect(cond(crashed, "Degraded")?.message).toBe("SNAPSHOT_UNUSABLE: bad");
  });

  it("says a cold boot after a snapshot fallback is degraded but ready", () => {
    const s = nextStatus(
      undefined,
      obs({
        pod: pod({ ready: true }),
        report: { ...ready, bootMode: "cold", fallbackReason: "resume failed: x" },
      }),
    );
    expect(s.phase).toBe("Ready");
    expect(cond(s, "Ready")).toMatchObject({ status: "True", reason: "ColdBooted" });
    expect(cond(s, "SnapshotResumed")).toMatchObject({
      status: "False",
      reason: "ColdBoot",
      message: "resume failed: x",
    });
    expect(cond(s, "Degraded")).toMatchObject({ status: "True", reason: "SnapshotFallback" });
  });

  it("says rotation off out loud", () => {
    const s = nextStatus(
      undefined,
      obs({
        rotation: false,
        secretName: undefined,
        pod: pod({ ready: true }),
        report: { ...ready, rotatedToSecret: false },
      }),
    );
    expect(cond(s, "SecretsRotated")).toMatchObject({ status: "False", reason: "RotationOff" });
    expect(s.secretName).toBeUndefined();
  });

  it("reports problems found before the Pod, such as an invalid spec", () => {
    const s = nextStatus(undefined, obs({ problem: { reason: "InvalidSpec", message: "spec.image: bad" } }));
    expect(cond(s, "Degraded")).toMatchObject({ status: "True", reason: "InvalidSpec" });
  });

  it("reads a Pod's readiness, node, and last termination", () => {
    const v = viewPod({
      metadata: { name: "p", uid: "u" },
      spec: { nodeName: "n1", containers: [] },
      status: {
        phase: "Running",
        podIP: "10.1.1.1",
        conditions: [{ type: "Ready", status: "True" }],
        containerStatuses: [
          {
            name: "emulator",
            image: "i",
            imageID: "",
            ready: true,
            restartCount: 2,
            lastState: { terminated: { exitCode: 1, reason: "Error", message: " boom \n" } },
          },
        ],
      },
    } as V1Pod);
    expect(v).toMatchObject({
      ready: true,
      node: "n1",
      ip: "10.1.1.1",
      restarts: 2,
      terminated: { exitCode: 1, message: "boom" },
    });
  });
});
