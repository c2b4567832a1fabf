/**
 * Concurrent guests resumed from one template. The snapshot key includes
 * the host ports, so N guests cannot each find "their" snapshot through
 * start(): N configs on distinct ports have N keys. Each guest here runs the
 * engine's resume steps (overlay, launchVm, resumeState, agent, clock,
 * rotation, health) on the ONE published template snapshot, with its own run
 * dir and host ports forwarded to the snapshot's guest ports (direct.ts).
 * The host share is left out (its hot-plug adds nothing to memory). Memory
 * is the proportional set size of each QEMU (shared pages split fairly
 * between the guests that map them), read 3 s after every guest is healthy;
 * the guest-RAM mapping's share is reported on its own.
 */
import { join } from "node:path";
import { rmSync } from "node:fs";
import {
  Phases,
  connectAgent,
  ensureRunDir,
  finishGuest,
  launchVm,
  migrationSpec,
  resolveContext,
  resumeState,
  silent,
  type EmulatorConfig,
  type PublishedSnapshot,
  type Strategy,
} from "../src/engine/index.js";
import { mappingMemory, processMemory, type MappingFigures, type MemoryFigures } from "./memory.js";
import { now, round } from "./stats.js";
import type { BenchEnv } from "./setup.js";
import { prepareResume } from "./direct.js";

const SETTLE_MS = 3_000;

export interface GuestFigures {
  /** resume-launch + resume-migrate of this guest while the others resumed too. */
  toRunningMs: number;
  toHealthyMs: number;
  memory: MemoryFigures;
  /** The guest-RAM file mapping (template only). */
  ramMapping: MappingFigures | undefined;
}

export interface SharingRun {
  strategy: Strategy;
  /** TCG translation buffer of these guests, MiB; null: QEMU's own default (the contrast run). */
  tcgTbSizeMiB?: number | null | undefined;
  guests: number;
  perGuest: GuestFigures[];
  totalPssKiB: number;
  /** The part of totalPssKiB that is the guest-RAM file mapping (template only). */
  ramPssKiB: number | undefined;
}

export interface SharingResult {
  ramMiB: number;
  settleMs: number;
  runs: SharingRun[];
  /** Per strategy: (total PSS of N guests − that of 1) / (N − 1), and its ratio to one guest. */
  extraPerGuest: {
    strategy: Strategy;
    tcgTbSizeMiB?: number | null | undefined;
    guests: number;
    extraKiB: number;
    firstKiB: number;
    ratio: number;
    /** The same for the guest-RAM mapping alone (without QEMU's own memory: TCG code cache, heap). */
    ram: { extraKiB: number; firstKiB: number; ratio: number } | undefined;
  }[];
  /** Runs that failed (and were retried once), with why. */
  failures: string[];
}

/** One guest from `snapshot`: the engine's resume steps on a plan whose hostfwd keeps the snapshot's guest ports. */
async function resumeOne(
  config: EmulatorConfig,
  snapshot: PublishedSnapshot,
  env: BenchEnv,
  tcgTbSizeMiB: number | null | undefined,
) {
  const ctx = await resolveContext(config);
  ensureRunDir(ctx.paths);
  const phases = new Phases(silent);
  const t0 = now();
  const plan = { ...(await prepareResume(ctx, snapshot)), tcgTbSizeMiB };
  const vm = await phases.run("resume-launch", () => launchVm(ctx.qemu.binary, plan, ctx.paths));
  env.track(vm.pid);
  const spec = migrationSpec(ctx.strategy, ctx.qemu, snapshot.dir, plan.cpus);
  await phases.run("resume-migrate", () => resumeState(vm.qmp, spec, 5 * 60_000));
  const agent = await phases.run("agent", () => connectAgent(ctx, 60_000));
  try {
    await phases.run("clock", () => agent.setTime(undefined, { timeoutMs: 10_000 }));
    await finishGuest(ctx, agent, phases, config.snapshotReadyTimeoutSec);
  } finally {
    agent.close();
    vm.qmp.close();
  }
  const t = phases.timings;
  return {
    pid: vm.pid.pid,
    toRunningMs: (t["resume-launch"] ?? 0) + (t["resume-migrate"] ?? 0),
    toHealthyMs: round(now() - t0),
  };
}

export async function sharingRun(
  env: BenchEnv,
  strategy: Strategy,
  snapshot: PublishedSnapshot,
  ramMiB: number,
  guests: number,
  tcgTbSizeMiB?: number | null,
): Promise<SharingRun> {
  const configs = Array.from({ length: guests }, (_, i) =>
    env.config(
      { strategy, ramMiB, snapshotRamMiB: ramMiB, hostShare: { mode: "none" } },
      i + 1,
      `share-${strategy}-${guests}-${i + 1}`,
    ),
  );
  const ramFile = strategy === "template" ? join(snapshot.dir, "ram.bin") : undefined;
  try {
    const up = await Promise.all(configs.map((c) => resumeOne(c, snapshot, env, tcgTbSizeMiB)));
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const perGuest = up.map((g) => ({
      toRunningMs: g.toRunningMs,
      toHealthyMs: g.toHealthyMs,
      memory: processMemory(g.pid),
      ramMapping: ramFile ? mappingMemory(g.pid, ramFile) : undefined,
    }));
    return {
      strategy,
      ...(tcgTbSizeMiB === undefined ? {} : { tcgTbSizeMiB }),
      guests,
      perGuest,
      totalPssKiB: perGuest.reduce((n, g) => n + g.memory.pssKiB, 0),
      ramPssKiB: ramFile ? perGuest.reduce((n, g) => n + (g.ramMapping?.pssKiB ?? 0), 0) : undefined,
    };
  } finally {
    for (const c of configs) {
      await env.kill(c);
      rmSync(c.runDir, { recursive: true, force: true });
    }
  }
}

export async function sharingSection(
  env: BenchEnv,
  snapshots: Partial<Record<Strategy, PublishedSnapshot>>,
  plan: { strategy: Strategy; guests: number[]; tcgTbSizeMiB?: number | null }[],
  ramMiB: number,
  log: (m: string) => void,
): Promise<SharingResult> {
  const runs: SharingRun[] = [];
  const failures: string[] = [];
  for (const { strategy, guests, tcgTbSizeMiB } of plan) {
    const snapshot = snapshots[strategy];
    if (!snapshot) continue;
    const what = `${strategy}${tcgTbSizeMiB === null ? " (QEMU's tb-size)" : ""}`;
    for (const n of guests) {
      let r: SharingRun;
      try {
        r = await sharingRun(env, strategy, snapshot, ramMiB, n, tcgTbSizeMiB);
      } catch (err) {
        failures.push(`${what} ×${n}: ${(err as Error).message.split("\n")[0]}`);
        r = await sharingRun(env, strategy, snapshot, ramMiB, n, tcgTbSizeMiB);
      }
      log(`sharing ${what} ×${n}: total PSS ${Math.round(r.totalPssKiB / 1024)} MiB`);
      runs.push(r);
    }
  }
  const extraPerGuest: SharingResult["extraPerGuest"] = [];
  const variants = new Map(runs.map((r) => [`${r.strategy}/${r.tcgTbSizeMiB}`, r] as const));
  for (const { strategy, tcgTbSizeMiB } of variants.values()) {
    const mine = runs.filter((r) => r.strategy === strategy && r.tcgTbSizeMiB === tcgTbSizeMiB);
    const one = mine.find((r) => r.guests === 1);
    if (!one) continue;
    for (const r of mine.filter((x) => x.guests > 1)) {
      const extraKiB = (r.totalPssKiB - one.totalPssKiB) / (r.guests - 1);
      const ramExtra =
        r.ramPssKiB !== undefined && one.ramPssKiB
          ? (r.ramPssKiB - one.ramPssKiB) / (r.guests - 1)
          : undefined;
      extraPerGuest.push({
        strategy,
        ...(tcgTbSizeMiB === undefined ? {} : { tcgTbSizeMiB }),
        guests: r.guests,
        extraKiB: Math.round(extraKiB),
        firstKiB: one.totalPssKiB,
        ratio: round(extraKiB / one.totalPssKiB, 3),
        ram:
          ramExtra !== undefined && one.ramPssKiB
            ? {
                extraKiB: Math.round(ramExtra),
                firstKiB: one.ramPssKiB,
                ratio: round(ramExtra / one.ramPssKiB, 3),
              }
            : undefined,
      });
    }
  }
  return { ramMiB, settleMs: SETTLE_MS, runs, extraPerGuest, failures };
}
