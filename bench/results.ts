/** The shape of a bench result file (bench/results/<date>-<host>.json). */
import type { BenchOptions } from "./args.js";
import type { CaptureResult } from "./capture.js";
import type { ColdResult } from "./cold.js";
import type { GuestInfo, LoadSample, MachineInfo } from "./machine.js";
import type { OverheadResult } from "./overhead.js";
import type { ScalingPoint } from "./ram-scaling.js";
import type { ResumeResult } from "./resume.js";
import type { SharingResult } from "./sharing.js";
import type { FloorFigures } from "./floor.js";
import type { CommandFigures } from "./command.js";
import type { SeedResult } from "./seed.js";
import type { ActionFigures } from "./action.js";

export const RESULT_FORMAT = 1;

/** Every section a QEMU's result has (empty or undefined with an error when it could not run). */
export const SECTIONS = [
  "floor",
  "command",
  "cold",
  "capture",
  "resume",
  "overhead",
  "sharing",
  "ramScaling",
  "seed",
  "action",
] as const;
export type SectionName = (typeof SECTIONS)[number];

export interface TargetFigure {
  id: string;
  target: string;
  qemu: string;
  /** The figures the ratio is made of, in words. */
  measured: string;
  ratio: number | null;
  limit: number;
  /** null: not measured in this run. A bench never fails on a target. */
  pass: boolean | null;
}

export interface QemuResult {
  label: string;
  binary: string;
  version: string;
  accelerator: string;
  acceleratorReason: string;
  machineType: string;
  strategies: string[];
  floor: { bare: FloorFigures; argv: string[] } | undefined;
  cold: ColdResult | undefined;
  capture: CaptureResult[];
  resume: ResumeResult[];
  overhead: OverheadResult | undefined;
  sharing: SharingResult | undefined;
  ramScaling: ScalingPoint[];
  /** The command's own start-up against a bare `node -e 0`. */
  command: CommandFigures | undefined;
  /** The seed (run-seed.sh) and the command side by side. */
  seed: SeedResult | undefined;
  /** The Action's cache-hit job (bench/action.ts); absent in results from before it. */
  action?: ActionFigures | undefined;
  /** Load before each section (the machine is shared with other engineers' QEMU tests). */
  load: Record<string, LoadSample>;
  sectionMs: Record<string, number>;
  /** CPU steal over each section, in percent (machine.ts); absent in older results. */
  stealPercent?: Record<string, number>;
  errors: { section: SectionName; message: string }[];
}

export interface BenchResult {
  format: typeof RESULT_FORMAT;
  date: string;
  mode: "full" | "quick" | "smoke";
  options: Omit<BenchOptions, "outDir" | "workDir" | "log">;
  machine: MachineInfo;
  guest: GuestInfo;
  load: { start: LoadSample; end: LoadSample };
  durationMs: number;
  qemus: QemuResult[];
  targets: TargetFigure[];
}
