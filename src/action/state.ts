/**
 * What the main step tells the post step (GITHUB_STATE → STATE_* env), behind
 * a seam so tests can hold it in memory, as actions/cache's StateProvider.
 * One JSON value, written early (so a main step that fails halfway still lets
 * post stop the VM) and rewritten when the emulator is up.
 */
import * as core from "@actions/core";
import { z } from "zod";
import { EmulatorConfig } from "../engine/index.js";
import { CACHE_MODES, SAVE_ON } from "./inputs.js";

export interface StateProvider {
  set(name: string, value: string): void;
  get(name: string): string;
}

export class ActionsStateProvider implements StateProvider {
  set(name: string, value: string): void {
    core.saveState(name, value);
  }
  get(name: string): string {
    return core.getState(name);
  }
}

export class MemoryStateProvider implements StateProvider {
  readonly values = new Map<string, string>();
  set(name: string, value: string): void {
    this.values.set(name, value);
  }
  get(name: string): string {
    return this.values.get(name) ?? "";
  }
}

const STATE_NAME = "emulator";

export const EmulatorState = z.object({
  /** starting: the VM may be up or half up; started: healthy; failed: the main step failed. */
  outcome: z.enum(["starting", "started", "failed"]),
  config: EmulatorConfig,
  cache: z.enum(CACHE_MODES),
  saveOn: z.enum(SAVE_ON),
  defaultBranch: z.string().optional(),
  /** The Action's cache directory (the archive is packed there under a fixed name). */
  cacheDir: z.string(),
  cacheKeySuffix: z.string().optional(),
  snapshotKey: z.string().optional(),
  /** The key a save uses: the generation after the one restored (1 when none was). */
  cacheKey: z.string().optional(),
  saveGeneration: z.number().int().positive(),
  /** This job captured the snapshot (it was not restored): only then may post save it. */
  captured: z.boolean(),
  /**
   * The restored entry did not resume: the post step captures a fresh
   * snapshot and saves it as the next generation (when save-on allows).
   */
  recapture: z.boolean().optional(),
  bootMode: z.enum(["resume", "cold"]).optional(),
  // Entries the post step saves besides the snapshot. Optional (an older
  // state parses), and dropped rather than failing the state when malformed:
  // the post step must still stop the VM.
  /** The QEMU .debs this job downloaded (apt-cache.ts): `<dir>/apt/*.deb` under `key`. */
  aptSave: z
    .object({ key: z.string().min(1), dir: z.string().min(1) })
    .optional()
    .catch(undefined),
  /** The image this job downloaded and verified (image-cache.ts): `path` under `key`. */
  imageSave: z
    .object({
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      path: z.string().min(1),
      key: z.string().min(1),
    })
    .optional()
    .catch(undefined),
});
export type EmulatorState = z.infer<typeof EmulatorState>;

export function saveEmulatorState(provider: StateProvider, state: EmulatorState): void {
  provider.set(STATE_NAME, JSON.stringify(state));
}

/** The state the main step left, or undefined when it left none (or none that parses). */
export function readEmulatorState(provider: StateProvider): EmulatorState | undefined {
  const raw = provider.get(STATE_NAME);
  if (!raw) return undefined;
  try {
    const parsed = EmulatorState.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
