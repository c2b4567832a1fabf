/**
 * The two halves of a snapshot over QMP, driven by events (no polling with
 * sleeps): capture stops the guest, migrates its state out and quits;
 * resume migrates it in and continues.
 */
import { EngineError, TimeoutError } from "../errors.js";
import type { QmpClient } from "../qemu/qmp.js";
import { QmpTimeoutError } from "../qemu/protocol-errors.js";
import type { MigrationSpec } from "./strategies.js";

export class MigrationError extends EngineError {}

interface MigrationEventData {
  status: string;
}

const isTerminal = (s: string) => s === "completed" || s === "failed" || s === "cancelled";

async function configure(qmp: QmpClient, spec: MigrationSpec): Promise<void> {
  await qmp.execute("migrate-set-capabilities", { capabilities: spec.capabilities });
  await qmp.execute("migrate-set-parameters", spec.parameters);
}

async function awaitOutcome(
  qmp: QmpClient,
  done: Promise<{ data: MigrationEventData }>,
  what: string,
): Promise<void> {
  const event = await done;
  if (event.data.status !== "completed") {
    const info = await qmp.queryMigrate().catch(() => undefined);
    const desc = (info as { "error-desc"?: string } | undefined)?.["error-desc"] ?? "";
    throw new MigrationError(
      "MIGRATION_FAILED",
      `${what} ended ${event.data.status}${desc ? `: ${desc}` : ""}`,
      {
        hint: "see qemu.log in the run directory",
      },
    );
  }
}

/**
 * Captures a running guest: stop, migrate to the spec's stream file, quit.
 * The guest never runs again after this (its devices would no longer match
 * the template RAM).
 */
export async function captureState(qmp: QmpClient, spec: MigrationSpec, timeoutMs: number): Promise<void> {
  const stopped = qmp.waitForEvent("STOP", undefined, { timeoutMs: 30_000 });
  await qmp.execute("stop");
  await stopped;
  await configure(qmp, spec);
  const done = qmp.waitForEvent<MigrationEventData>("MIGRATION", (e) => isTerminal(e.data.status), {
    timeoutMs,
  });
  await qmp.execute("migrate", { uri: spec.outgoingUri });
  try {
    await awaitOutcome(qmp, done, "capture migration");
  } catch (err) {
    if (!(err instanceof QmpTimeoutError)) throw err;
    // A destination that stopped reading (a full pipe, a hung disk): cancel,
    // so QEMU is left stopped but sane, and say what happened.
    await qmp.execute("migrate_cancel", undefined, { timeoutMs: 5_000 }).catch(() => undefined);
    throw new TimeoutError("MIGRATION_TIMEOUT", `capture migration did not complete within ${timeoutMs} ms`, {
      hint: "the snapshot destination stopped taking data (full or hung disk?); it was cancelled",
      cause: err,
    });
  }
}

/**
 * Loads a snapshot into a QEMU started with `-incoming defer -S`, then runs it.
 * `whilePaused` runs between the loaded state and `cont` (hot-plugging a
 * device there costs the running guest nothing).
 */
export async function resumeState(
  qmp: QmpClient,
  spec: MigrationSpec,
  timeoutMs: number,
  whilePaused?: () => Promise<void>,
): Promise<void> {
  await configure(qmp, spec);
  const done = qmp.waitForEvent<MigrationEventData>("MIGRATION", (e) => isTerminal(e.data.status), {
    timeoutMs,
  });
  await qmp.execute("migrate-incoming", { uri: spec.incomingUri });
  await awaitOutcome(qmp, done, "incoming migration");
  await whilePaused?.();
  const status = await qmp.queryStatus();
  if (status.running) return;
  const resumed = qmp.waitForEvent("RESUME", undefined, { timeoutMs: 30_000 });
  await qmp.execute("cont");
  await resumed;
}
