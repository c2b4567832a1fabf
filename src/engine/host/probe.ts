/**
 * What a QEMU binary can do, learned from the binary itself: its version,
 * versioned machine types, migration capabilities and whether KVM works.
 * QEMU is started with `-machine none` and asked over QMP, while
 * `-accel help` and `-L help` run beside it; the answer is cached per binary
 * (path, size, mtime and its --version line), since a wrapper script's own
 * stat does not change when the QEMU behind it does.
 */
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { EngineError } from "../errors.js";
import { run, spawnDetached } from "../exec.js";
import { QmpClient } from "../qemu/qmp.js";
import { QmpCommandError, QmpTimeoutError } from "../qemu/protocol-errors.js";
import type { Accelerator, Arch } from "../qemu/argv.js";
import { cpuFingerprint } from "./host.js";

export interface QemuProbe {
  binary: string;
  version: { major: number; minor: number; micro: number };
  versionString: string;
  package: string;
  /** Versioned machine types, newest first, e.g. ["pc-q35-10.0", "pc-q35-9.2", …]. */
  machines: string[];
  migrationCapabilities: string[];
  kvmUsable: boolean;
  accelerators: string[];
  /**
   * The binary has the vmgenid device: every qemu-system-x86_64, no
   * qemu-system-aarch64 up to 10.0 at least. Absent means true.
   */
  vmgenid?: boolean;
  /** Where it looks for BIOS and option ROMs (`-L help`), in search order. */
  dataDirs?: string[];
}

const PROBE_FORMAT = 4;

/** `name` in each directory of PATH, in order; the first regular file wins. */
export function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isFile(candidate)) return candidate;
  }
  return undefined;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The explicit path, else QEMU_BINARY, else the arch's binary on PATH. */
export function findQemu(arch: Arch, explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  const name = arch === "arm64" ? "qemu-system-aarch64" : "qemu-system-x86_64";
  const chosen = explicit ?? env.QEMU_BINARY;
  if (chosen) {
    try {
      statSync(chosen);
      return chosen;
    } catch {
      throw new EngineError("QEMU_NOT_FOUND", `QEMU binary ${chosen} does not exist`, {
        hint: "give the path of qemu-system-x86_64 (or a wrapper script), or unset QEMU_BINARY to use PATH",
      });
    }
  }
  const found = onPath(name, env);
  if (found) return found;
  throw new EngineError("QEMU_NOT_FOUND", `${name} was not found on PATH`, {
    hint: "install QEMU (Debian/Ubuntu: apt-get install qemu-system-x86 qemu-utils; macOS: brew install qemu) or set QEMU_BINARY",
  });
}

/**
 * qemu-img for a QEMU binary: the explicit one (QEMU_IMG, --qemu-img) when
 * set, since a choice wins; else beside the binary (private prefixes and
 * wrappers ship one); else on PATH. The error names every place looked.
 */
export function findQemuImg(
  qemuBinary: string,
  explicit?: string,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const looked: string[] = [];
  if (explicit) {
    if (isFile(explicit)) return explicit;
    throw new EngineError("QEMU_IMG_NOT_FOUND", `qemu-img ${explicit} (QEMU_IMG) does not exist`, {
      hint: "point QEMU_IMG at a qemu-img binary, or unset it to look beside the QEMU binary and on PATH",
    });
  }
  if (qemuBinary.includes("/")) {
    const sibling = join(qemuBinary, "..", "qemu-img");
    if (isFile(sibling)) return sibling;
    looked.push(sibling);
  }
  const found = onPath("qemu-img", env);
  if (found) return found;
  looked.push("qemu-img on PATH", "QEMU_IMG (not set)");
  throw new EngineError("QEMU_IMG_NOT_FOUND", `qemu-img was not found (looked at: ${looked.join(", ")})`, {
    hint: "install qemu-img (Debian/Ubuntu: apt-get install qemu-utils; macOS: brew install qemu), or set QEMU_IMG to its path",
  });
}

function cacheFile(cacheDir: string, binary: string, versionLine: string): string {
  const st = statSync(binary);
  const id = createHash("sha256")
    .update(JSON.stringify([PROBE_FORMAT, binary, st.size, st.mtimeMs, versionLine]))
    .digest("hex")
    .slice(0, 24);
  return join(cacheDir, `qemu-probe-${id}.json`);
}

/** The cached answer in `path`, if it holds one. */
function readCached(path: string): { probe: QemuProbe } | undefined {
  try {
    return { probe: JSON.parse(readFileSync(path, "utf8")) as QemuProbe };
  } catch {
    return undefined;
  }
}

/**
 * Whether cacheDir holds an answer for this path, whatever its version and
 * kvm flag (those hide in the name's hash). A guess: a wrong one costs time,
 * never a different answer, as the lookup itself still decides.
 */
function mayBeCached(cacheDir: string, binary: string): boolean {
  let names: string[];
  try {
    names = readdirSync(cacheDir);
  } catch {
    return false;
  }
  return names.some(
    (n) =>
      /^qemu-probe-[0-9a-f]{24}\.json$/.test(n) &&
      (readCached(join(cacheDir, n))?.probe as { binary?: unknown } | null | undefined)?.binary === binary,
  );
}

export async function probeQemu(
  binary: string,
  opts: { cacheDir: string; tryKvm: boolean },
): Promise<QemuProbe> {
  // When the lookup cannot hit, the live probe need not wait for --version;
  // it is cancelled if --version fails or the lookup hits after all.
  const early = mayBeCached(opts.cacheDir, binary) ? undefined : startLive(binary, opts.tryKvm);
  let cached: string;
  try {
    const versionLine = (await run(binary, ["--version"], { timeoutMs: 15_000 })).stdout.split("\n")[0] ?? "";
    cached = cacheFile(opts.cacheDir, binary, `${versionLine}|kvm=${opts.tryKvm}`);
    const hit = readCached(cached);
    if (hit) {
      await early?.cancel();
      return hit.probe;
    }
  } catch (err) {
    await early?.cancel();
    throw err;
  }
  const probe = await (early ?? startLive(binary, opts.tryKvm)).result;
  mkdirSync(opts.cacheDir, { recursive: true });
  writeFileSync(`${cached}.tmp`, JSON.stringify(probe));
  renameSync(`${cached}.tmp`, cached);
  return probe;
}

interface LiveProbe {
  /** Never an unhandled rejection, whether awaited or not. */
  result: Promise<QemuProbe>;
  /** Kills the QEMU if it still runs and waits for the probe to end; never rejects. */
  cancel(): Promise<void>;
}

/** Starts QEMU and the plain runs now; every failure surfaces through `result`. */
function startLive(binary: string, tryKvm: boolean): LiveProbe {
  let running: number | undefined;
  const result = probeLive(binary, tryKvm, (pid) => (running = pid));
  result.catch(() => undefined);
  return {
    result,
    async cancel() {
      if (running !== undefined) kill(running);
      await result.catch(() => undefined);
    },
  };
}

/** SIGKILL to one pid; not to a failed launch's -1, which means every process. */
function kill(pid: number): void {
  if (pid <= 0) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    /* exited */
  }
}

async function probeLive(
  binary: string,
  tryKvm: boolean,
  /** Told QEMU's pid once started, undefined once the probe ends. */
  onPid: (pid: number | undefined) => void,
): Promise<QemuProbe> {
  const dir = mkdtempSync(join(tmpdir(), "hxe-probe-"));
  const sock = join(dir, "qmp.sock");
  const accel = tryKvm ? ["-accel", "kvm", "-accel", "tcg"] : ["-accel", "tcg"];
  const proc = spawnDetached(
    binary,
    [
      "-machine",
      "none",
      ...accel,
      "-display",
      "none",
      "-nodefaults",
      "-qmp",
      `unix:${sock},server=on,wait=off`,
    ],
    join(dir, "qemu.log"),
  );
  onPid(proc.pid);
  // Beside the live QEMU; awaited after the QMP queries, so a QMP failure
  // still wins, and handled now so it leaves no unhandled rejection.
  const acceleratorsRun = run(binary, ["-accel", "help"], { timeoutMs: 15_000 });
  acceleratorsRun.catch(() => undefined);
  const dataDirsRun = qemuDataDirs(binary);
  let exited = false;
  const onExit = () => void (exited = true);
  proc.exited.then(onExit, onExit);
  try {
    // After an exit the connect side never settles; the exit side rejects.
    const qmp = await Promise.race([
      socketCreated(sock, () => exited).then((created) =>
        created ? QmpClient.connect(sock, { timeoutMs: 15_000 }) : new Promise<never>(() => undefined),
      ),
      proc.exited.then(() => {
        throw new EngineError("QEMU_PROBE_FAILED", `${binary} exited while being probed: ${readLog(dir)}`, {
          hint: "run it by hand with -machine none to see why",
        });
      }),
    ]);
    try {
      const version = await qmp.queryVersion();
      const machines = (await qmp.queryMachines())
        .map((m) => m.name)
        .filter((n) => /^(pc-q35|virt)-\d+\.\d+$/.test(n))
        .sort((a, b) => compareVersions(machineVersion(b), machineVersion(a)));
      const caps = (await qmp.queryMigrateCapabilities()).map((c) => c.capability);
      const kvm = await qmp.queryKvm();
      const vmgenid = await hasDevice(qmp, "vmgenid");
      const accelerators = (await acceleratorsRun).stdout
        .split("\n")
        .slice(1)
        .map((l) => l.trim())
        .filter(Boolean);
      const { major, minor, micro } = version.qemu;
      const dataDirs = await dataDirsRun;
      return {
        binary,
        version: { major, minor, micro },
        versionString: `${major}.${minor}.${micro}`,
        package: version.package.trim(),
        machines,
        migrationCapabilities: caps,
        kvmUsable: kvm.enabled,
        accelerators,
        vmgenid,
        dataDirs,
      };
    } finally {
      await qmp.execute("quit").catch(() => undefined);
      qmp.close();
    }
  } finally {
    onPid(undefined);
    kill(proc.pid);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Waits until QEMU has created its QMP socket (true) or has exited (false).
 * QmpClient.connect alone would retry for its whole timeout after an exit,
 * holding the event loop open.
 */
async function socketCreated(sock: string, exited: () => boolean): Promise<boolean> {
  const deadline = performance.now() + 15_000;
  while (!existsSync(sock)) {
    if (exited()) return false;
    if (performance.now() >= deadline) throw new QmpTimeoutError(`QMP connect on ${sock}`, 15_000);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}

/**
 * Asks for one type only: `qom-list-types` would load every module, and one
 * QEMU's module dir may hold another build's modules, which is fatal to it.
 */
async function hasDevice(qmp: QmpClient, type: string): Promise<boolean> {
  try {
    await qmp.execute("device-list-properties", { typename: type });
    return true;
  } catch (err) {
    if (err instanceof QmpCommandError && err.errorClass === "DeviceNotFound") return false;
    throw err;
  }
}

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, "qemu.log"), "utf8").trim();
  } catch {
    return "(no output)";
  }
}

const machineVersion = (name: string): number[] => (/(\d+)\.(\d+)$/.exec(name) ?? []).slice(1).map(Number);

function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The newest versioned machine type for the arch, so a snapshot never rides on an alias. */
export function pickMachineType(probe: QemuProbe, arch: Arch): string {
  const prefix = arch === "arm64" ? "virt-" : "pc-q35-";
  const found = probe.machines.find((m) => m.startsWith(prefix));
  if (!found) {
    throw new EngineError(
      "QEMU_NO_MACHINE",
      `QEMU ${probe.versionString} offers no versioned ${prefix}X.Y machine`,
      {
        hint: "use a QEMU build with q35 (amd64) or virt (arm64) support",
      },
    );
  }
  return found;
}

/**
 * The CPU model. TCG: `max` on the native arch (deterministic per QEMU
 * version, which is in the key), `qemu64` for a cross-arch amd64 guest as the
 * seed does; an arm64 guest gets `max` with QEMU's own pointer-authentication
 * algorithm (Debian's kernel signs every return address, and emulating the
 * architected QARMA5 made a QEMU 7.2 boot about twice as slow).
 * KVM/HVF: a named, migration-safe model, never host/max, except arm64 under
 * KVM: it runs a named model only on that very core, so `host`, and the key's
 * CPU fingerprint names the host's core (see cpuFingerprint).
 */
export function pickCpuModel(arch: Arch, accelerator: Accelerator, hostArch: Arch): string {
  if (accelerator === "tcg") {
    if (arch === "amd64") return hostArch === "amd64" ? "max" : "qemu64";
    return "max,pauth-impdef=on";
  }
  if (arch === "amd64") return "Nehalem";
  return accelerator === "kvm" ? "host" : "cortex-a57";
}

/**
 * Where this QEMU looks for its BIOS and option ROMs, in search order
 * (`-L help`), e.g. /usr/share/qemu, /usr/share/seabios, /usr/lib/ipxe/qemu.
 */
export async function qemuDataDirs(binary: string): Promise<string[]> {
  try {
    const out = (await run(binary, ["-L", "help"], { timeoutMs: 15_000 })).stdout;
    return out
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l.startsWith("/"));
  } catch {
    return [];
  }
}

/**
 * The ROM images a VM of ours may load (SeaBIOS, VGA BIOS, the NICs' iPXE
 * ROMs, kvmvapic, the linuxboot/multiboot/pvh option ROMs): their contents
 * are guest memory regions whose size and content a snapshot depends on.
 * The first directory that has a name wins, as QEMU searches them.
 */
export const ROM_NAME =
  /^(bios.*|vgabios.*|efi-.*|pxe-.*|kvmvapic|linuxboot.*|multiboot.*|pvh|sgabios|qboot)\.(bin|rom)$/;

export function romFiles(dirs: readonly string[], list: (dir: string) => string[]): string[] {
  const seen = new Map<string, string>();
  for (const dir of dirs) {
    for (const name of list(dir)
      .filter((n) => ROM_NAME.test(n))
      .sort()) {
      if (!seen.has(name)) seen.set(name, join(dir, name));
    }
  }
  return [...seen.values()];
}

/**
 * The features QEMU's named x86 models give the guest, as /proc/cpuinfo
 * names them. Under KVM the guest sees the model's features that the host
 * also has (QEMU drops the rest) and the host's vendor string; the host's
 * other flags are invisible to it.
 */
const MODEL_FEATURES: Record<string, readonly string[]> = {
  Nehalem: [
    ...["fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "sep", "mtrr", "pge", "mca"],
    ...["cmov", "pat", "pse36", "clflush", "mmx", "fxsr", "sse", "sse2"],
    ...["pni", "ssse3", "cx16", "sse4_1", "sse4_2", "popcnt", "lm", "syscall", "nx", "lahf_lm"],
  ],
};

/**
 * The CPU part of the snapshot key: what the guest sees. A named x86 model
 * under KVM/HVF: the model, the host's vendor, and which of the model's
 * features this host lacks (normally none), so every host that can run the
 * model in full shares one key whatever else its CPU has. Anything else
 * (TCG, arm64's `host`, a model not in the table) is host.ts's fingerprint.
 */
export function guestCpuFingerprint(accelerator: Accelerator, cpuModel: string, cpuinfo?: string): string {
  const model = MODEL_FEATURES[cpuModel];
  const text = cpuinfo ?? readCpuinfo();
  if (accelerator === "tcg" || !model || !/^vendor_id\s*:/m.test(text)) {
    return cpuFingerprint(accelerator, cpuModel, text).id;
  }
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(text)?.[1]?.trim() ?? "";
  const flags = new Set(field("flags").split(/\s+/));
  const missing = model.filter((f) => !flags.has(f)).sort();
  return `${accelerator}:${cpuModel}:${field("vendor_id") || "unknown"}:missing=${missing.join(",") || "none"}`;
}

function readCpuinfo(): string {
  try {
    return readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return "";
  }
}
