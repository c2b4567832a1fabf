import { realClock, sleep, type Clock } from "./clock.js";
import { GuestAgentTimeoutError } from "./protocol-errors.js";
import {
  execStatusSchema,
  parseReply,
  toExecResult,
  type ExecOptions,
  type ExecResult,
} from "./qga-types.js";

/** guest-exec-status is polled this often: the agent offers no exit event. */
export const EXEC_POLL_MS = 25;

type Call = (
  command: string,
  args: Record<string, unknown>,
  options: { timeoutMs: number },
) => Promise<unknown>;

/** The arguments of guest-exec: output captured, stdin as base64. */
export function execArguments(
  path: string,
  args: readonly string[],
  options: ExecOptions,
): Record<string, unknown> {
  const a: Record<string, unknown> = { path, arg: args, "capture-output": true };
  const env = options.env;
  if (env !== undefined) {
    a.env = Array.isArray(env) ? env : Object.entries(env).map(([k, v]) => `${k}=${v}`);
  }
  if (options.input !== undefined) a["input-data"] = Buffer.from(options.input).toString("base64");
  return a;
}

/** Polls guest-exec-status for `pid` until it exits or `deadline` (on `clock`) passes. */
export async function pollExec(
  call: Call,
  pid: number,
  deadline: number,
  ms: number,
  what: string,
  clock: Clock = realClock,
): Promise<ExecResult> {
  const timeout = () =>
    new GuestAgentTimeoutError(`${what} (pid ${pid})`, ms, "the process may still be running in the guest");
  for (;;) {
    const remaining = deadline - clock.now();
    if (remaining <= 0) throw timeout();
    let status: unknown;
    try {
      status = await call("guest-exec-status", { pid }, { timeoutMs: remaining });
    } catch (err) {
      throw err instanceof GuestAgentTimeoutError ? timeout() : err;
    }
    const st = parseReply("guest-exec-status", execStatusSchema, status);
    if (st.exited) return toExecResult(st);
    const pause = Math.min(EXEC_POLL_MS, deadline - clock.now());
    if (pause > 0) await sleep(clock, pause);
  }
}
