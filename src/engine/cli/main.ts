/**
 * hexclave-emulator: drives the engine directly.
 *   start | stop | status | capture | reset | bench
 * Human output by default, --json for machines; --help on every verb.
 */
import { homedir } from "node:os";
import { parseArgs } from "node:util";
import { describeError, EngineError } from "../errors.js";
import type { EmulatorConfig } from "../config/index.js";
import { CONFIG_FLAGS, FLAG_NAMES, VERB_FLAGS, overridesFromFlags } from "./flags.js";
import { VERBS, type Verb } from "./verbs.js";
import type { EngineEvent } from "../lifecycle/events.js";

/** HEXCLAVE_EMULATOR_DEBUG=1: QMP and guest agent traffic (secrets redacted) and error causes on stderr. */
export function debugEnabled(env: NodeJS.ProcessEnv): boolean {
  return /^(1|true|yes)$/i.test(env.HEXCLAVE_EMULATOR_DEBUG ?? "");
}

function causes(err: unknown): string[] {
  const out: string[] = [];
  for (let c = (err as { cause?: unknown } | undefined)?.cause; c !== undefined && out.length < 5;) {
    out.push(describeError(c));
    c = (c as { cause?: unknown }).cause;
  }
  return out;
}

function usage(verb?: Verb): string {
  const lines: string[] = [];
  if (!verb) {
    lines.push("usage: hexclave-emulator <verb> [flags]", "", "verbs:");
    for (const v of Object.values(VERBS)) lines.push(`  ${v.name.padEnd(8)} ${v.summary}`);
    lines.push(
      "",
      "hexclave-emulator <verb> --help lists the verb's flags. Every flag has an environment",
      "variable too (see the README).",
    );
    return lines.join("\n");
  }
  lines.push(`usage: hexclave-emulator ${verb.name} [flags]`, "", verb.summary, "", "flags:");
  lines.push(`  --json                  machine-readable output`);
  for (const f of [...CONFIG_FLAGS, ...VERB_FLAGS]) {
    if (verb.flags !== "all" && !verb.flags.includes(f.flag)) continue;
    if (verb.flags === "all" && VERB_FLAGS.includes(f)) continue;
    lines.push(`  --${(f.flag + (f.boolean ? "" : " <v>")).padEnd(22)}${f.help}`);
  }
  return lines.join("\n");
}

export function printEvent(e: EngineEvent, out: (s: string) => void): void {
  if (e.kind === "phase-end") out(`[emulator] ${e.phase} ${(e.ms / 1000).toFixed(2)} s`);
  else if (e.kind === "info") out(`[emulator] ${e.message}`);
  else if (e.kind === "warn") out(`[emulator] WARNING: ${e.message}`);
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [verbName, ...rest] = argv;
  if (!verbName || verbName === "--help" || verbName === "-h" || verbName === "help") {
    console.log(usage());
    return verbName ? 0 : 2;
  }
  const verb = VERBS[verbName as keyof typeof VERBS];
  if (!verb) {
    console.error(`hexclave-emulator: unknown verb "${verbName}"\n\n${usage()}`);
    return 2;
  }
  const options: Record<string, { type: "string" | "boolean" }> = {
    json: { type: "boolean" },
    help: { type: "boolean" },
  };
  for (const f of CONFIG_FLAGS) options[f.flag] = { type: f.boolean ? "boolean" : "string" };
  for (const f of VERB_FLAGS) options[f.flag] = { type: "string" };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: rest, options, strict: true, allowPositionals: false })
      .values as typeof values;
  } catch (err) {
    console.error(`hexclave-emulator ${verb.name}: ${(err as Error).message}\n\n${usage(verb)}`);
    return 2;
  }
  if (values.help) {
    console.log(usage(verb));
    return 0;
  }
  const json = values.json === true;
  const log = (s: string) => (json ? console.error(s) : console.log(s));
  const debug = debugEnabled(env);
  // Loaded here, not at the top: --help and flag errors need neither zod nor the engine.
  const trace = debug ? await import("../qemu/trace.js") : undefined;
  if (trace) {
    const { stringifyJson } = await import("../qemu/jsonl-transport.js");
    trace.setProtocolTrace((peer, direction, message) =>
      console.error(`[debug] ${peer} ${direction === "send" ? "->" : "<-"} ${stringifyJson(message)}`),
    );
  }
  try {
    const { loadConfig } = await import("../config/index.js");
    const config: EmulatorConfig = loadConfig({
      env,
      overrides: overridesFromFlags(values),
      cwd: process.cwd(),
      homeDir: homedir(),
      hostArch: process.arch,
      overrideSource: "flags",
      overrideNames: FLAG_NAMES,
    });
    const { code, result, human } = await verb.run(config, (e) => printEvent(e, log), values);
    if (json) console.log(JSON.stringify(result, null, 2));
    else if (human) console.log(human);
    return code;
  } catch (err) {
    const message = describeError(err);
    if (json)
      console.log(
        JSON.stringify({ error: { code: err instanceof EngineError ? err.code : "ERROR", message } }),
      );
    console.error(`hexclave-emulator ${verb.name}: ${message}`);
    if (debug) for (const c of causes(err)) console.error(`[debug] caused by: ${c}`);
    return 1;
  } finally {
    trace?.setProtocolTrace(undefined);
  }
}
