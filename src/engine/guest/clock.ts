/**
 * The guest's clock after a resume: it stands where it stood at capture time,
 * behind by the snapshot's age. Setting it is not in the guest contract
 * (qemu-ga's guest-set-time needs /sbin/hwclock in the guest; the seed never
 * sets it), so every way here is optional: a resumed guest with a stale clock
 * is better than a cold boot. Only a silent agent is fatal, since the agent
 * is the contract's.
 */
import type { GuestAgent } from "../qemu/qga.js";
import { GuestAgentCommandError } from "../qemu/protocol-errors.js";
import { describeError } from "../errors.js";

export type ClockSync = { method: "guest-set-time" | "date" } | { method: "none"; reason: string };

export async function syncGuestClock(
  agent: Pick<GuestAgent, "setTime" | "exec">,
  now: () => number = Date.now,
  timeoutMs = 10_000,
): Promise<ClockSync> {
  try {
    // No time given: the guest sets itself from its RTC, which QEMU keeps at host time.
    await agent.setTime(undefined, { timeoutMs });
    return { method: "guest-set-time" };
  } catch (err) {
    // "unsupported", CommandNotFound, a disabled command: fall through; a
    // timeout or a closed channel is the agent failing, and that is fatal.
    if (!(err instanceof GuestAgentCommandError)) throw err;
    const first = `guest-set-time: ${err.desc}`;
    try {
      const r = await agent.exec("date", ["-u", "-s", `@${Math.floor(now() / 1000)}`], { timeoutMs });
      if (r.exitCode === 0) return { method: "date" };
      return {
        method: "none",
        reason: `${first}; date -s exited ${r.exitCode}: ${r.stderr.toString().trim()}`,
      };
    } catch (err2) {
      if (!(err2 instanceof GuestAgentCommandError)) throw err2;
      return { method: "none", reason: `${first}; date: ${describeError(err2)}` };
    }
  }
}
