/** capture as its own verb: make sure a snapshot exists for this host and config. */
import type { EmulatorConfig } from "../config/index.js";
import { EngineError } from "../errors.js";
import { openSnapshotStore } from "../snapshot/store.js";
import { reclaimRunDir } from "./stop.js";
import { resolveContext } from "./context.js";
import { Phases, type EventSink } from "./events.js";
import { ensureRunDir } from "./run-dir.js";
import { acquireRunLock } from "./run-lock.js";
import { keyOf } from "./snapshot-key.js";
import { capture } from "./capture.js";
import type { EngineDeps } from "./deps.js";

export async function captureOnly(
  config: EmulatorConfig,
  sink: EventSink,
  deps: Partial<EngineDeps> = {},
): Promise<{ key: string; skipped: boolean; timings: Record<string, number> }> {
  const phases = new Phases(sink);
  const ctx = await resolveContext(config, deps);
  ensureRunDir(ctx.paths);
  const lock = acquireRunLock(ctx.paths.lock, ctx.paths.dir);
  try {
    const reclaimed = await reclaimRunDir(
      ctx.paths,
      () =>
        new EngineError("ALREADY_RUNNING", `the emulator is running from ${ctx.paths.dir}`, {
          hint: "stop it first (hexclave-emulator stop): capture boots its own VM on the same ports",
        }),
    );
    if (reclaimed !== undefined)
      phases.warn(`killed QEMU pid ${reclaimed}, left running by an interrupted start in ${ctx.paths.dir}`);
    const store = openSnapshotStore(config.snapshotDir);
    const { key, parts } = await keyOf(ctx);
    const found = config.forceCapture ? undefined : await store.usable(key);
    if (found?.state === "usable") return { key, skipped: true, timings: {} };
    if (found?.state === "unusable") {
      // A damaged snapshot is never "already present": set it aside and capture anew.
      phases.warn(`${found.reason}; quarantining it and capturing a new one`);
      await store.quarantine(key, found.reason);
    }
    await capture(ctx, store, key, parts, phases);
    return { key, skipped: false, timings: phases.timings };
  } finally {
    lock.release();
  }
}
