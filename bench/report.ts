/** Writing a result: the JSON as measured, and a short Markdown table to read and compare. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stealPercent } from "./machine.js";
import type { BenchResult, QemuResult } from "./results.js";
import type { Summary } from "./stats.js";
import type { SideFigures } from "./seed.js";

const ms = (s: Summary | undefined): string => {
  if (!s || !Number.isFinite(s.median)) return "–";
  const f = (x: number) => (x < 10 ? x.toFixed(2) : String(Math.round(x)));
  return s.n > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median);
};
const mib = (bytes: number | undefined): string =>
  bytes === undefined ? "–" : `${(bytes / 1024 ** 2).toFixed(bytes < 10 * 1024 ** 2 ? 1 : 0)}`;

type Row = [string, ...string[]];

const shareKey = (r: { strategy: string; guests: number; tcgTbSizeMiB?: number | null | undefined }) =>
  `${r.strategy}${r.tcgTbSizeMiB === null ? " (QEMU's tb-size)" : ""}×${r.guests}`;

function rows(qs: QemuResult[]): Row[] {
  const out: Row[] = [];
  const add = (label: string, f: (q: QemuResult) => string) => out.push([label, ...qs.map(f)]);
  const strategies = [...new Set(qs.flatMap((q) => q.capture.map((c) => c.strategy)))];
  add("floor: bare binary, launch → QMP greeting (ms)", (q) => ms(q.floor?.bare.greetingMs));
  add("floor: bare binary, interleaved with the resumes below (ms)", (q) =>
    ms(q.overhead?.bareFloor.greetingMs),
  );
  add("floor: resume argv, launch → QMP greeting (ms)", (q) => ms(q.overhead?.fullFloor.greetingMs));
  add("floor: resume argv, launch → first QMP reply (ms)", (q) => ms(q.overhead?.fullFloor.readyMs));
  add("engine pieces (launchVm + resumeState), template → running (ms)", (q) => ms(q.overhead?.toRunningMs));
  add("cold boot → all healthy (ms)", (q) => ms(q.cold?.totalMs));
  for (const s of strategies) {
    const c = (q: QemuResult) => q.capture.find((x) => x.strategy === s);
    add(`capture ${s}: total (ms)`, (q) => ms(c(q)?.totalMs));
    add(`capture ${s}: migrate (ms)`, (q) => ms(c(q)?.phases["capture-migrate"]));
    add(`snapshot ${s}: apparent / allocated / archive (MiB)`, (q) => {
      const x = c(q);
      return x
        ? `${mib(x.size.apparentBytes)} / ${mib(x.size.allocatedBytes)} / ${mib(x.transport.compressedBytes)}`
        : "–";
    });
    add(`snapshot ${s}: pack / unpack / plain zstd -1 of RAM (ms)`, (q) => {
      const x = c(q)?.transport;
      return x ? `${ms(x.packMs)} / ${ms(x.unpackMs)} / ${ms(x.plainZstd1Ms)}` : "–";
    });
  }
  for (const s of strategies) {
    for (const rot of [true, false]) {
      const r = (q: QemuResult) => q.resume.find((x) => x.strategy === s && x.rotation === rot);
      const w = rot ? "with" : "without";
      add(`resume ${s} ${w} rotation → running (ms)`, (q) => ms(r(q)?.toRunning));
      add(`resume ${s} ${w} rotation → all healthy (ms)`, (q) => ms(r(q)?.toHealthy));
    }
  }
  const points = [...new Set(qs.flatMap((q) => q.ramScaling.map((p) => `${p.strategy}@${p.ramMiB}`)))];
  for (const key of points) {
    const [s, size] = key.split("@");
    add(`resume ${s} ${Number(size) / 1024} GiB → running (ms)`, (q) =>
      ms(q.ramScaling.find((p) => `${p.strategy}@${p.ramMiB}` === key)?.toRunning),
    );
  }
  for (const key of points.filter((k) => k.startsWith("template@"))) {
    const size = Number(key.split("@")[1]);
    add(`floor: template resume argv at ${size / 1024} GiB, launch → greeting / → first reply (ms)`, (q) => {
      const f = q.ramScaling.find((p) => `${p.strategy}@${p.ramMiB}` === key)?.floor;
      return f ? `${ms(f.greetingMs)} / ${ms(f.readyMs)}` : "–";
    });
  }
  for (const key of points.filter((k) => k.startsWith("template@"))) {
    const size = Number(key.split("@")[1]);
    add(
      `snapshot template ${size / 1024} GiB: allocated MiB; pack / pack level 1 / plain zstd -1 (ms)`,
      (q) => {
        const p = q.ramScaling.find((x) => `${x.strategy}@${x.ramMiB}` === key);
        const t = p?.transport;
        if (!p || !t) return "–";
        const f = (x: number | undefined) => (x === undefined ? "–" : String(Math.round(x)));
        return `${mib(p.size.allocatedBytes)}; ${f(t.packMs)} / ${f(t.packLevel1Ms)} / ${f(t.plainZstd1?.ms)}`;
      },
    );
  }
  const shares = [...new Set(qs.flatMap((q) => q.sharing?.runs.map(shareKey) ?? []))];
  for (const key of shares) {
    add(`${key} guests: total PSS (MiB)`, (q) => {
      const r = q.sharing?.runs.find((x) => shareKey(x) === key);
      if (!r) return "–";
      return r.ramPssKiB === undefined
        ? mib(r.totalPssKiB * 1024)
        : `${mib(r.totalPssKiB * 1024)} (guest RAM ${mib(r.ramPssKiB * 1024)})`;
    });
  }
  add("command: node -e 0 / hexclave-emulator --help / start --help (ms)", (q) => {
    const c = q.command;
    return c?.helpMs ? `${ms(c.bareNodeMs)} / ${ms(c.helpMs)} / ${ms(c.verbHelpMs)}` : "–";
  });
  add("Action, cache-hit job: startup / restore / the rest (ms)", (q) => {
    const h = q.action?.hit;
    return h ? `${ms(h.startupMs)} / ${ms(h.restoreMs)} / ${ms(h.afterRestoreMs)}` : "–";
  });
  add("Action, miss job: startup (capture included) (ms)", (q) =>
    q.action ? String(q.action.miss.startupMs) : "–",
  );
  add("QMP round trip (ms)", (q) => ms(q.overhead?.qmpRoundTripMs));
  add("agent round trip (ms)", (q) => ms(q.overhead?.agentRoundTripMs));
  add("RESUME event → engine notices (ms)", (q) => ms(q.overhead?.resumeNoticeMs));
  return out;
}

function phaseRows(qs: QemuResult[]): string[] {
  const lines: string[] = [];
  for (const q of qs) {
    const rs = q.resume.filter((r) => r.rotation);
    if (rs.length === 0) continue;
    const phases = [...new Set(rs.flatMap((r) => Object.keys(r.phases)))];
    lines.push(`| ${q.label}: phase (ms, median) | ${rs.map((r) => r.strategy).join(" | ")} |`);
    lines.push(`|---|${rs.map(() => "---:").join("|")}|`);
    for (const p of phases) lines.push(`| ${p} | ${rs.map((r) => ms(r.phases[p])).join(" | ")} |`);
    lines.push("");
  }
  return lines;
}

/** The seed and the command side by side, whole processes (bench/seed.ts). */
function seedRows(qs: QemuResult[]): string[] {
  const lines: string[] = [];
  for (const q of qs) {
    const r = q.seed;
    if (!r) continue;
    if (r.unavailable) {
      lines.push(`Seed side by side, ${q.label}: not run (${r.unavailable}).`, "");
      continue;
    }
    const { seed, ours } = r;
    const row = (label: string, f: (x: SideFigures) => Summary) =>
      `| ${label} | ${seed ? ms(f(seed)) : "–"} | ${ours ? ms(f(ours)) : "–"} | ${
        seed && ours ? (f(ours).median / f(seed).median).toFixed(3) : "–"
      } |`;
    lines.push(
      `| ${q.label}, ${r.ramMiB} MiB / ${r.cpus} vCPU: seed vs ours, whole process (ms) | seed | ours | ours / seed |`,
      "|---|---:|---:|---:|",
      row("start, rotated: command start → all healthy", (x) => x.rotated),
      row("start, unrotated (EMULATOR_NO_ROTATION=1)", (x) => x.unrotated),
      row("capture: command start → snapshot written", (x) => x.captureMs),
      row(
        "capture overhead after healthy (seed: migrate + zstd; ours: migrate + quit + publish)",
        (x) => x.captureOverheadMs,
      ),
      "",
    );
    const p = Object.entries(r.oursCapturePhases);
    if (p.length)
      lines.push(
        `Our capture after healthy (ms, median): ${p.map(([k, v]) => `${k} ${Math.round(v)}`).join(", ")}.`,
        "",
      );
    if (r.failures.length) lines.push(...r.failures.map((f) => `- retried: ${f.split("\n")[0]}`), "");
  }
  return lines;
}

function sectionLoads(qs: QemuResult[]): string {
  return qs
    .map(
      (q) =>
        `${q.label} ${Object.entries(q.load)
          .map(([s, l]) => `${s} ${l.loadavg[0]}`)
          .join(", ")}`,
    )
    .join("; ");
}

/** CPU steal over the run and per section: a contended host slows a TCG guest by about that much. */
function stealLine(r: BenchResult): string | undefined {
  const whole = stealPercent(r.load.start.cpu, r.load.end.cpu);
  if (whole === undefined) return undefined;
  const per = r.qemus
    .map(
      (q) =>
        `${q.label} ${Object.entries(q.stealPercent ?? {})
          .map(([s, p]) => `${s} ${p}%`)
          .join(", ")}`,
    )
    .join("; ");
  return `- CPU steal (time the hypervisor gave to other VMs; a TCG guest slows by about that share): ${whole}% over the run; per section: ${per}`;
}

export function markdown(r: BenchResult): string {
  const m = r.machine;
  const qs = r.qemus;
  const head = [
    `# Bench ${r.date} (${r.mode}, N=${r.options.runs})`,
    "",
    `- machine: ${m.hostname}, ${m.cpuModel}${m.cpuId ? ` (${m.cpuId})` : ""}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, ${m.zstd}`,
    `- QEMU: ${qs.map((q) => `${q.label} = ${q.version} (${q.machineType})`).join("; ")}`,
    `- accelerator: ${[...new Set(qs.map((q) => `${q.accelerator} (${q.acceleratorReason})`))].join("; ")}`,
    `- guest: ${r.guest.image.split("/").pop()} (${mib(r.guest.virtualBytes)} MiB disk), ${r.options.ramMiB} MiB RAM, ${r.guest.vcpus} vCPU`,
    `- load (1/5/15 min): start ${r.load.start.loadavg.join(" ")} with ${r.load.start.otherQemus} other QEMUs; end ${r.load.end.loadavg.join(" ")} with ${r.load.end.otherQemus}; per section: ${sectionLoads(qs)}`,
    ...[stealLine(r)].filter((l): l is string => l !== undefined),
    `- duration: ${Math.round(r.durationMs / 1000)} s; figures are median (min–max) over N runs`,
    "",
    `| measure | ${qs.map((q) => q.label).join(" | ")} |`,
    `|---|${qs.map(() => "---:").join("|")}|`,
    ...rows(qs).map((row) => `| ${row.join(" | ")} |`),
    "",
    ...phaseRows(qs),
    ...seedRows(qs),
    "## Targets",
    "",
    "| target | QEMU | measured | ratio | limit | pass |",
    "|---|---|---|---:|---:|---|",
    ...r.targets.map(
      (t) =>
        `| ${t.target} | ${t.qemu} | ${t.measured} | ${t.ratio ?? "–"} | ${Math.round(t.limit * 1000) / 1000} | ${t.pass === null ? "not measured" : t.pass ? "pass" : "FAIL"} |`,
    ),
  ];
  const flaky = qs.flatMap((q) =>
    [
      ...(q.cold?.failures.map((f) => `cold: ${f}`) ?? []),
      ...q.capture.flatMap((c) => c.failures.map((f) => `capture ${c.strategy}: ${f}`)),
      ...q.resume.flatMap((r) => r.failures.map((f) => `resume ${r.strategy}: ${f}`)),
      ...q.ramScaling.flatMap((p) => p.failures.map((f) => `scaling ${p.strategy} ${p.ramMiB} MiB: ${f}`)),
      ...(q.sharing?.failures.map((f) => `sharing ${f}`) ?? []),
    ].map((f) => `- ${q.label} ${f}`),
  );
  if (flaky.length) head.push("", "## Runs that failed and were retried", "", ...flaky);
  const errors = qs.flatMap((q) => q.errors.map((e) => `- ${q.label} ${e.section}: ${e.message}`));
  if (errors.length) head.push("", "## Sections that did not run", "", ...errors);
  return head.join("\n") + "\n";
}

/** Writes <date>-<host>.json and .md into `dir`; returns their paths. */
export function writeResult(r: BenchResult, dir: string): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const stamp = r.date.replace(/[:]/g, "").replace(/\.\d+Z$/, "Z");
  const base = join(dir, `${stamp}-${r.machine.hostname.replace(/[^\w.-]/g, "_")}`);
  writeFileSync(`${base}.json`, JSON.stringify(r, null, 2) + "\n");
  writeFileSync(`${base}.md`, markdown(r));
  return { json: `${base}.json`, md: `${base}.md` };
}
