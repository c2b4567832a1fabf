import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, type ServiceName } from "../../src/engine/config/index.js";
import { MOUNT_HOST_FS } from "../../src/engine/guest/host-share.js";
import { ROTATE_COMMAND } from "../../src/engine/guest/rotation.js";
import type { EngineContext } from "../../src/engine/lifecycle/context.js";
import { withDeps } from "../../src/engine/lifecycle/deps.js";
import { Phases, silent } from "../../src/engine/lifecycle/events.js";
import { settleResumedGuest } from "../../src/engine/lifecycle/post-resume.js";
import type { ResumedVm } from "../../src/engine/lifecycle/resume.js";
import type { ExecResult } from "../../src/engine/qemu/qga-types.js";

const ok: ExecResult = { exitCode: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), truncated: false };
const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

/** An agent whose guest-execs the test answers; close() rejects what is pending, as the real one does. */
function fakeAgent(exec: (path: string) => Promise<ExecResult>) {
  const log: string[] = [];
  const pending = new Set<(err: Error) => void>();
  let closed = false;
  const agent = {
    log,
    get closed() {
      return closed;
    },
    waitUntilReady: async () => undefined,
    setTime: async () => void log.push("clock"),
    exec: (path: string) => {
      log.push(`start ${path}`);
      return new Promise<ExecResult>((resolve, reject) => {
        pending.add(reject);
        exec(path).then(
          (r) => (log.push(`end ${path}`), resolve(r)),
          (e: unknown) => reject(e as Error),
        );
      });
    },
    close: () => {
      closed = true;
      for (const reject of pending) reject(new Error("agent closed"));
    },
  };
  return agent;
}

describe("the guest steps after a resume", () => {
  const dir = mkdtempSync(join(tmpdir(), "hxe-post-resume-"));
  const servers: Server[] = [];
  const ports: Partial<Record<ServiceName, number>> = {};

  beforeAll(async () => {
    // Every service healthy: 200 to any GET, and a connection that stays open (mock OAuth's check).
    for (const name of ["dashboard", "backend", "minio", "inbucket", "mockOauth"] as const) {
      const s = createServer((_req, res) => res.end("ok"));
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      servers.push(s);
      ports[name] = (s.address() as AddressInfo).port;
    }
  });
  afterAll(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const contextFor = (): EngineContext => {
    const config = loadConfig({
      env: {},
      cwd: dir,
      homeDir: dir,
      hostArch: "x64",
      overrides: {
        image: join(dir, "image.qcow2"),
        runDir: join(dir, "run"),
        ports: ports as Record<ServiceName, number>,
        hostShare: { mode: "path", path: dir },
      },
    });
    return {
      config,
      paths: { internalPck: join(dir, "internal-pck"), qgaSocket: join(dir, "qga.sock") },
      deps: withDeps(),
    } as unknown as EngineContext;
  };
  const vmWith = (agent: ReturnType<typeof fakeAgent>): ResumedVm =>
    ({
      earlyAgent: Promise.resolve(agent),
      sharePlugged: true,
      qmp: { execute: async () => ({ status: { statuses: ["DRIVER_OK"] } }) },
    }) as unknown as ResumedVm;

  it("mounts the host share while the rotation runs, sets the clock after the mount, then is healthy", async () => {
    const rotating = deferred();
    const mounting = deferred();
    // Each exec ends only once the other has started: run one after the other, they never would.
    const agent = fakeAgent(async (path) => {
      if (path === ROTATE_COMMAND) {
        rotating.resolve();
        await mounting.promise;
      } else if (path === MOUNT_HOST_FS) {
        mounting.resolve();
        await rotating.promise;
      }
      return ok;
    });
    const phases = new Phases(silent);
    const ready = await settleResumedGuest(contextFor(), vmWith(agent), phases, 10);

    expect(ready.placeholderSecrets).toBe(false);
    expect(agent.log.indexOf(`start ${MOUNT_HOST_FS}`)).toBeLessThan(
      agent.log.indexOf(`end ${ROTATE_COMMAND}`),
    );
    expect(agent.log.indexOf("clock")).toBeGreaterThan(agent.log.indexOf(`end ${MOUNT_HOST_FS}`));
    expect(Object.keys(phases.timings)).toEqual(
      expect.arrayContaining(["agent", "rotation", "host-share", "clock", "health"]),
    );
    expect(readFileSync(join(dir, "internal-pck"), "utf8")).toMatch(/^[0-9a-f]{64}$/);
    expect(agent.closed).toBe(true);
  });

  it("ends every other step when one fails: the rotation's wait is dropped and the error is the mount's", async () => {
    const agent = fakeAgent(async (path) => {
      if (path === MOUNT_HOST_FS) throw new Error("mount-host-fs: the guest went away");
      return new Promise<ExecResult>(() => undefined); // a rotation that never exits
    });
    await expect(settleResumedGuest(contextFor(), vmWith(agent), new Phases(silent), 10)).rejects.toThrow(
      "mount-host-fs: the guest went away",
    );
    expect(agent.closed).toBe(true);
  });
});
