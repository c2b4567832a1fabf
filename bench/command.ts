/**
 * The command's own start-up, before any engine work: `hexclave-emulator
 * --help` and `hexclave-emulator start --help` (flags parsed, nothing of the
 * engine loaded) against a bare `node -e 0`, interleaved, whole processes.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { round, summarize, type Summary } from "./stats.js";

const REPO_ROOT = resolve(fileURLToPath(import.meta.url), "..", "..");
const COMMAND = join(REPO_ROOT, "bin", "hexclave-emulator.js");
const run = promisify(execFile);

export interface CommandFigures {
  /** Set when the command is not built (npm run build:lib). */
  unavailable?: string | undefined;
  bareNodeMs: Summary | undefined;
  helpMs: Summary | undefined;
  verbHelpMs: Summary | undefined;
  /** Median of --help minus median of node -e 0. */
  overheadMs: number | undefined;
}

async function timed(args: string[]): Promise<number> {
  const t0 = performance.now();
  await run(process.execPath, args);
  return performance.now() - t0;
}

export async function commandSection(runs: number): Promise<CommandFigures> {
  if (!existsSync(join(REPO_ROOT, "lib", "engine", "cli", "main.js"))) {
    const unavailable = "the command is not built (npm run build:lib)";
    return {
      unavailable,
      bareNodeMs: undefined,
      helpMs: undefined,
      verbHelpMs: undefined,
      overheadMs: undefined,
    };
  }
  const bare: number[] = [];
  const help: number[] = [];
  const verbHelp: number[] = [];
  await timed([COMMAND, "--help"]); // warm the file cache
  for (let i = 0; i < runs; i++) {
    bare.push(await timed(["-e", "0"]));
    help.push(await timed([COMMAND, "--help"]));
    verbHelp.push(await timed([COMMAND, "start", "--help"]));
  }
  const b = summarize(bare);
  const h = summarize(help);
  return {
    bareNodeMs: b,
    helpMs: h,
    verbHelpMs: summarize(verbHelp),
    overheadMs: round(h.median - b.median),
  };
}
