/**
 * Which QEMU runs the emulator: the `qemu` input's path, else the runner's
 * (on PATH), else one installed with apt on Ubuntu/Debian runners, its .debs
 * kept in the Actions cache when one is given (apt-cache.ts). Anything else
 * is refused with what to do. Whether that QEMU can do what was asked (its
 * version, strategies, KVM) is the engine's probe's call.
 */
import { existsSync, readFileSync } from "node:fs";
import { EngineError, findQemu, run, type Arch } from "../engine/index.js";
import { installPackages, type AptReport, type AptSave } from "./apt-cache.js";
import type { CacheClient } from "./cache-client.js";
import { canBeRoot, isRoot } from "./root.js";

export interface QemuChoice {
  binary: string;
  source: "input" | "path" | "installed";
  message: string;
  /** Installed: how (cache hit, miss, …) with the time split. */
  apt?: AptReport | undefined;
  /** Installed from a download the post step should save: goes to the state as aptSave. */
  aptSave?: AptSave | undefined;
}

export interface QemuDeps {
  platform: NodeJS.Platform;
  env: NodeJS.ProcessEnv;
  osRelease(): string;
  exists(path: string): boolean;
  isRoot: boolean;
  /** Runs a command as root (directly, or with sudo -n), DEBIAN_FRONTEND=noninteractive; rejects with its stderr. */
  asRoot(argv: string[], timeoutMs: number): Promise<void>;
  /** Runs a command as this user (apt-cache policy, dpkg --print-architecture); answers its stdout. */
  run(argv: string[], timeoutMs: number): Promise<string>;
  canBeRoot(): Promise<boolean>;
  log(message: string): void;
  /** A warning (an annotation); default: log. */
  warn?(message: string): void;
  /** The Actions cache for the .debs; without it (or cacheDir), apt-get every time. */
  cache?: CacheClient | undefined;
  /** The Action's cache directory (runner.ts cacheDirOf): the .debs go to <cacheDir>/apt. */
  cacheDir?: string | undefined;
}

export interface HostQemuOptions {
  warn?: (m: string) => void;
  cache?: CacheClient | undefined;
  cacheDir?: string | undefined;
}

export function hostQemuDeps(log: (m: string) => void, opts: HostQemuOptions = {}): QemuDeps {
  return {
    platform: process.platform,
    env: process.env,
    osRelease: () => {
      try {
        return readFileSync("/etc/os-release", "utf8");
      } catch {
        return "";
      }
    },
    exists: existsSync,
    isRoot,
    asRoot: async (argv, timeoutMs) => {
      // sudo resets the environment (env_reset): the variable goes on the command line.
      const [file, ...args] = isRoot
        ? argv
        : ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive", ...argv];
      await run(file!, args, { timeoutMs, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    },
    run: async (argv, timeoutMs) => {
      const [file, ...args] = argv;
      // LC_ALL=C: apt-cache policy's "Candidate:" is translated otherwise.
      return (await run(file!, args, { timeoutMs, env: { ...process.env, LC_ALL: "C" } })).stdout;
    },
    canBeRoot,
    log,
    warn: opts.warn ?? log,
    cache: opts.cache,
    cacheDir: opts.cacheDir,
  };
}

/** The apt packages that provide qemu-system for a guest architecture. */
export function aptPackages(arch: Arch): string[] {
  return arch === "arm64"
    ? ["qemu-system-arm", "qemu-efi-aarch64", "qemu-utils"]
    : ["qemu-system-x86", "qemu-utils"];
}

function isDebianLike(osRelease: string): boolean {
  const ids = [/^ID=(.*)$/m, /^ID_LIKE=(.*)$/m]
    .map((re) => re.exec(osRelease)?.[1] ?? "")
    .join(" ")
    .replace(/"/g, "");
  return /\b(ubuntu|debian)\b/.test(ids);
}

export async function resolveQemu(input: string, arch: Arch, deps: QemuDeps): Promise<QemuChoice> {
  if (input !== "auto") {
    if (!deps.exists(input)) {
      throw new EngineError("QEMU_NOT_FOUND", `qemu input ${input} does not exist`, {
        hint: "give the path of qemu-system-x86_64 (or qemu-system-aarch64), or qemu: auto",
      });
    }
    return { binary: input, source: "input", message: `QEMU from the qemu input: ${input}` };
  }
  const onPath = tryFind(arch, deps.env);
  if (onPath) return { binary: onPath, source: "path", message: `the runner's QEMU: ${onPath}` };

  const packages = aptPackages(arch);
  const manual = `install QEMU in an earlier step (apt-get install ${packages.join(" ")}; brew install qemu on macOS), or give its path as the qemu input`;
  if (deps.platform !== "linux" || !isDebianLike(deps.osRelease())) {
    throw new EngineError(
      "QEMU_NOT_FOUND",
      `no qemu-system binary on PATH, and this runner is not Ubuntu/Debian, so the Action cannot install one`,
      { hint: manual },
    );
  }
  if (!(await deps.canBeRoot())) {
    throw new EngineError(
      "QEMU_NOT_FOUND",
      "no qemu-system binary on PATH, and installing one needs root (sudo asks for a password here)",
      { hint: manual },
    );
  }
  deps.log(`no QEMU on PATH: installing ${packages.join(" ")}`);
  let apt: AptReport;
  try {
    apt = await installPackages(packages, { ...deps, warn: (m) => (deps.warn ?? deps.log)(m) });
  } catch (err) {
    throw new EngineError("QEMU_INSTALL_FAILED", `apt-get could not install ${packages.join(" ")}`, {
      hint: manual,
      cause: err,
    });
  }
  const installed = tryFind(arch, deps.env);
  if (!installed) {
    throw new EngineError(
      "QEMU_INSTALL_FAILED",
      `apt-get installed ${packages.join(" ")} but no qemu-system binary is on PATH`,
      {
        hint: manual,
      },
    );
  }
  return {
    binary: installed,
    source: "installed",
    message: `installed ${packages.join(" ")} ${apt.note}: ${installed}`,
    apt,
    aptSave: apt.save,
  };
}

function tryFind(arch: Arch, env: NodeJS.ProcessEnv): string | undefined {
  try {
    return findQemu(arch, undefined, { ...env, QEMU_BINARY: "" });
  } catch {
    return undefined;
  }
}
