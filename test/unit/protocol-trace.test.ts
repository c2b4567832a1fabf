import { afterEach, describe, expect, it, vi } from "vitest";
import { redactAgentReply, redactQmp, setProtocolTrace, traceFor } from "../../src/engine/qemu/trace.js";
import { debugEnabled } from "../../src/engine/cli/main.js";

afterEach(() => setProtocolTrace(undefined));

describe("protocol tracing for debugging", () => {
  it("uses a client's own trace, else the process-wide one named by peer, else none", () => {
    const own = vi.fn();
    expect(traceFor("QMP", own)).toBe(own);
    expect(traceFor("QMP", undefined)).toBeUndefined();
    const all = vi.fn();
    setProtocolTrace(all);
    traceFor("guest agent", undefined)?.("recv", { return: 1 });
    expect(all).toHaveBeenCalledWith("guest agent", "recv", { return: 1 });
  });

  it("masks secret QMP arguments and human monitor command lines, and nothing else", () => {
    expect(
      redactQmp({ execute: "object-add", arguments: { "qom-type": "secret", id: "s", data: "pw" } }),
    ).toEqual({
      execute: "object-add",
      arguments: { "qom-type": "secret", id: "s", data: "<redacted>" },
    });
    expect(
      redactQmp({ execute: "set_password", arguments: { protocol: "vnc", password: "pw" } }),
    ).toMatchObject({
      arguments: { protocol: "vnc", password: "<redacted>" },
    });
    expect(
      redactQmp({
        execute: "blockdev-add",
        arguments: { driver: "luks", "key-secret": "sec0", file: { passphrase: "x" } },
      }),
    ).toMatchObject({ arguments: { "key-secret": "sec0", file: { passphrase: "<redacted>" } } });
    expect(
      redactQmp({ execute: "human-monitor-command", arguments: { "command-line": "info" } }),
    ).toMatchObject({
      arguments: { "command-line": "<redacted>" },
    });
    const plain = { execute: "migrate", arguments: { uri: "file:/x" }, id: "hx-1" };
    expect(redactQmp(plain)).toEqual(plain);
    expect(redactQmp({ event: "STOP", data: { a: 1 } })).toEqual({ event: "STOP", data: { a: 1 } });
  });

  it("replaces guest-exec output by its size", () => {
    expect(redactAgentReply({ return: { exited: true, "out-data": "c2VjcmV0", "err-data": "" } })).toEqual({
      return: { exited: true, "out-data": "<8 base64 characters>", "err-data": "<0 base64 characters>" },
    });
    expect(redactAgentReply({ return: { pid: 3 } })).toEqual({ return: { pid: 3 } });
  });

  it("is switched on by HEXCLAVE_EMULATOR_DEBUG=1/true/yes only", () => {
    for (const v of ["1", "true", "YES"]) expect(debugEnabled({ HEXCLAVE_EMULATOR_DEBUG: v })).toBe(true);
    for (const v of [undefined, "", "0", "no", "verbose"])
      expect(debugEnabled({ HEXCLAVE_EMULATOR_DEBUG: v })).toBe(false);
  });
});
