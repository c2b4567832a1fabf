import { z } from "zod";
import { isJsonObject } from "./jsonl-transport.js";
import { ProtocolError } from "./protocol-errors.js";

/** Types and zod schemas (used fields only) of the guest agent commands the engine runs. */

export type ShutdownMode = "powerdown" | "halt" | "reboot";

export interface ExecOptions {
  /** Written to the process's stdin (then closed). Never logged. */
  input?: Buffer | string;
  /** The process's whole environment (the agent does not merge it with its own). */
  env?: Record<string, string> | readonly string[];
  /** Deadline for start + wait together. */
  timeoutMs?: number;
}

export interface ExecResult {
  /** null when the process was killed by a signal. */
  exitCode: number | null;
  signal?: number;
  stdout: Buffer;
  stderr: Buffer;
  /** The agent cut stdout or stderr short (its capture limit is 16 MiB). */
  truncated: boolean;
}

export interface GuestAgentInfo {
  version: string;
  commands: { name: string; enabled: boolean }[];
}

export const errorSchema = z.object({ class: z.string(), desc: z.string() });

export const infoSchema = z.object({
  version: z.string(),
  supported_commands: z.array(z.object({ name: z.string(), enabled: z.boolean() })),
});

export const execStartSchema = z.object({ pid: z.number().int() });

export const execStatusSchema = z.object({
  exited: z.boolean(),
  exitcode: z.number().int().optional(),
  signal: z.number().int().optional(),
  "out-data": z.string().optional(),
  "err-data": z.string().optional(),
  "out-truncated": z.boolean().optional(),
  "err-truncated": z.boolean().optional(),
});

export function toExecResult(st: z.infer<typeof execStatusSchema>): ExecResult {
  const result: ExecResult = {
    exitCode: st.exitcode ?? null,
    stdout: Buffer.from(st["out-data"] ?? "", "base64"),
    stderr: Buffer.from(st["err-data"] ?? "", "base64"),
    truncated: Boolean(st["out-truncated"] || st["err-truncated"]),
  };
  if (st.signal !== undefined) result.signal = st.signal;
  return result;
}

/** A copy of a request safe to log: `input-data` (stdin of guest-exec, may carry secrets) is replaced. */
export function redact(message: { execute: string; arguments?: Record<string, unknown> }): unknown {
  const args = message.arguments;
  if (!isJsonObject(args) || !("input-data" in args)) return message;
  return { ...message, arguments: { ...args, "input-data": "<redacted>" } };
}

/** Validates the used fields of a reply; a mismatch is a ProtocolError (the connection stays up). */
export function parseReply<S extends z.ZodType>(command: string, schema: S, value: unknown): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new ProtocolError(`unexpected reply to guest agent ${command}: ${z.prettifyError(r.error)}`);
}
