/**
 * The engine in a child process, so a test can kill it at a chosen phase:
 *   node --import tsx test/support/engine-child.ts '<EmulatorConfig JSON>'
 * Prints every engine event as one JSON line on stdout, then the result.
 */
import { start } from "../../src/engine/lifecycle/start.js";
import type { EmulatorConfig } from "../../src/engine/config/index.js";

const config = JSON.parse(process.argv[2] ?? "{}") as EmulatorConfig;
const out = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`);
start(config, (e) => out({ event: e }))
  .then((r) => out({ result: r }))
  .catch((err: Error & { code?: string }) => {
    out({ error: { code: err.code, message: err.message } });
    process.exitCode = 1;
  });
