/**
 * The seed side by side: ../shared/seed-baseline/run-seed.sh (the original
 * shell implementation, verbatim) and the `hexclave-emulator` command, as
 * whole processes on the same guest, QEMU, RAM, vCPUs and share, runs
 * alternating seed / ours so that the load of this shared machine weighs on
 * both alike. Measured: start with and without rotation (command start to
 * all healthy), capture, and capture's overhead once the guest is healthy
 * (seed: migrate + zstd of the RAM file; ours: migrate + quit + publish),
 * read from the time each side prints its healthy line to its exit.
 * The seed needs mapped-ram: QEMU 9 or later.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { killVm, onPath, type EmulatorConfig } from "../src/engine/index.js";
import { round, summarize, type Summary } from "./stats.js";
import type { BenchEnv } from "./setup.js";

const REPO_ROOT = resolve(fileURLToPath(import.meta.url), "..", "..");
/** Where run-seed.sh is: ../shared beside the checkout (HEXCLAVE_SEED_BASELINE overrides). */
export const SEED_SCRIPT =
  process.env.HEXCLAVE_SEED_BASELINE ?? resolve(REPO_ROOT, "..", "shared", "seed-baseline", "run-seed.sh");
const COMMAND = join(REPO_ROOT, "bin", "hexclave-emulator.js");

export interface SideFigures {
  rotated: Summary;
  unrotated: Summary;
  captureMs: Summary;
  /** Healthy line printed → process exit. */
  captureOverheadMs: Summary;
}

export interface SeedResult {
  /** Set when the section could not run at all (no ../shared, an old QEMU). */
  unavailable?: string | undefined;
  script: string;
  ramMiB: number;
  cpus: number;
  seed: SideFigures | undefined;
  ours: SideFigures | undefined;
  /** Ours / seed, medians. */
  ratios: { rotated: number; unrotated: number; captureOverhead: number } | undefined;
  /** Our capture's own phases after healthy (migrate, quit, publish), medians, ms. */
  oursCapturePhases: Record<string, number>;
  failures: string[];
}

interface ProcRun {
  ms: number;
  /** ms from spawn to the first line matching `mark`, when given and seen. */
  markMs: number | undefined;
  out: string;
}

/** One process to its exit; lines of stdout and stderr timestamped as they arrive. */
function runProcess(
  argv: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string; mark?: RegExp; timeoutMs: number },
): Promise<ProcRun> {
  return new Promise((resolveRun, reject) => {
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { env: opts.env, cwd: opts.cwd, stdio: "pipe" });
    let out = "";
    let markMs: number | undefined;
    const onData = (b: Buffer) => {
      const s = b.toString("utf8");
      out += s;
      if (markMs === undefined && opts.mark?.test(s)) markMs = performance.now() - t0;
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const ms = round(performance.now() - t0);
      if (code === 0) resolveRun({ ms, markMs: markMs === undefined ? undefined : round(markMs), out });
      else reject(new Error(`${argv.join(" ")} ended ${signal ?? `exit ${code}`}:\n${out.slice(-1500)}`));
    });
  });
}

/** The tools run-seed.sh says the seed needs on PATH, and the Debian package of each. */
export const SEED_TOOLS: Readonly<Record<string, string>> = {
  socat: "socat",
  curl: "curl",
  nc: "netcat-openbsd",
  lsof: "lsof",
  zstd: "zstd",
  openssl: "openssl",
  genisoimage: "genisoimage",
};

/** The seed's tools that `onPath` cannot find, as "tool (package)". */
export function missingSeedTools(
  found: (tool: string) => boolean = (tool) => onPath(tool, process.env) !== undefined,
): string[] {
  return Object.entries(SEED_TOOLS)
    .filter(([tool]) => !found(tool))
    .map(([tool, pkg]) => (tool === pkg ? tool : `${tool} (${pkg})`));
}

/** Why the section cannot run here, or undefined. */
export function seedUnavailable(qemuVersion: string): string | undefined {
  if (!existsSync(SEED_SCRIPT)) return `the seed baseline is not there (${SEED_SCRIPT}: ../shared missing)`;
  // Without them every seed run fails within a second, after its retries, and
  // the section reports nothing useful: say so once, with the fix.
  const missing = missingSeedTools();
  if (missing.length)
    return `the seed needs ${missing.join(", ")} on PATH (bash scripts/setup.sh bench installs them)`;
  const major = Number(/^(\d+)/.exec(qemuVersion)?.[1] ?? 0);
  if (major < 9) return `the seed needs mapped-ram (QEMU 9.0 or later); this is QEMU ${qemuVersion}`;
  if (!existsSync(join(REPO_ROOT, "lib", "engine", "cli", "main.js")))
    return "the command is not built (npm run build:lib)";
  return undefined;
}

export async function seedSection(
  env: BenchEnv,
  qemuVersion: string,
  ramMiB: number,
  runs: number,
  log: (m: string) => void,
): Promise<SeedResult> {
  const base: SeedResult = {
    script: SEED_SCRIPT,
    ramMiB,
    cpus: 1,
    seed: undefined,
    ours: undefined,
    ratios: undefined,
    oursCapturePhases: {},
    failures: [],
  };
  const unavailable = seedUnavailable(qemuVersion);
  if (unavailable) return { ...base, unavailable };

  const config = env.config({ ramMiB, snapshotRamMiB: ramMiB }, 8, "seed-ours");
  const seedWork = join(env.home, "seed");
  mkdirSync(seedWork, { recursive: true });
  const seedEnv = [
    `EMULATOR_RAM=${ramMiB}`,
    `EMULATOR_CPUS=1`,
    `EMULATOR_SNAPSHOT_RAM=${ramMiB}`,
    `EMULATOR_SNAPSHOT_CPUS=1`,
    `EMULATOR_DASHBOARD_PORT=${config.ports.dashboard}`,
    `EMULATOR_BACKEND_PORT=${config.ports.backend}`,
    `EMULATOR_MINIO_PORT=${config.ports.minio}`,
    `EMULATOR_INBUCKET_PORT=${config.ports.inbucket}`,
    `EMULATOR_MOCK_OAUTH_PORT=${config.ports.mockOauth}`,
  ];
  const seed = (verb: string, extra: string[], mark?: RegExp) =>
    runProcess(["bash", SEED_SCRIPT, seedWork, env.target.binary, env.image, verb, ...seedEnv, ...extra], {
      env: process.env,
      cwd: env.share,
      timeoutMs: 600_000,
      ...(mark ? { mark } : {}),
    });
  // The seed's pid file is a bare number (QEMU's -pidfile); its stop verb sleeps seconds.
  const killSeed = async () => {
    const file = join(seedWork, "run", "vm", "qemu.pid");
    const pid = existsSync(file) ? Number(readFileSync(file, "utf8").trim()) : 0;
    if (pid > 0) await killVm({ pid, binary: env.target.binary, startedAt: "" }).catch(() => undefined);
    rmSync(file, { force: true });
  };
  const ours = (verb: string, extra: NodeJS.ProcessEnv, mark?: RegExp) =>
    runProcess([process.execPath, COMMAND, verb, "--json"], {
      env: { ...process.env, ...commandEnv(config), ...extra },
      cwd: env.share,
      timeoutMs: 600_000,
      ...(mark ? { mark } : {}),
    });

  const s = {
    rotated: [] as number[],
    unrotated: [] as number[],
    cap: [] as number[],
    capOver: [] as number[],
  };
  const o = {
    rotated: [] as number[],
    unrotated: [] as number[],
    cap: [] as number[],
    capOver: [] as number[],
  };
  const phases: Record<string, number[]> = {};
  const tries = async (what: string, fn: () => Promise<void>) => {
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        return await fn();
      } catch (err) {
        base.failures.push(`${what}: ${(err as Error).message.slice(0, 400)}`);
        log(`seed ${what} failed (attempt ${attempt})`);
      }
    }
  };

  // Captures first (each side's snapshot is then there for its starts).
  for (let i = 0; i < runs; i++) {
    await tries(`seed capture ${i + 1}`, async () => {
      try {
        const r = await seed("capture", ["EMULATOR_FORCE_CAPTURE=1"], /all services ready/);
        s.cap.push(r.ms);
        if (r.markMs !== undefined) s.capOver.push(round(r.ms - r.markMs));
        log(`seed capture ${i + 1}/${runs}: ${r.ms} ms, after healthy ${r.ms - (r.markMs ?? NaN)} ms`);
      } finally {
        await killSeed();
      }
    });
    await tries(`ours capture ${i + 1}`, async () => {
      try {
        const r = await ours("capture", { EMULATOR_FORCE_CAPTURE: "1" }, /capture-ready \d/);
        o.cap.push(r.ms);
        if (r.markMs !== undefined) o.capOver.push(round(r.ms - r.markMs));
        const timings = (
          JSON.parse(r.out.slice(r.out.indexOf("\n{") + 1)) as { timings?: Record<string, number> }
        ).timings;
        for (const k of ["capture-migrate", "capture-quit", "capture-publish"]) {
          if (timings?.[k] !== undefined) (phases[k] ??= []).push(timings[k]);
        }
        log(`ours capture ${i + 1}/${runs}: ${r.ms} ms, after healthy ${r.ms - (r.markMs ?? NaN)} ms`);
      } finally {
        await env.kill(config);
      }
    });
  }
  for (const rotation of [true, false]) {
    const extra = rotation ? [] : ["EMULATOR_NO_ROTATION=1"];
    const into = rotation ? "rotated" : "unrotated";
    for (let i = 0; i < runs; i++) {
      await tries(`seed start ${into} ${i + 1}`, async () => {
        try {
          const r = await seed("start", extra);
          if (!/All services are green/.test(r.out)) throw new Error(`the seed did not resume:\n${r.out}`);
          if (/cold boot/i.test(r.out)) throw new Error("the seed fell back to a cold boot");
          s[into].push(r.ms);
          log(`seed start ${into} ${i + 1}/${runs}: ${r.ms} ms`);
        } finally {
          await killSeed();
        }
      });
      await tries(`ours start ${into} ${i + 1}`, async () => {
        try {
          const r = await ours("start", {
            HEXCLAVE_EMULATOR_SNAPSHOT: "required",
            ...(rotation ? {} : { EMULATOR_NO_ROTATION: "1" }),
          });
          if (!/"bootMode": "resume"/.test(r.out))
            throw new Error(`ours did not resume:\n${r.out.slice(-800)}`);
          o[into].push(r.ms);
          log(`ours start ${into} ${i + 1}/${runs}: ${r.ms} ms`);
        } finally {
          await env.kill(config);
        }
      });
    }
  }
  const side = (x: typeof s): SideFigures | undefined =>
    x.rotated.length && x.unrotated.length && x.cap.length && x.capOver.length
      ? {
          rotated: summarize(x.rotated),
          unrotated: summarize(x.unrotated),
          captureMs: summarize(x.cap),
          captureOverheadMs: summarize(x.capOver),
        }
      : undefined;
  const seedSide = side(s);
  const oursSide = side(o);
  return {
    ...base,
    seed: seedSide,
    ours: oursSide,
    ratios:
      seedSide && oursSide
        ? {
            rotated: round(oursSide.rotated.median / seedSide.rotated.median, 3),
            unrotated: round(oursSide.unrotated.median / seedSide.unrotated.median, 3),
            captureOverhead: round(oursSide.captureOverheadMs.median / seedSide.captureOverheadMs.median, 3),
          }
        : undefined,
    oursCapturePhases: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, summarize(v).median])),
  };
}

/** The bench config as the command's environment (the command reads no bench code). */
function commandEnv(c: EmulatorConfig): NodeJS.ProcessEnv {
  return {
    HEXCLAVE_EMULATOR_HOME: c.home,
    HEXCLAVE_EMULATOR_IMAGE: c.image,
    EMULATOR_RUN_DIR: c.runDir,
    HEXCLAVE_EMULATOR_SNAPSHOT_DIR: c.snapshotDir,
    EMULATOR_RAM: String(c.ramMiB),
    EMULATOR_CPUS: String(c.cpus),
    EMULATOR_SNAPSHOT_RAM: String(c.snapshotRamMiB),
    EMULATOR_SNAPSHOT_CPUS: String(c.snapshotCpus),
    EMULATOR_DASHBOARD_PORT: String(c.ports.dashboard),
    EMULATOR_BACKEND_PORT: String(c.ports.backend),
    EMULATOR_MINIO_PORT: String(c.ports.minio),
    EMULATOR_INBUCKET_PORT: String(c.ports.inbucket),
    EMULATOR_MOCK_OAUTH_PORT: String(c.ports.mockOauth),
    EMULATOR_READY_TIMEOUT: String(c.readyTimeoutSec),
    EMULATOR_SNAPSHOT_READY_TIMEOUT: String(c.snapshotReadyTimeoutSec),
    HEXCLAVE_EMULATOR_STRATEGY: c.strategy,
    QEMU_BINARY: c.qemuBinary,
    ...(c.qemuImg ? { QEMU_IMG: c.qemuImg } : {}),
    HEXCLAVE_EMULATOR_HOST_SHARE: "cwd",
  };
}
