/**
 * npm run reliability-report [-- --no-run]
 *
 * Runs the reliability suite (bad-input and malformed-traffic unit tests,
 * then the QEMU fault and soak files one at a time) and prints its figures:
 * faults injected and survived, bad inputs tried and rejected, leaks found.
 * Each test file writes reliability/results/<file>.json; --no-run only
 * prints what the last run left there. Exits 1 when a fault was not
 * survived, a bad input was accepted, or a leak was found.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { FileFigures } from "../test/support/reliability.js";

const ROOT = resolve(import.meta.dirname, "..");
const RESULTS = process.env.HEXCLAVE_RELIABILITY_RESULTS ?? join(ROOT, "reliability", "results");
const UNIT = [
  "test/unit/config-bad-input.test.ts",
  "test/unit/qmp-fake-peer.test.ts",
  "test/unit/qga-fake-peer.test.ts",
  "test/unit/iso-limits.test.ts",
];
const QEMU = [
  "test/integration/reliability/faults.qemu72.test.ts",
  "test/integration/reliability/faults.qemu10.test.ts",
  "test/integration/reliability/soak.qemu10.test.ts",
];

function vitest(project: string, files: string[]): number {
  const r = spawnSync("npx", ["vitest", "run", "--project", project, "--no-file-parallelism", ...files], {
    cwd: ROOT,
    stdio: "inherit",
  });
  return r.status ?? 1;
}

let testsFailed = false;
if (!process.argv.includes("--no-run")) {
  rmSync(RESULTS, { recursive: true, force: true });
  testsFailed = vitest("unit", UNIT) !== 0;
  testsFailed = vitest("qemu", QEMU) !== 0 || testsFailed;
}

const files: FileFigures[] = existsSync(RESULTS)
  ? readdirSync(RESULTS)
      .filter((f) => f.endsWith(".json") && f !== "summary.json")
      .sort()
      .map((f) => JSON.parse(readFileSync(join(RESULTS, f), "utf8")) as FileFigures)
  : [];
if (files.length === 0) {
  console.error(`no figures in ${RESULTS}: run npm run reliability-report without --no-run`);
  process.exit(1);
}

const faults = files.flatMap((f) => f.faults);
const bad = new Map<string, { tried: number; rejected: number }>();
for (const b of files.flatMap((f) => f.badInputs)) {
  const sum = bad.get(b.target) ?? { tried: 0, rejected: 0 };
  bad.set(b.target, { tried: sum.tried + b.tried, rejected: sum.rejected + b.rejected });
}
const leaks = files.flatMap((f) => f.leakChecks);
const tried = [...bad.values()].reduce((n, b) => n + b.tried, 0);
const rejected = [...bad.values()].reduce((n, b) => n + b.rejected, 0);
const survived = faults.filter((f) => f.survived).length;
const leaked = leaks.reduce((n, l) => n + l.leaks, 0);
const mark = (ok: boolean) => (ok ? "✓" : "✗");
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const lines = [
  `Reliability figures (${files.length} result files, latest ${files
    .map((f) => f.finishedAt)
    .sort()
    .at(-1)})`,
  "",
  `Faults injected: ${faults.length}, survived: ${survived}`,
  ...faults.map(
    (f) => `  ${mark(f.survived)} ${f.name} (${secs(f.ms)})${f.detail ? `: ${f.detail.split("\n")[0]}` : ""}`,
  ),
  "",
  `Bad inputs tried: ${tried}, rejected or handled cleanly: ${rejected}`,
  ...[...bad].map(([target, b]) => `  ${mark(b.tried === b.rejected)} ${target}: ${b.rejected}/${b.tried}`),
  "",
  `Leak checks: ${leaks.length}, leaks found: ${leaked}`,
  ...leaks.map((l) => `  ${mark(l.leaks === 0)} ${l.what}: ${l.leaks} (${l.detail})`),
];
if (leaks.length === 0) lines.push("  (no soak figures: was HEXCLAVE_SKIP_SOAK=1 set?)");
console.log(lines.join("\n"));
writeFileSync(
  join(RESULTS, "summary.json"),
  JSON.stringify(
    {
      faults: { injected: faults.length, survived },
      badInputs: { tried, rejected },
      leaks: { checks: leaks.length, found: leaked },
    },
    null,
    2,
  ) + "\n",
);
process.exit(testsFailed || survived < faults.length || rejected < tried || leaked > 0 ? 1 : 0);
