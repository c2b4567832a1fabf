/**
 * End to end: `kubectl apply` of an Emulator against a real API server leads,
 * through the controller (its own ServiceAccount, least-privilege RBAC) and
 * the real agent (a local process started from the Pod spec the controller
 * wrote, with the Secret's keys mounted as files by the stand-in kubelet),
 * to a Ready Emulator that resumed from a snapshot, rotated to the Secret's
 * keys, and answers on its ports; `kubectl delete` stops the VM and removes
 * everything. QEMU is the one on PATH, as in the agent's container image.
 */
import { createHash } from "node:crypto";
import { appendFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNamespace, startTestCluster, type TestCluster } from "../support/controller-apiserver.js";
import {
  applyCrd,
  ClusterView,
  CONTROLLER_NS,
  controllerServiceAccount,
  getJson,
  conditionOf,
  readyOrDegraded,
} from "../support/controller-env.js";
import { FakeKubelet, localProcess } from "../support/controller-kubelet.js";
import { REPO_ROOT, testGuestImage } from "../support/tools.js";
import { EmulatorController } from "../../src/controller/controller.js";
import { controllerOptions } from "../../src/controller/options.js";
import { runPaths } from "../../src/engine/lifecycle/run-dir.js";
import { isAlive, readPidFile } from "../../src/engine/qemu/process.js";
import { stopVm } from "../../src/engine/lifecycle/stop.js";
import type { Emulator } from "../../src/controller/crd/types.js";

const NS = "ci";
const PORT = 27830;
const AGENT_PORT = 27836;
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describe("kubectl apply of an Emulator, end to end (QEMU on PATH)", () => {
  let cluster: TestCluster;
  let controller: EmulatorController;
  let kubelet: FakeKubelet;
  let view: ClusterView;
  const scratch = mkdtempSync(join(tmpdir(), "hxe-e2e-"));
  const runMount = join(scratch, "run");
  const emu = (name: string) => getJson<Emulator>(cluster, ["emulator", name, "-n", NS]);
  const condition = conditionOf;
  /** Ready, from the watch; a Degraded condition on the way fails the wait with its message. */
  const ready = (name: string) => readyOrDegraded(view, name);
  const gone = (name: string, timeoutMs: number) =>
    view.until(`${name} gone`, () => !view.emulator(name), timeoutMs, kubeletLog);
  const kubeletLog = () => `kubelet: ${kubelet.log.slice(-6).join("; ")}; logs: ${agentLogs()}`;
  const manifest = (name: string) => {
    const path = join(scratch, `${name}.yaml`);
    writeFileSync(
      path,
      [
        "apiVersion: emulator.hexclave.com/v1alpha1",
        "kind: Emulator",
        "metadata:",
        `  name: ${name}`,
        `  namespace: ${NS}`,
        "spec:",
        `  image: ${testGuestImage()}`,
        "  resources: { memory: 512Mi, cpus: 1 }",
        `  ports: { dashboard: ${PORT}, backend: ${PORT + 1}, minio: ${PORT + 2}, inbucket: ${PORT + 3}, mockOauth: ${PORT + 4} }`,
        "",
      ].join("\n"),
    );
    return path;
  };
  const secretKey = (name: string) =>
    Buffer.from(
      getJson<{ data: Record<string, string> }>(cluster, ["secret", `${name}-emulator-keys`, "-n", NS])!.data
        .publishableClientKey!,
      "base64",
    ).toString();
  const fingerprint = async () =>
    (await (await fetch(`http://127.0.0.1:${PORT + 1}/internal/pck-fingerprint`)).text()).trim();

  beforeAll(async () => {
    cluster = await startTestCluster(27880);
    applyCrd(cluster);
    createNamespace(cluster, NS);
    const token = controllerServiceAccount(cluster, "e2e-leader");
    view = new ClusterView(cluster.admin(), NS);
    await view.start();
    const options = controllerOptions({
      namespace: CONTROLLER_NS,
      identity: "e2e",
      leaderElection: {
        enabled: true,
        leaseName: "e2e-leader",
        leaseDurationSec: 4,
        renewDeadlineSec: 3,
        retryPeriodSec: 0.5,
      },
      http: { host: "127.0.0.1", port: 0 },
      agent: {
        command: [process.execPath, "--import", "tsx", join(REPO_ROOT, "src/controller/cli.ts")],
        args: ["agent"],
        port: AGENT_PORT,
        storeHostPath: join(scratch, "store"),
        storeMountPath: join(scratch, "store"),
        runMountPath: runMount,
        keysMountPath: join(scratch, "keys"),
        kvm: { mode: "none" },
        stopGraceSec: 20,
      },
    });
    controller = new EmulatorController(cluster.withToken(token), options, {
      log: (level, msg, fields) =>
        appendFileSync(join(scratch, "controller.jsonl"), `${JSON.stringify({ level, msg, ...fields })}\n`),
    });
    await controller.start();
    kubelet = new FakeKubelet(cluster.admin(), NS, localProcess(scratch), scratch);
    kubelet.start();
  }, 180_000);

  afterAll(async () => {
    await controller?.stop();
    await kubelet?.stop();
    await view?.stop();
    await stopVm(runPaths(join(runMount, "run")), 5).catch(() => undefined);
    await cluster?.stop();
    if (!process.env.HEXCLAVE_KEEP_K8S_DIR) rmSync(scratch, { recursive: true, force: true });
  });

  const agentLogs = () =>
    readdirSync(scratch)
      .filter((f) => f.endsWith(".log"))
      .map((f) => f)
      .join(", ");

  const phasesOf = (e: Emulator) => Object.keys(e.status?.timings ?? {});
  it("comes up Ready: captured, resumed, rotated to the Secret's keys, its endpoints answering", async () => {
    cluster.kubectl(["apply", "-f", manifest("first")]);
    const first = await view.until("first Ready", ready("first"), 240_000, kubeletLog);
    expect(first.status).toMatchObject({
      phase: "Ready",
      bootMode: "resume",
      node: "local-node",
      secretName: "first-emulator-keys",
    });
    expect(condition(first, "SnapshotResumed")).toMatchObject({ status: "True", reason: "Resumed" });
    expect(condition(first, "SecretsRotated")).toMatchObject({ status: "True", reason: "Rotated" });
    expect(first.status?.snapshotKey).toMatch(/\S/);
    expect(first.status!.startupSeconds!).toBeGreaterThan(0);
    // The node's store was empty: the agent captured first, then resumed.
    expect(phasesOf(first)).toEqual(expect.arrayContaining(["capture-boot", "resume-migrate"]));
    // The agent ran with what the controller put in the Pod: its env, the Secret as files.
    const env = kubelet.envs.get("first-emulator")!;
    expect(env).toMatchObject({
      EMULATOR_RAM: "512",
      EMULATOR_BACKEND_PORT: String(PORT + 1),
      HEXCLAVE_EMULATOR_BIND_ADDRESS: "0.0.0.0",
    });
    // Rotated: the guest's live key is the Secret's.
    expect(await fingerprint()).toBe(sha256(secretKey("first")));
    for (const p of [PORT, PORT + 1, PORT + 2, PORT + 3])
      expect((await fetch(`http://127.0.0.1:${p}/`)).status).toBeLessThan(500);
    const printed = cluster.kubectl(["get", "emu", "first", "-n", NS, "--no-headers"]).split(/\s+/);
    expect(printed.slice(1, 3)).toEqual(["True", "resume"]);
  });

  it("stops the VM and removes the Pod, Service and Secret when the Emulator is deleted", async () => {
    const pid = readPidFile(runPaths(join(runMount, "run")).pidFile)!;
    expect(isAlive(pid)).toBe(true);
    // --wait=false: kubectl runs synchronously here, and the controller and kubelet share this process.
    cluster.kubectl(["delete", "-f", manifest("first"), "--wait=false"]);
    await gone("first", 120_000);
    expect(emu("first")).toBeUndefined();
    expect(isAlive(pid)).toBe(false);
    expect(kubelet.log).toEqual(
      expect.arrayContaining(["SIGTERM first-emulator", "first-emulator exited 0"]),
    );
    for (const [kind, name] of [
      ["pod", "first-emulator"],
      ["service", "first"],
      ["secret", "first-emulator-keys"],
    ]) {
      expect(getJson(cluster, [kind!, name!, "-n", NS]), `${kind} ${name}`).toBeUndefined();
    }
  });

  it("resumes the next Emulator on this node from the store, with its own keys", async () => {
    cluster.kubectl(["apply", "-f", manifest("second")]);
    const second = await view.until("second Ready", ready("second"), 180_000, kubeletLog);
    expect(second.status?.bootMode).toBe("resume");
    // From the store: no capture this time.
    expect(phasesOf(second)).toContain("resume-migrate");
    expect(phasesOf(second).filter((p) => p.startsWith("capture"))).toEqual([]);
    expect(await fingerprint()).toBe(sha256(secretKey("second")));
    cluster.kubectl(["delete", "emu", "second", "-n", NS, "--wait=false"]);
    await gone("second", 120_000);
  });
});
