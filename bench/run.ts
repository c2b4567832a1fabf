/**
 * npm run bench [-- --quick | --smoke | --runs N | --qemu 10 | …]
 *
 * Measures every phase, every strategy, scaling with RAM and with concurrent
 * guests, on each QEMU present, and writes bench/results/<date>-<host>.json
 * and .md. A benchmark reports: a target missed, a slow machine or a section
 * that could not run is written down, never an exit status (only a bench that
 * cannot start at all, e.g. no QEMU, exits non-zero).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseBenchArgs, USAGE, type BenchOptions } from "./args.js";
import { guestInfo, loadSample, machineInfo } from "./machine.js";
import { benchEnv } from "./setup.js";
import { runTarget } from "./sections.js";
import { evaluateTargets } from "./targets.js";
import { writeResult } from "./report.js";
import { RESULT_FORMAT, type BenchResult } from "./results.js";
import { benchTargets } from "./qemus.js";
import { testGuestImage } from "../test/support/tools.js";

const REPO_ROOT = resolve(fileURLToPath(import.meta.url), "..", "..");

export async function runBench(
  opts: BenchOptions,
): Promise<{ result: BenchResult; json: string; md: string }> {
  const started = performance.now();
  const log = opts.log
    ? (m: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`)
    : () => undefined;
  const targets = benchTargets(opts.qemu);
  const image = testGuestImage();
  const root = opts.workDir ?? mkdtempSync(join(tmpdir(), "hxbench-"));
  mkdirSync(root, { recursive: true });
  const date = new Date().toISOString();
  const startLoad = loadSample();
  log(
    `work dir ${root}; QEMUs ${targets.map((t) => t.label).join(", ")}; load ${startLoad.loadavg.join(" ")}`,
  );
  const qemus = [];
  try {
    for (const target of targets) {
      const env = benchEnv(target, image, root, opts.portBase);
      try {
        qemus.push(await runTarget(env, opts, log));
      } finally {
        await env.cleanup();
        rmSync(env.home, { recursive: true, force: true });
      }
    }
  } finally {
    if (!opts.workDir) rmSync(root, { recursive: true, force: true });
  }
  const result: BenchResult = {
    format: RESULT_FORMAT,
    date,
    mode: opts.mode,
    options: benchOptionsOf(opts),
    machine: machineInfo(),
    guest: guestInfo(image, targets[0]?.img ?? "qemu-img", 1),
    load: { start: startLoad, end: loadSample() },
    durationMs: Math.round(performance.now() - started),
    qemus,
    targets: qemus.flatMap(evaluateTargets),
  };
  const paths = writeResult(result, opts.outDir);
  log(`wrote ${paths.json} and ${paths.md}`);
  return { result, ...paths };
}

function benchOptionsOf(opts: BenchOptions): BenchResult["options"] {
  const { outDir: _out, workDir: _work, log: _log, ...rest } = opts;
  return rest;
}

async function main(): Promise<void> {
  let opts: BenchOptions | "help";
  try {
    opts = parseBenchArgs(process.argv.slice(2), REPO_ROOT);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (opts === "help") {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const { md } = await runBench(opts);
  process.stdout.write(readFileSync(md, "utf8"));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(
      `bench could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
