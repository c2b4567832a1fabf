import { describe, expect, it } from "vitest";
import { ERROR_CODES, EngineError, TimeoutError } from "../../src/engine/errors.js";
import { HealthTimeoutError } from "../../src/engine/guest/health.js";
import { GuestAgentTimeoutError, QmpTimeoutError } from "../../src/engine/qemu/protocol-errors.js";

describe("engine errors", () => {
  it("come from a closed set of codes, each listed once", () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    expect([...ERROR_CODES].sort()).toEqual([...ERROR_CODES]);
  });

  it("are recognised as timeouts by type, whatever the code", () => {
    const timeouts = [
      new TimeoutError("x", 5),
      new TimeoutError("MIGRATION_TIMEOUT", "capture migration did not complete"),
      new QmpTimeoutError("QMP query-status", 5),
      new GuestAgentTimeoutError("guest-ping", 5),
      new HealthTimeoutError(1000, [], 5),
    ];
    for (const e of timeouts) expect(e).toBeInstanceOf(TimeoutError);
    expect(new EngineError("QEMU_EXITED", "gone")).not.toBeInstanceOf(TimeoutError);
  });

  it("keep the code, message and hint of the long form", () => {
    const e = new TimeoutError("QEMU_QUIT_TIMEOUT", "QEMU did not exit", { hint: "kill it" });
    expect([e.code, e.message, e.hint]).toEqual(["QEMU_QUIT_TIMEOUT", "QEMU did not exit", "kill it"]);
    expect(new TimeoutError("the boot", 2000, "wait longer").describe()).toBe(
      "the boot did not finish within 2000 ms (hint: wait longer)",
    );
  });
});
