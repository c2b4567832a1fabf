/** What a result was measured on: machine, load, QEMU, accelerator, guest. */
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { cpus, hostname, loadavg, release, totalmem } from "node:os";
import { detectHost } from "../src/engine/index.js";

export interface MachineInfo {
  hostname: string;
  cpuModel: string;
  /**
   * /proc/cpuinfo's family, model, stepping and cache size: machines of one
   * kind can land on different host CPUs behind the same model name, and a
   * TCG guest's speed follows the host's.
   */
  cpuId?: string | undefined;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  /** /dev/kvm usable by this user. */
  kvm: boolean;
  zstd: string;
}

export interface LoadSample {
  at: string;
  /** 1, 5 and 15 minute load averages. */
  loadavg: [number, number, number];
  /** Other QEMU processes on the machine (other people's tests), not counting the bench's own. */
  otherQemus: number;
  /** The three busiest processes (ps %CPU: over each one's lifetime) and their commands. */
  busiest: string[];
  /** /proc/stat's aggregate CPU counters; absent where there is none and in older results. */
  cpu?: CpuTicks | undefined;
}

/**
 * Cumulative CPU time of all cores, in clock ticks. `steal` is time the
 * hypervisor ran something else while this VM wanted a CPU: a guest under
 * TCG slows by about that share, so a slow result on a machine with steal
 * says "contended host", not "slower code".
 */
export interface CpuTicks {
  steal: number;
  total: number;
}

export interface GuestInfo {
  image: string;
  virtualBytes: number;
  fileBytes: number;
  vcpus: number;
}

const first = (s: string): string => s.split("\n")[0]?.trim() ?? "";

export function machineInfo(): MachineInfo {
  const host = detectHost();
  const cpu = cpus()[0]?.model ?? "unknown";
  let zstd = "absent";
  try {
    const line = first(execFileSync("zstd", ["--version"], { encoding: "utf8" }));
    zstd = `zstd ${/v\d[\d.]*/.exec(line)?.[0] ?? line}`;
  } catch {
    /* absent */
  }
  return {
    hostname: hostname(),
    cpuModel: cpu.trim(),
    cpuId: cpuId(),
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    kernel: release(),
    node: process.version,
    kvm: host.kvmWritable,
    zstd,
  };
}

/** The first processor's identity in /proc/cpuinfo, or undefined where there is none. */
export function parseCpuId(cpuinfo: string): string | undefined {
  const field = (name: string): string | undefined =>
    new RegExp(`^${name}\\s*:\\s*(.+)$`, "m").exec(cpuinfo)?.[1]?.trim();
  const [family, model, stepping, cache] = ["cpu family", "model", "stepping", "cache size"].map(field);
  if (family === undefined || model === undefined) return undefined;
  return `family ${family} model ${model}${stepping ? ` stepping ${stepping}` : ""}${cache ? `, cache ${cache}` : ""}`;
}

const cpuId = (): string | undefined => readParsed("/proc/cpuinfo", parseCpuId);

/** A /proc file parsed, or undefined where it is not (another OS, a sandbox). */
function readParsed<T>(path: string, parse: (text: string) => T | undefined): T | undefined {
  try {
    return parse(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}

/** Load now, and how many QEMUs other than `ownPids` run (the machine is shared). */
export function loadSample(ownPids: ReadonlySet<number> = new Set()): LoadSample {
  const [a = 0, b = 0, c = 0] = loadavg();
  return {
    at: new Date().toISOString(),
    loadavg: [round(a), round(b), round(c)],
    otherQemus: otherQemus(ownPids),
    busiest: busiest(),
    cpu: cpuTicks(),
  };
}

/** The aggregate `cpu` line of /proc/stat (user nice system idle iowait irq softirq steal …). */
export function parseCpuTicks(procStat: string): CpuTicks | undefined {
  const line = procStat.split("\n").find((l) => /^cpu\s/.test(l));
  if (!line) return undefined;
  // guest and guest_nice (fields 9–10) are already counted in user and nice.
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (f.length < 8 || f.some((x) => !Number.isFinite(x))) return undefined;
  return { steal: f[7]!, total: f.reduce((a, b) => a + b, 0) };
}

/** The share of CPU time stolen between two samples, in percent; undefined without both. */
export function stealPercent(from: CpuTicks | undefined, to: CpuTicks | undefined): number | undefined {
  if (!from || !to || to.total <= from.total) return undefined;
  return Math.round(((to.steal - from.steal) / (to.total - from.total)) * 1000) / 10;
}

/** The CPU counters now (a LoadSample has them too, beside the costlier load figures). */
export const cpuTicks = (): CpuTicks | undefined => readParsed("/proc/stat", parseCpuTicks);

function otherQemus(own: ReadonlySet<number>): number {
  let n = 0;
  for (const entry of safeReaddir("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || own.has(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      // The QEMU 10 wrapper runs qemu through its own loader: the binary is argv[3].
      if (/qemu-system/.test(cmd.split("\0").slice(0, 5).join(" "))) n++;
    } catch {
      /* gone */
    }
  }
  return n;
}

function busiest(): string[] {
  try {
    const out = execFileSync("ps", ["-eo", "pcpu=,comm=", "--sort=-pcpu"], { encoding: "utf8" });
    return out
      .split("\n")
      .map((l) => l.trim().replace(/\s+/, "% "))
      .filter((l) => l && !/% ps$/.test(l))
      .slice(0, 3);
  } catch {
    return [];
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export function guestInfo(image: string, qemuImg: string, vcpus: number): GuestInfo {
  let virtualBytes = 0;
  try {
    const info = JSON.parse(
      execFileSync(qemuImg, ["info", "--output=json", image], { encoding: "utf8" }),
    ) as {
      "virtual-size"?: number;
    };
    virtualBytes = info["virtual-size"] ?? 0;
  } catch {
    /* unknown */
  }
  return { image, virtualBytes, fileBytes: statSync(image).size, vcpus };
}

const round = (x: number): number => Math.round(x * 100) / 100;
