/**
 * The engine in a child process, so a test can kill it at a chosen phase:
 *   node --import tsx test/support/engine-child.ts '<EmulatorConfig JSON>' [<phase>]
 * Prints every engine event as one JSON line on stdout, then the result.
 * With a phase, the child stops itself (SIGSTOP) as that phase starts, right
 * after printing the event: the engine stays exactly there until the test
 * kills it (or sends SIGCONT).
 */
import { start } from "../../src/engine/lifecycle/start.js";
import type { EmulatorConfig } from "../../src/engine/config/index.js";

const config = JSON.parse(process.argv[2] ?? "{}") as EmulatorConfig;
const freezeAt = process.argv[3];
// Writes to a pipe are synchronous on Linux: each line is out before the next step.
const out = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`);
start(config, (e) => {
  out({ event: e });
  if (e.kind === "phase-start" && e.phase === freezeAt) process.kill(process.pid, "SIGSTOP");
})
  .then((r) => out({ result: r }))
  .catch((err: Error & { code?: string }) => {
    out({ error: { code: err.code, message: err.message } });
    process.exitCode = 1;
  });
