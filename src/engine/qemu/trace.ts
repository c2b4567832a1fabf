/**
 * Protocol tracing for debugging (HEXCLAVE_EMULATOR_DEBUG=1 in the CLI): a
 * process-wide hook the QMP and guest agent clients report every message to
 * when they were not given a trace of their own. Whatever can carry a secret
 * is redacted before any hook sees it: guest-exec stdin and captured output,
 * and QMP arguments that hold passwords or secret objects' data.
 */
import { isJsonObject } from "./jsonl-transport.js";

export type TracePeer = "QMP" | "guest agent";
export type TraceDirection = "send" | "recv";
export type ProtocolTrace = (peer: TracePeer, direction: TraceDirection, message: unknown) => void;

let processTrace: ProtocolTrace | undefined;

/** Installs (or, with undefined, removes) the process-wide protocol trace. */
export function setProtocolTrace(trace: ProtocolTrace | undefined): void {
  processTrace = trace;
}

/** The trace a client uses: its own, else the process-wide one bound to its peer name. */
export function traceFor(
  peer: TracePeer,
  own: ((direction: TraceDirection, message: unknown) => void) | undefined,
): ((direction: TraceDirection, message: unknown) => void) | undefined {
  if (own) return own;
  if (!processTrace) return undefined;
  return (direction, message) => processTrace?.(peer, direction, message);
}

const REDACTED = "<redacted>";
const SECRET_KEY = /pass(word|phrase)|^secret$|^key$|^iv$/i;

function redactArgs(value: unknown, secretObject: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => redactArgs(v, secretObject));
  if (!isJsonObject(value)) return value;
  const isSecret =
    secretObject || (typeof value["qom-type"] === "string" && /secret/i.test(value["qom-type"]));
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [
      k,
      (isSecret && k === "data") || SECRET_KEY.test(k) ? REDACTED : redactArgs(v, isSecret),
    ]),
  );
}

/** A QMP message as it may be traced: secret arguments and human-monitor command lines masked. */
export function redactQmp(message: unknown): unknown {
  if (!isJsonObject(message) || !isJsonObject(message.arguments)) return message;
  const args =
    message.execute === "human-monitor-command"
      ? { ...message.arguments, "command-line": REDACTED }
      : redactArgs(message.arguments, false);
  return { ...message, arguments: args };
}

/** A guest agent reply as it may be traced: guest-exec output is replaced by its size. */
export function redactAgentReply(message: unknown): unknown {
  if (!isJsonObject(message) || !isJsonObject(message.return)) return message;
  const r = message.return;
  if (!("out-data" in r) && !("err-data" in r)) return message;
  const size = (v: unknown) => (typeof v === "string" ? `<${v.length} base64 characters>` : v);
  const masked: Record<string, unknown> = { ...r };
  if ("out-data" in r) masked["out-data"] = size(r["out-data"]);
  if ("err-data" in r) masked["err-data"] = size(r["err-data"]);
  return { ...message, return: masked };
}
