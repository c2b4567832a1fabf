/**
 * Which QEMU runs the emulator: the `qemu` input's path, else the runner's
 * (on PATH), else one installed with apt on Ubuntu/Debian runners. Anything
 * else is refused with what to do. Whether that QEMU can do what was asked
 * (its version, strategies, KVM) is the engine's probe's call.
 */
import { existsSync, readFileSync } from "node:fs";
import { EngineError, findQemu, run, type Arch } from "../engine/index.js";
import { canBeRoot, isRoot } from "./root.js";

export interface QemuChoice {
  binary: string;
  source: "input" | "path" | "installed";
  message: string;
}

export interface QemuDeps {
  platform: NodeJS.Platform;
  env: NodeJS.ProcessEnv;
  osRelease(): string;
  exists(path: string): boolean;
  isRoot: boolean;
  /** Runs a command as root (directly, or with sudo -n); rejects with its stderr. */
  asRoot(argv: string[], timeoutMs: number): Promise<void>;
  canBeRoot(): Promise<boolean>;
  log(message: string): void;
}

export function hostQemuDeps(log: (m: string) => void): QemuDeps {
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
      const [file, ...args] = isRoot ? argv : ["sudo", "-n", ...argv];
      await run(file!, args, { timeoutMs, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    },
    canBeRoot,
    log,
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
  deps.log(`no QEMU on PATH: installing ${packages.join(" ")} with apt-get`);
  try {
    await deps.asRoot(["apt-get", "update", "-q"], 300_000);
    await deps.asRoot(["apt-get", "install", "-y", "-q", "--no-install-recommends", ...packages], 600_000);
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
    message: `installed ${packages.join(" ")} with apt-get: ${installed}`,
  };
}

function tryFind(arch: Arch, env: NodeJS.ProcessEnv): string | undefined {
  try {
    return findQemu(arch, undefined, { ...env, QEMU_BINARY: "" });
  } catch {
    return undefined;
  }
}
