/**
 * A stand-in for the scheduler and the kubelet on this machine, where there
 * is neither: it binds the controller's Pods to a node, materialises their
 * volumes (Secret volumes as files, hostPath and emptyDir as directories —
 * the test sets mount paths to local directories), starts the container (an
 * in-process fake agent), runs the readiness probe, writes the
 * Pod's status, and on deletion sends SIGTERM, waits, and confirms the
 * deletion with grace 0 as the kubelet does. Everything it does goes through
 * the real API server. Each Pod gets its own IP, a loopback address
 * (127.0.1.x: all of 127/8 is loopback on Linux), so two Pods can listen on
 * the same port as they would in a cluster.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createServer } from "node:http";
import { CoreV1Api, type KubeConfig, type V1Pod, type V1PodStatus } from "@kubernetes/client-node";
import type { AgentReport } from "../../src/controller/agent/contract.js";
import { OWNED_SELECTOR } from "../../src/controller/objects/names.js";

export const NODE = "local-node";

export interface Container {
  /** Resolves with the exit code. */
  exited: Promise<number>;
  terminate(): void;
}

export type RunContainer = (
  pod: V1Pod,
  env: Record<string, string>,
  termLog: string,
  podIP: string,
) => Container;

/**
 * A container that answers like a ready agent (a resumed, rotated boot report on /status) on its
 * Pod's IP and `port`, and exits on SIGTERM, noting the Pod's name in `stops`.
 */
export const fakeAgent =
  (port: number, stops: string[], stopped: () => void = () => undefined): RunContainer =>
  (pod, _env, _termLog, podIP) => {
    const report: AgentReport = {
      state: "ready",
      startedAt: new Date().toISOString(),
      startupSeconds: 0.42,
      bootMode: "resume",
      strategy: "template",
      snapshotKey: "test-key",
      qemuVersion: "10.0.2",
      accelerator: "tcg",
      rotatedToSecret: true,
      timings: { resume: 300, rotation: 100 },
    };
    const server = createServer((req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(req.url === "/status" ? JSON.stringify(report) : "ok");
    });
    let exit!: (code: number) => void;
    const exited = new Promise<number>((r) => (exit = r));
    server.once("error", () => exit(1));
    server.listen(port, podIP);
    return {
      exited,
      terminate: () => {
        stops.push(pod.metadata!.name!);
        stopped();
        server.close(() => exit(0));
        server.closeAllConnections();
      },
    };
  };

interface Running {
  uid: string;
  ip: string;
  container: Container;
  exitCode?: number;
  ready: boolean;
  terminating: boolean;
}

export class FakeKubelet {
  private readonly core: CoreV1Api;
  private readonly running = new Map<string, Running>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private busy = false;
  private pods = 0;
  readonly log: string[] = [];
  /** What the containers were started with, by Pod name. */
  readonly envs = new Map<string, Record<string, string>>();

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly run: RunContainer,
    private readonly scratch: string,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), 200);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const r of this.running.values()) {
      r.container.terminate();
      await Promise.race([r.container.exited, new Promise((res) => setTimeout(res, 30_000))]);
    }
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const pods = await this.core.listNamespacedPod({
        namespace: this.namespace,
        labelSelector: OWNED_SELECTOR,
      });
      for (const pod of pods.items) await this.sync(pod);
    } catch (err) {
      this.log.push(`tick: ${(err as Error).message.slice(0, 300)}`);
    } finally {
      this.busy = false;
    }
  }

  private async sync(pod: V1Pod): Promise<void> {
    const name = pod.metadata!.name!;
    const uid = pod.metadata!.uid!;
    let r = this.running.get(uid);
    if (pod.metadata?.deletionTimestamp) {
      if (!r) return this.confirmDelete(pod);
      if (!r.terminating) {
        r.terminating = true;
        this.log.push(`SIGTERM ${name}`);
        r.container.terminate();
        const grace = (pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000;
        const code = await Promise.race([
          r.container.exited,
          new Promise<number>((res) => setTimeout(() => res(-1), grace)),
        ]);
        this.log.push(`${name} exited ${code}`);
        this.running.delete(uid);
        await this.confirmDelete(pod);
      }
      return;
    }
    if (!pod.spec?.nodeName) {
      await this.core.createNamespacedPodBinding({
        namespace: this.namespace,
        name,
        body: {
          apiVersion: "v1",
          kind: "Binding",
          metadata: { name },
          target: { apiVersion: "v1", kind: "Node", name: NODE },
        },
      });
      this.log.push(`bound ${name}`);
      return;
    }
    if (!r) {
      const secrets = await this.fetchSecrets(pod);
      // Like the kubelet: the container waits (ContainerCreating) until its Secret exists.
      if (!secrets) return;
      const env = this.materialise(pod, secrets);
      this.envs.set(name, env);
      const termLog = join(this.scratch, `${uid}.termination-log`);
      const n = this.pods++;
      const ip = `127.0.${1 + Math.floor(n / 250)}.${2 + (n % 250)}`;
      r = { uid, ip, container: this.run(pod, env, termLog, ip), ready: false, terminating: false };
      this.running.set(uid, r);
      const started = r;
      void started.container.exited.then((code) => {
        started.exitCode = code;
      });
      this.log.push(`started ${name}`);
      await this.writeStatus(pod, r, termLog);
      return;
    }
    const ready = r.exitCode === undefined && (await this.probe(pod, r.ip));
    if (ready !== r.ready || (r.exitCode !== undefined && pod.status?.phase === "Running")) {
      r.ready = ready;
      await this.writeStatus(pod, r, join(this.scratch, `${uid}.termination-log`));
    }
  }

  /** Volumes the way the kubelet would mount them, at their mount paths on this machine. */
  private materialise(pod: V1Pod, secrets: Map<string, Record<string, string>>): Record<string, string> {
    const c = pod.spec!.containers[0]!;
    for (const m of c.volumeMounts ?? []) {
      const v = pod.spec?.volumes?.find((x) => x.name === m.name);
      if (!v) throw new Error(`no volume ${m.name}`);
      if (v.secret) {
        const s = secrets.get(v.secret.secretName!);
        if (!s) throw new Error(`Secret ${v.secret.secretName} was not fetched`);
        mkdirSync(m.mountPath, { recursive: true });
        for (const [k, b64] of Object.entries(s))
          writeFileSync(join(m.mountPath, k), Buffer.from(b64, "base64"), { mode: 0o400 });
      } else if (v.hostPath) {
        if (v.hostPath.path !== m.mountPath)
          throw new Error(`hostPath ${v.hostPath.path} must be mounted at the same path here`);
        mkdirSync(m.mountPath, { recursive: true });
      } else if (v.emptyDir) {
        if (m.mountPath !== "/tmp") mkdirSync(m.mountPath, { recursive: true });
      } else {
        throw new Error(`the fake kubelet cannot mount volume ${m.name}`);
      }
    }
    const env: Record<string, string> = {};
    for (const e of c.env ?? []) {
      if (e.valueFrom) throw new Error(`env ${e.name}: valueFrom is not supported here`);
      env[e.name] = e.value ?? "";
    }
    return env;
  }

  /** The Secrets a Pod mounts (the kubelet reads them with its node credentials); undefined while one is missing. */
  private async fetchSecrets(pod: V1Pod): Promise<Map<string, Record<string, string>> | undefined> {
    const out = new Map<string, Record<string, string>>();
    for (const v of pod.spec?.volumes ?? []) {
      if (!v.secret?.secretName) continue;
      try {
        const s = await this.core.readNamespacedSecret({
          namespace: this.namespace,
          name: v.secret.secretName,
        });
        out.set(v.secret.secretName, s.data ?? {});
      } catch {
        return undefined;
      }
    }
    return out;
  }

  private async probe(pod: V1Pod, ip: string): Promise<boolean> {
    const c = pod.spec!.containers[0]!;
    const get = c.readinessProbe?.httpGet;
    if (!get) return true;
    const port =
      typeof get.port === "number" ? get.port : c.ports?.find((p) => p.name === get.port)?.containerPort;
    try {
      const res = await fetch(`http://${ip}:${port}${get.path ?? "/"}`, {
        signal: AbortSignal.timeout(2000),
      });
      return res.status >= 200 && res.status < 400;
    } catch {
      return false;
    }
  }

  private async writeStatus(pod: V1Pod, r: Running, termLog: string): Promise<void> {
    const now = new Date();
    const exited = r.exitCode !== undefined;
    const message = exited && existsSync(termLog) ? readFileSync(termLog, "utf8") : undefined;
    const cond = (type: string, status: boolean) => ({
      type,
      status: status ? "True" : "False",
      lastTransitionTime: now,
    });
    const status: V1PodStatus = {
      phase: exited ? (r.exitCode === 0 ? "Succeeded" : "Failed") : "Running",
      hostIP: "127.0.0.1",
      podIP: r.ip,
      podIPs: [{ ip: r.ip }],
      startTime: pod.status?.startTime ?? now,
      conditions: [
        cond("PodScheduled", true),
        cond("Initialized", true),
        cond("ContainersReady", r.ready),
        cond("Ready", r.ready),
      ],
      containerStatuses: [
        {
          name: pod.spec!.containers[0]!.name,
          image: pod.spec!.containers[0]!.image ?? "",
          imageID: "",
          ready: r.ready,
          restartCount: 0,
          started: !exited,
          state: exited
            ? {
                terminated: {
                  exitCode: r.exitCode!,
                  reason: r.exitCode === 0 ? "Completed" : "Error",
                  message,
                  finishedAt: now,
                },
              }
            : { running: { startedAt: now } },
        },
      ],
    };
    await this.core.replaceNamespacedPodStatus({
      namespace: this.namespace,
      name: pod.metadata!.name!,
      body: { ...pod, status },
    });
  }

  private async confirmDelete(pod: V1Pod): Promise<void> {
    await this.core
      .deleteNamespacedPod({
        namespace: this.namespace,
        name: pod.metadata!.name!,
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata!.uid } },
      })
      .catch(() => undefined);
    this.log.push(`deleted ${pod.metadata!.name}`);
  }
}
