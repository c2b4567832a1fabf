/**
 * A real Kubernetes control plane for the controller's tests: etcd and
 * kube-apiserver (built from their Go modules by scripts/k8s/install-apiserver.sh)
 * on loopback, with certificates from openssl, an admin token
 * (system:masters), RBAC, service-account token signing, no watch cache (so
 * a watch from a compacted resourceVersion gets 410 Gone, as it would from
 * etcd) and short watch timeouts (so informers re-watch often).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { REPO_ROOT } from "./tools.js";

export interface K8sTools {
  kubeApiserver: string;
  kubectl: string;
  etcd: string;
  helm: string;
}

/** The cached binaries; fails with the command to run when they are not built yet. */
export function k8sTools(wanted: ("kubernetes" | "etcd" | "helm")[] = ["kubernetes", "etcd"]): K8sTools {
  let out: string;
  try {
    out = execFileSync(
      "bash",
      [join(REPO_ROOT, "scripts/k8s/install-apiserver.sh"), "--env", "--cached-only", ...wanted],
      {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
  } catch (err) {
    throw new Error(
      `the Kubernetes test binaries are not built: run bash scripts/k8s/install-apiserver.sh (≈20 min on 2 cores, cached after)\n${(err as { stderr?: string }).stderr ?? ""}`,
    );
  }
  const env = Object.fromEntries(
    out
      .trim()
      .split("\n")
      .map((l) => l.split("=", 2) as [string, string]),
  );
  return {
    kubeApiserver: env.KUBE_APISERVER_BIN!,
    kubectl: env.KUBECTL_BIN!,
    etcd: env.ETCD_BIN!,
    helm: env.HELM_BIN!,
  };
}

export interface TestCluster {
  server: string;
  dir: string;
  tools: K8sTools;
  adminToken: string;
  /** A kubeconfig file for kubectl with the admin token. */
  adminKubeconfigPath: string;
  admin(): KubeConfig;
  /** A KubeConfig that authenticates with a bearer token (e.g. a ServiceAccount's). */
  withToken(token: string): KubeConfig;
  kubectl(args: string[], input?: string): string;
  /** Compacts etcd up to its current revision: older resourceVersions are gone (410). */
  compact(): Promise<number>;
  /** A second API server over the same etcd (as in an HA control plane), stopped with the cluster. */
  addApiserver(port: number): Promise<ExtraApiserver>;
  stop(): Promise<void>;
}

export interface ExtraApiserver {
  server: string;
  withToken(token: string): KubeConfig;
  /** SIGSTOP: it stops answering but keeps its connections open, as a hung server does. */
  freeze(): void;
  /** SIGCONT. */
  thaw(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

function makeCerts(dir: string): void {
  openssl(
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-subj",
      "/CN=hexclave-test-ca",
      "-days",
      "2",
    ],
    dir,
  );
  openssl(
    [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=kube-apiserver",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc",
    ],
    dir,
  );
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.crt",
      "-days",
      "2",
      "-copy_extensions",
      "copyall",
    ],
    dir,
  );
  openssl(["genrsa", "-out", "sa.key", "2048"], dir);
  openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  proc?: ChildProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc && proc.exitCode !== null) throw new Error(`${what}: the process exited with ${proc.exitCode}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One kube-apiserver on `port` over the etcd at `etcdUrl`, with the certificates and tokens in `dir`. */
function spawnApiserver(
  tools: K8sTools,
  dir: string,
  etcdUrl: string,
  port: number,
  log: number,
): ChildProcess {
  return spawn(
    tools.kubeApiserver,
    [
      `--etcd-servers=${etcdUrl}`,
      `--secure-port=${port}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--cert-dir=${join(dir, "certs")}`,
      `--tls-cert-file=${join(dir, "server.crt")}`,
      `--tls-private-key-file=${join(dir, "server.key")}`,
      `--client-ca-file=${join(dir, "ca.crt")}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--authorization-mode=RBAC",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${join(dir, "sa.pub")}`,
      `--service-account-signing-key-file=${join(dir, "sa.key")}`,
      "--api-audiences=https://kubernetes.default.svc.cluster.local",
      "--service-cluster-ip-range=10.96.0.0/16",
      "--allow-privileged=true",
      "--watch-cache=false",
      "--min-request-timeout=5",
      "--etcd-compaction-interval=0",
      "--enable-priority-and-fairness=false",
      "--profiling=false",
      "--v=1",
    ],
    { stdio: ["ignore", log, log] },
  );
}

/** Ports: etcd client base, etcd peer base+1, apiserver base+2. */
export async function startTestCluster(portBase: number): Promise<TestCluster> {
  const tools = k8sTools();
  const dir = mkdtempSync(join(tmpdir(), "hxe-k8s-"));
  makeCerts(dir);
  const adminToken = `admin-${Math.random().toString(36).slice(2)}`;
  writeFileSync(join(dir, "tokens.csv"), `${adminToken},admin,admin-uid,"system:masters"\n`);
  const etcdUrl = `http://127.0.0.1:${portBase}`;
  const peer = `http://127.0.0.1:${portBase + 1}`;
  const procs: ChildProcess[] = [];
  const logFd = (name: string) => openSync(join(dir, `${name}.log`), "a");
  mkdirSync(join(dir, "etcd"));
  const etcd = spawn(
    tools.etcd,
    [
      "--name=test",
      `--data-dir=${join(dir, "etcd")}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=test=${peer}`,
      "--unsafe-no-fsync",
      "--log-level=warn",
      "--listen-metrics-urls=",
    ],
    { stdio: ["ignore", logFd("etcd"), logFd("etcd")] },
  );
  procs.push(etcd);
  await waitFor("etcd", async () => (await fetch(`${etcdUrl}/health`)).ok, 30_000, etcd);

  const port = portBase + 2;
  const server = `https://127.0.0.1:${port}`;
  const apiserver = spawnApiserver(tools, dir, etcdUrl, port, logFd("kube-apiserver"));
  procs.push(apiserver);

  const kubeconfigFor = (token: string, at = server): KubeConfig => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "test", server: at, caFile: join(dir, "ca.crt"), skipTLSVerify: false }],
      users: [{ name: "user", token }],
      contexts: [{ name: "test", cluster: "test", user: "user" }],
      currentContext: "test",
    });
    return kc;
  };
  const adminKubeconfigPath = join(dir, "admin.kubeconfig");
  writeFileSync(adminKubeconfigPath, kubeconfigFor(adminToken).exportConfig());
  const kubectl = (args: string[], input?: string): string =>
    execFileSync(tools.kubectl, [`--kubeconfig=${adminKubeconfigPath}`, ...args], {
      encoding: "utf8",
      input,
      stdio: ["pipe", "pipe", "pipe"],
    });
  await waitFor(
    "kube-apiserver",
    async () => {
      try {
        return kubectl(["get", "--raw", "/readyz"]).trim() === "ok";
      } catch {
        return false;
      }
    },
    120_000,
    apiserver,
  );

  return {
    server,
    dir,
    tools,
    adminToken,
    adminKubeconfigPath,
    admin: () => kubeconfigFor(adminToken),
    withToken: (token) => kubeconfigFor(token),
    kubectl,
    addApiserver: async (extraPort) => {
      const proc = spawnApiserver(tools, dir, etcdUrl, extraPort, logFd(`kube-apiserver-${extraPort}`));
      procs.push(proc);
      const at = `https://127.0.0.1:${extraPort}`;
      await waitFor(
        `kube-apiserver on ${extraPort}`,
        async () => {
          try {
            return (
              execFileSync(
                tools.kubectl,
                [`--kubeconfig=${adminKubeconfigPath}`, `--server=${at}`, "get", "--raw", "/readyz"],
                { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
              ).trim() === "ok"
            );
          } catch {
            return false;
          }
        },
        120_000,
        proc,
      );
      return {
        server: at,
        withToken: (token) => kubeconfigFor(token, at),
        freeze: () => proc.kill("SIGSTOP"),
        thaw: () => proc.kill("SIGCONT"),
      };
    },
    compact: async () => {
      const b64 = (s: string) => Buffer.from(s).toString("base64");
      const range = await fetch(`${etcdUrl}/v3/kv/range`, {
        method: "POST",
        body: JSON.stringify({ key: b64("/"), limit: 1 }),
      });
      const revision = Number(((await range.json()) as { header: { revision: string } }).header.revision);
      const res = await fetch(`${etcdUrl}/v3/kv/compaction`, {
        method: "POST",
        body: JSON.stringify({ revision, physical: true }),
      });
      if (!res.ok) throw new Error(`etcd compaction failed: ${res.status} ${await res.text()}`);
      return revision;
    },
    stop: async () => {
      for (const p of procs.reverse()) {
        if (p.exitCode !== null) continue;
        const exited = new Promise((r) => p.once("exit", r));
        p.kill("SIGCONT");
        p.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (p.exitCode === null) p.kill("SIGKILL");
      }
      if (!process.env.HEXCLAVE_KEEP_K8S_DIR) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What kube-controller-manager would do for a namespace: create it with its default ServiceAccount. */
export function createNamespace(cluster: TestCluster, name: string): void {
  cluster.kubectl(["create", "namespace", name]);
  cluster.kubectl(["create", "serviceaccount", "default", "-n", name]);
}

/** A token for a ServiceAccount through the TokenRequest API (what the kubelet mounts into Pods). */
export function serviceAccountToken(cluster: TestCluster, namespace: string, name: string): string {
  return cluster.kubectl(["create", "token", name, "-n", namespace, "--duration=2h"]).trim();
}
