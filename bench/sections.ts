/**
 * One QEMU, every section in order: floors, cold boot, capture per
 * strategy, resume per strategy with and without rotation, the engine's
 * overhead, concurrent guests, RAM scaling, the seed side by side, the
 * Action's cache-hit job. A section that fails is written
 * down with its error and the others still run.
 */
import { join } from "node:path";
import {
  describeError,
  openSnapshotStore,
  resolveContext,
  supportedStrategies,
  type PublishedSnapshot,
  type Strategy,
} from "../src/engine/index.js";
import type { BenchOptions } from "./args.js";
import { bareArgv, bareFloor } from "./floor.js";
import { coldSection } from "./cold.js";
import { captureSection } from "./capture.js";
import { resumeSection } from "./resume.js";
import { overheadSection } from "./overhead.js";
import { sharingSection } from "./sharing.js";
import { scalingSection } from "./ram-scaling.js";
import { cpuTicks, loadSample, stealPercent } from "./machine.js";
import { commandSection } from "./command.js";
import { seedSection } from "./seed.js";
import { actionSection } from "./action.js";
import type { QemuResult, SectionName } from "./results.js";
import type { BenchEnv } from "./setup.js";

export async function runTarget(
  env: BenchEnv,
  opts: BenchOptions,
  log: (m: string) => void,
): Promise<QemuResult> {
  const ctx = await resolveContext(env.config());
  const strategies = supportedStrategies(ctx.qemu);
  const q: QemuResult = {
    label: env.target.label,
    binary: env.target.binary,
    version: ctx.qemu.versionString,
    accelerator: ctx.accel.accelerator,
    acceleratorReason: ctx.accel.reason,
    machineType: ctx.machineType,
    strategies,
    floor: undefined,
    cold: undefined,
    capture: [],
    resume: [],
    overhead: undefined,
    sharing: undefined,
    ramScaling: [],
    command: undefined,
    seed: undefined,
    load: {},
    sectionMs: {},
    errors: [],
  };
  const steals: Record<string, number> = (q.stealPercent = {});
  const log2 = (m: string) => log(`${env.target.label} ${m}`);
  const section = async (name: SectionName, fn: () => Promise<void>): Promise<void> => {
    if (opts.only.length && !opts.only.includes(name)) return;
    q.load[name] = loadSample();
    log2(`${name} (load ${q.load[name].loadavg[0]}, ${q.load[name].otherQemus} other QEMUs)`);
    const t0 = performance.now();
    try {
      await fn();
    } catch (err) {
      q.errors.push({ section: name, message: describeError(err) });
      log2(`${name} failed: ${describeError(err)}`);
    } finally {
      q.sectionMs[name] = Math.round(performance.now() - t0);
      const steal = stealPercent(q.load[name].cpu, cpuTicks());
      if (steal !== undefined) steals[name] = steal;
      log2(
        `${name} done in ${(q.sectionMs[name] / 1000).toFixed(1)} s${steal === undefined ? "" : `, CPU steal ${steal}%`}`,
      );
    }
  };
  const scratch = join(env.home, "scratch");
  const snapshots: Partial<Record<Strategy, PublishedSnapshot>> = {};

  await section("floor", async () => {
    q.floor = {
      bare: await bareFloor(ctx.qemu.binary, env.home, Math.max(opts.runs, 5)),
      argv: bareArgv(),
    };
  });
  await section("command", async () => {
    q.command = await commandSection(Math.max(opts.runs * 5, 10));
  });
  await section("cold", async () => {
    q.cold = await coldSection(env, opts.ramMiB, opts.runs, log2);
  });
  await section("capture", async () => {
    for (const s of strategies) {
      const c = await captureSection(env, s, opts.ramMiB, opts.runs, scratch, log2);
      q.capture.push(c);
      const snap = await openSnapshotStore(env.config().snapshotDir).lookup(c.key);
      if (snap) snapshots[s] = snap;
    }
  });
  await section("resume", async () => {
    for (const s of strategies.filter((x) => snapshots[x])) {
      for (const rotation of [true, false]) {
        q.resume.push(await resumeSection(env, s, rotation, opts.ramMiB, opts.runs, log2));
      }
    }
  });
  await section("overhead", async () => {
    const snap = snapshots.template;
    if (!snap) throw new Error("no template snapshot (its capture failed)");
    const config = env.config(
      { strategy: "template", ramMiB: opts.ramMiB, snapshotRamMiB: opts.ramMiB },
      9,
      "direct",
    );
    q.overhead = await overheadSection(env, config, snap, Math.max(opts.runs * 2, 3), log2);
  });
  await section("sharing", async () => {
    if (!snapshots.template) throw new Error("no template snapshot (its capture failed)");
    const most = Math.max(...opts.guests);
    const plan: Parameters<typeof sharingSection>[2] = [{ strategy: "template", guests: opts.guests }];
    // The contrasts: TCG's translation buffer at QEMU's default size (1 GiB)
    // instead of the engine's; guests with RAM of their own (stream).
    if (ctx.accel.accelerator === "tcg" && most > 1)
      plan.push({ strategy: "template", guests: [1, most], tcgTbSizeMiB: null });
    if (!opts.quick && most > 1) plan.push({ strategy: "stream", guests: [1, most] });
    q.sharing = await sharingSection(env, snapshots, plan, opts.ramMiB, log2);
  });
  await section("ramScaling", async () => {
    const wanted = opts.scalingStrategies.filter((s) => strategies.includes(s));
    // Resumes are cheap next to captures: twice the runs, for a steadier median.
    q.ramScaling = await scalingSection(env, wanted, opts.sizesMiB, opts.runs * 2, scratch, log2);
  });
  // Last: its whole processes (the seed's and the command) need no snapshot of the sections above.
  await section("seed", async () => {
    q.seed = await seedSection(env, ctx.qemu.versionString, opts.ramMiB, opts.runs, log2);
    if (q.seed.unavailable) log2(`seed: ${q.seed.unavailable}`);
  });
  await section("action", async () => {
    q.action = await actionSection(env, opts.ramMiB, opts.runs, log2);
  });
  return q;
}
