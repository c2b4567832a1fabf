/**
 * A throwaway emulator home for a QEMU scenario: the test guest as image,
 * small RAM, its own ports per QEMU version (so the two versions' files run
 * in parallel), a temp host share. Everything real: engine, QEMU, guest.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, type ConfigOverrides, type EmulatorConfig } from "../../src/engine/config/index.js";
import { GuestAgent } from "../../src/engine/qemu/qga.js";
import { stopVm } from "../../src/engine/lifecycle/stop.js";
import { runPaths } from "../../src/engine/lifecycle/run-dir.js";
import { testGuestImage, type QemuTarget } from "./tools.js";

/** Each QEMU version gets its own block of host ports. */
const PORT_BASE: Record<string, number> = { "qemu-7.2": 27100, "qemu-10": 27200 };

export interface TestEmulator {
  home: string;
  share: string;
  config(overrides?: ConfigOverrides): EmulatorConfig;
  agentExec(config: EmulatorConfig, path: string, args?: string[], input?: string): Promise<string>;
  fingerprint(config: EmulatorConfig): Promise<string>;
  stop(config: EmulatorConfig): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * `portBase` overrides the per-version block (the reliability suite uses
 * 27500-27599, ten ports per emulator).
 */
export function testEmulator(
  target: QemuTarget,
  name: string,
  portOffset = 0,
  portBase?: number,
): TestEmulator {
  const home = mkdtempSync(join(tmpdir(), `hxe-${name}-`));
  const share = join(home, "share");
  mkdirSync(share);
  writeFileSync(join(share, "hello.txt"), "from the host\n");
  const base = (portBase ?? PORT_BASE[target.label] ?? 27300) + portOffset * 10;
  const made: EmulatorConfig[] = [];
  const config = (overrides: ConfigOverrides = {}): EmulatorConfig => {
    const c = loadConfig({
      env: {},
      cwd: share,
      homeDir: home,
      hostArch: process.arch,
      overrides: {
        home: join(home, "emulator"),
        image: testGuestImage(),
        qemuBinary: target.binary,
        ramMiB: 512,
        cpus: 1,
        snapshotRamMiB: 512,
        snapshotCpus: 1,
        readyTimeoutSec: 120,
        snapshotReadyTimeoutSec: 45,
        stopGraceSec: 20,
        ports: {
          dashboard: base,
          backend: base + 1,
          minio: base + 2,
          inbucket: base + 3,
          mockOauth: base + 4,
        },
        hostShare: { mode: "path", path: share },
        ...overrides,
      },
    });
    made.push(c);
    return c;
  };
  const agentExec = async (c: EmulatorConfig, path: string, args: string[] = [], input?: string) => {
    const agent = await GuestAgent.connect(runPaths(c.runDir).qgaSocket, { timeoutMs: 10_000 });
    try {
      await agent.waitUntilReady({ timeoutMs: 30_000 });
      const r = await agent.exec(path, args, {
        timeoutMs: 30_000,
        ...(input === undefined ? {} : { input }),
      });
      if (r.exitCode !== 0) throw new Error(`${path} exited ${r.exitCode}: ${r.stderr.toString()}`);
      return r.stdout.toString();
    } finally {
      agent.close();
    }
  };
  const fingerprint = async (c: EmulatorConfig) => {
    const res = await fetch(`http://127.0.0.1:${c.ports.backend}/internal/pck-fingerprint`);
    return (await res.text()).trim();
  };
  return {
    home,
    share,
    config,
    agentExec,
    fingerprint,
    stop: async (c) => {
      await stopVm(runPaths(c.runDir), c.stopGraceSec);
    },
    cleanup: async () => {
      for (const c of made) await stopVm(runPaths(c.runDir), 5).catch(() => undefined);
      rmSync(home, { recursive: true, force: true });
    },
  };
}

export const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");
export const readPck = (c: EmulatorConfig): string => readFileSync(runPaths(c.runDir).internalPck, "utf8");
