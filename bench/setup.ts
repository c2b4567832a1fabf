/**
 * The bench's emulators: a scratch home per QEMU, the project's test guest,
 * host ports from the bench's own range in blocks of ten, every VM started
 * recorded so that it is killed at the end whatever happens.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  clearRuntimeFiles,
  killVm,
  loadConfig,
  readPidFile,
  runPaths,
  type ConfigOverrides,
  type EmulatorConfig,
  type PidRecord,
} from "../src/engine/index.js";
import type { QemuTarget } from "../test/support/tools.js";

/** Blocks of ten ports: block 0 is the main guest, 1.. the sharing section's extra guests. */
export const PORT_BLOCKS = 10;

export interface BenchEnv {
  target: QemuTarget;
  image: string;
  home: string;
  share: string;
  /** A config around the test guest; `block` picks its ports, `name` its run dir. */
  config(overrides?: ConfigOverrides, block?: number, name?: string): EmulatorConfig;
  /** Remembers a VM so cleanup() kills it. */
  track(pid: PidRecord): void;
  /** Kills the VM of a config's run dir (the bench never needs a graceful stop). */
  kill(config: EmulatorConfig): Promise<void>;
  /** Kills every VM this env started. */
  cleanup(): Promise<void>;
}

export function benchEnv(target: QemuTarget, image: string, root: string, portBase: number): BenchEnv {
  const home = join(root, target.label);
  const share = join(home, "share");
  mkdirSync(share, { recursive: true });
  writeFileSync(join(share, "hello.txt"), "from the bench\n");
  const runDirs = new Set<string>();
  const pids: PidRecord[] = [];
  const config = (overrides: ConfigOverrides = {}, block = 0, name = "run"): EmulatorConfig => {
    if (block < 0 || block >= PORT_BLOCKS) throw new Error(`port block ${block} is out of range`);
    const base = portBase + block * 10;
    const c = loadConfig({
      env: {},
      cwd: share,
      homeDir: home,
      hostArch: process.arch,
      overrides: {
        home: join(home, "emulator"),
        runDir: join(home, name),
        image,
        qemuBinary: target.binary,
        ramMiB: 1024,
        cpus: 1,
        snapshotRamMiB: 1024,
        snapshotCpus: 1,
        readyTimeoutSec: 240,
        snapshotReadyTimeoutSec: 90,
        stopGraceSec: 10,
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
    runDirs.add(c.runDir);
    return c;
  };
  const kill = async (c: EmulatorConfig): Promise<void> => {
    const paths = runPaths(c.runDir);
    const pid = readPidFile(paths.pidFile);
    if (pid) await killVm(pid);
    clearRuntimeFiles(paths);
  };
  return {
    target,
    image,
    home,
    share,
    config,
    track: (pid) => void pids.push(pid),
    kill,
    cleanup: async () => {
      for (const pid of pids) await killVm(pid).catch(() => undefined);
      for (const dir of runDirs) {
        const pid = readPidFile(runPaths(dir).pidFile);
        if (pid) await killVm(pid).catch(() => undefined);
      }
    },
  };
}
