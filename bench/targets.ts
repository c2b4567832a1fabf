/**
 * The issue's targets, evaluated as figures: each a ratio of two things
 * measured on this machine in this run, its limit, and pass/fail. Nothing
 * here fails the process: a slow machine is reported, not punished.
 */
import type { QemuResult, TargetFigure } from "./results.js";
import { round } from "./stats.js";

const fmt = (ms: number): string => `${Math.round(ms)} ms`;
const mib = (kib: number): string => `${Math.round(kib / 1024)} MiB`;

function figure(
  q: QemuResult,
  id: string,
  target: string,
  limit: number,
  parts: { num: number; den: number; measured: string } | undefined,
): TargetFigure {
  if (!parts || !Number.isFinite(parts.num) || !Number.isFinite(parts.den) || parts.den <= 0) {
    return { id, target, qemu: q.label, measured: "not measured", ratio: null, limit, pass: null };
  }
  const ratio = round(parts.num / parts.den, 3);
  return { id, target, qemu: q.label, measured: parts.measured, ratio, limit, pass: ratio <= limit };
}

export function evaluateTargets(q: QemuResult): TargetFigure[] {
  const out: TargetFigure[] = [];
  const resumeRot = q.resume.find((r) => r.strategy === "template" && r.rotation);
  const cold = q.cold?.totalMs.median;
  out.push(
    figure(
      q,
      "resume-vs-cold",
      "template resume with rotation to all-healthy ≤ 1/8 of a cold boot",
      0.125,
      resumeRot && cold !== undefined
        ? {
            num: resumeRot.toHealthy.median,
            den: cold,
            measured: `resume ${fmt(resumeRot.toHealthy.median)} / cold ${fmt(cold)}`,
          }
        : undefined,
    ),
  );
  // Resume and floors measured interleaved in one section (overhead.ts), so
  // that the load of this shared machine weighs on both sides alike; the
  // start() figure is given alongside.
  const running = q.overhead?.toRunningMs.median;
  const viaStart = resumeRot ? `; via start(): ${fmt(resumeRot.toRunning.median)}` : "";
  const fullFloor = q.overhead?.fullFloor.greetingMs.median;
  const bareFloor = q.overhead?.bareFloor.greetingMs.median;
  const readyFloor = q.overhead?.fullFloor.readyMs.median;
  out.push(
    figure(
      q,
      "running-vs-floor",
      "template resume to running ≤ 2 × the floor (the resume argv, launch to QMP greeting)",
      2,
      running !== undefined && fullFloor !== undefined
        ? {
            num: running,
            den: fullFloor,
            measured: `running ${fmt(running)} / floor ${fmt(fullFloor)}${viaStart}`,
          }
        : undefined,
    ),
    figure(
      q,
      "running-vs-bare-floor",
      "same, against the bare binary (-machine none, launch to QMP greeting)",
      2,
      running !== undefined && bareFloor !== undefined
        ? {
            num: running,
            den: bareFloor,
            measured: `running ${fmt(running)} / bare floor ${fmt(bareFloor)}${viaStart}`,
          }
        : undefined,
    ),
    figure(
      q,
      "running-vs-ready",
      "same, against the resume argv launched to its first QMP reply (machine built: the lower bound of any engine)",
      2,
      running !== undefined && readyFloor !== undefined
        ? {
            num: running,
            den: readyFloor,
            measured: `running ${fmt(running)} / ready ${fmt(readyFloor)}${viaStart}`,
          }
        : undefined,
    ),
  );
  const tpl = q.ramScaling.filter((p) => p.strategy === "template").sort((a, b) => a.ramMiB - b.ramMiB);
  const big = tpl.find((p) => p.ramMiB === 4096) ?? tpl[tpl.length - 1];
  const small = tpl.find((p) => p.ramMiB === 1024 && p !== big) ?? tpl[0];
  out.push(
    figure(
      q,
      "ram-flat",
      "template resume to running at 4 GiB within 10 % of 1 GiB",
      1.1,
      small && big && big !== small
        ? {
            num: big.toRunning.median,
            den: small.toRunning.median,
            measured:
              `${big.ramMiB} MiB ${fmt(big.toRunning.median)} / ${small.ramMiB} MiB ${fmt(small.toRunning.median)}` +
              `; fastest runs ${fmt(big.toRunning.min)} / ${fmt(small.toRunning.min)}` +
              (big.floor && small.floor
                ? ` (QEMU alone, launch → first reply: ${fmt(big.floor.readyMs.median)} / ${fmt(small.floor.readyMs.median)})`
                : ""),
          }
        : undefined,
    ),
  );
  const extra = q.sharing?.extraPerGuest
    .filter((e) => e.strategy === "template" && e.tcgTbSizeMiB === undefined)
    .sort((a, b) => b.guests - a.guests)[0];
  const qemuTb = q.sharing?.extraPerGuest
    .filter((e) => e.strategy === "template" && e.tcgTbSizeMiB === null)
    .sort((a, b) => b.guests - a.guests)[0];
  out.push(
    figure(
      q,
      "sharing",
      "each extra guest from one template adds ≤ 1/5 of the first guest's PSS",
      0.2,
      extra
        ? {
            num: extra.extraKiB,
            den: extra.firstKiB,
            measured:
              `${extra.guests} guests: +${mib(extra.extraKiB)} per extra guest / first ${mib(extra.firstKiB)}` +
              (qemuTb
                ? `; with QEMU's own tb-size: ${qemuTb.ratio} (+${mib(qemuTb.extraKiB)} / ${mib(qemuTb.firstKiB)})`
                : ""),
          }
        : undefined,
    ),
  );
  const ram = extra?.ram;
  out.push(
    figure(
      q,
      "sharing-ram",
      "same, for the guest-RAM mapping alone (QEMU's own memory left out)",
      0.2,
      extra && ram
        ? {
            num: ram.extraKiB,
            den: ram.firstKiB,
            measured: `${extra.guests} guests: +${mib(ram.extraKiB)} per extra guest / first ${mib(ram.firstKiB)}`,
          }
        : undefined,
    ),
  );
  const withTransport = tpl.filter((p) => p.transport?.plainZstd1);
  const biggest = withTransport[withTransport.length - 1];
  const t = biggest?.transport;
  out.push(
    figure(
      q,
      "transport",
      "template snapshot packed for transport ≤ 1/3 of plain `zstd -1` of the RAM file",
      1 / 3,
      biggest && t?.plainZstd1
        ? {
            num: t.packMs,
            den: t.plainZstd1.ms,
            measured:
              `${biggest.ramMiB} MiB: pack ${fmt(t.packMs)} / zstd -1 ${fmt(t.plainZstd1.ms)}` +
              (t.packLevel1Ms === undefined ? "" : ` (pack at level 1: ${fmt(t.packLevel1Ms)})`),
          }
        : undefined,
    ),
  );
  const seed = q.seed?.seed;
  const ours = q.seed?.ours;
  const vs = (f: (x: NonNullable<typeof seed>) => number, what: string) =>
    seed && ours
      ? { num: f(ours), den: f(seed), measured: `ours ${fmt(f(ours))} / seed ${fmt(f(seed))}${what}` }
      : undefined;
  out.push(
    figure(
      q,
      "seed-rotated",
      "rotated start (command start → all healthy, whole process) ≤ 0.10 × the seed's",
      0.1,
      vs((x) => x.rotated.median, ""),
    ),
    figure(
      q,
      "seed-unrotated",
      "unrotated start (EMULATOR_NO_ROTATION=1), whole process ≤ 0.10 × the seed's",
      0.1,
      vs((x) => x.unrotated.median, ""),
    ),
    figure(
      q,
      "capture-overhead",
      "capture overhead after the guest is healthy ≤ 1 s (ours: migrate + quit + publish)",
      1000,
      ours
        ? {
            num: ours.captureOverheadMs.median,
            den: 1,
            measured: `ours ${fmt(ours.captureOverheadMs.median)}${seed ? `; seed ${fmt(seed.captureOverheadMs.median)} (migrate + zstd)` : ""}`,
          }
        : undefined,
    ),
  );
  const cmd = q.command;
  out.push(
    figure(
      q,
      "command-overhead",
      "the command's own start-up (--help) ≤ 80 ms above a bare `node -e 0`",
      80,
      cmd?.overheadMs !== undefined && cmd.helpMs && cmd.bareNodeMs
        ? {
            num: Math.max(cmd.overheadMs, 0),
            den: 1,
            measured: `--help ${fmt(cmd.helpMs.median)} − node -e 0 ${fmt(cmd.bareNodeMs.median)}`,
          }
        : undefined,
    ),
  );
  const hit = q.action?.hit;
  out.push(
    figure(
      q,
      "action-cache-hit",
      "the Action's cache-hit job: startup (restore + resume + rotation to healthy) ≤ 1.5 s",
      1500,
      hit
        ? {
            num: hit.startupMs.median,
            den: 1,
            measured: `startup ${fmt(hit.startupMs.median)} = restore ${fmt(hit.restoreMs.median)} + the rest ${fmt(hit.afterRestoreMs.median)} (${q.action?.ramMiB} MiB guest)`,
          }
        : undefined,
    ),
  );
  const qmp = q.overhead?.qmpRoundTripMs.median;
  out.push(
    figure(
      q,
      "qmp-rtt",
      "QMP round trip at the median: a few milliseconds (≤ 5 ms)",
      5,
      qmp !== undefined ? { num: qmp, den: 1, measured: `median ${round(qmp, 3)} ms` } : undefined,
    ),
  );
  return out;
}
