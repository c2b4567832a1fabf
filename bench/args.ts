/** The bench's command line: how many runs, which QEMUs, which sizes, where the results go. */
import { parseArgs } from "node:util";
import { join } from "node:path";
import type { Strategy } from "../src/engine/index.js";
import { SECTIONS, type SectionName } from "./results.js";

export interface BenchOptions {
  mode: "full" | "quick" | "smoke";
  runs: number;
  quick: boolean;
  /** "7.2", "10": only that QEMU; empty: every QEMU present. */
  qemu: string[];
  /** Guest RAM of the phase, capture and resume sections, MiB. */
  ramMiB: number;
  /** RAM sizes of the scaling section, MiB. */
  sizesMiB: number[];
  /** Strategies of the scaling section (template, and stream for contrast). */
  scalingStrategies: Strategy[];
  /** Concurrent guest counts of the sharing section. */
  guests: number[];
  /** Sections to run (default: all); others are written down as not run. */
  only: SectionName[];
  /** First of 100 host ports the bench may use. */
  portBase: number;
  outDir: string;
  /** Scratch directory for homes, snapshots and archives (removed at the end). */
  workDir: string | undefined;
  log: boolean;
}

const USAGE = `npm run bench -- [options]
  --runs N        runs per measurement (default 3; --quick: 1)
  --quick         N=1, fewer RAM sizes and guests (a few minutes)
  --smoke         --quick on one QEMU with a 512 MiB guest (1-3 minutes; for the test)
  --qemu V        only this QEMU (7.2 or 10); repeatable
  --ram MiB       guest RAM of the phase sections (default 1024)
  --sizes a,b,c   RAM sizes for the scaling section, MiB (default 1024,2048,4096)
  --scaling s,t   strategies of the scaling section (default template,stream; --smoke: template)
  --guests a,b,c  concurrent guests for the sharing section (default 1,2,4; --quick: 1,2)
  --only a,b      only these sections (${SECTIONS.join(", ")}); resume, overhead
                  and sharing need capture's snapshots
  --port-base P   first of 100 host ports to use (default 27600)
  --out DIR       where <date>-<host>.json and .md go (default bench/results)
  --work DIR      scratch directory (default a new one under the temp dir)
  --quiet         no progress lines on stderr`;

const list = (s: string): number[] =>
  s
    .split(",")
    .map((x) => Number(x.trim()))
    .filter((x) => Number.isFinite(x) && x > 0);

export function parseBenchArgs(argv: string[], repoRoot: string): BenchOptions | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: "string" },
      quick: { type: "boolean", default: false },
      smoke: { type: "boolean", default: false },
      qemu: { type: "string", multiple: true },
      ram: { type: "string" },
      sizes: { type: "string" },
      guests: { type: "string" },
      scaling: { type: "string" },
      only: { type: "string" },
      "port-base": { type: "string" },
      out: { type: "string" },
      work: { type: "string" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) return "help";
  const smoke = values.smoke;
  const quick = values.quick || smoke;
  const ramMiB = Number(values.ram ?? (smoke ? 512 : 1024));
  const sizes = values.sizes
    ? list(values.sizes)
    : smoke
      ? [512, 1024]
      : quick
        ? [1024, 4096]
        : [1024, 2048, 4096];
  const guests = values.guests ? list(values.guests) : quick ? [1, 2] : [1, 2, 4];
  let qemu = (values.qemu ?? []).map((q) => q.replace(/^qemu-/, ""));
  // 7.2 is the system QEMU (always there) and offers two strategies: the shortest full pass.
  if (smoke && qemu.length === 0) qemu = ["7.2"];
  const scalingStrategies = (values.scaling ?? (smoke ? "template" : "template,stream"))
    .split(",")
    .map((x) => x.trim());
  for (const st of scalingStrategies) {
    if (st !== "template" && st !== "stream" && st !== "mapped-ram")
      throw new Error(`unknown strategy ${st}`);
  }
  const only = (values.only ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
  for (const o of only) {
    if (!(SECTIONS as readonly string[]).includes(o)) throw new Error(`--only: unknown section ${o}`);
  }
  const runs = Number(values.runs ?? (quick ? 1 : 3));
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer`);
  if (!Number.isInteger(ramMiB) || ramMiB < 512) throw new Error(`--ram must be at least 512`);
  const portBase = Number(values["port-base"] ?? 27600);
  if (!Number.isInteger(portBase) || portBase < 1024 || portBase > 65_435)
    throw new Error(`--port-base must leave room for 100 ports`);
  if (guests.some((g) => g > 8)) throw new Error(`--guests: at most 8 (ports come in blocks of ten)`);
  return {
    mode: smoke ? "smoke" : quick ? "quick" : "full",
    runs,
    quick,
    qemu,
    ramMiB,
    sizesMiB: [...new Set(sizes)].sort((a, b) => a - b),
    scalingStrategies: scalingStrategies as Strategy[],
    guests: [...new Set(guests)].sort((a, b) => a - b),
    only: only as SectionName[],
    portBase,
    outDir: values.out ?? join(repoRoot, "bench", "results"),
    workDir: values.work,
    log: !values.quiet,
  };
}

export { USAGE };
