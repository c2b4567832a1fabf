import { describe, expect, it } from "vitest";
import { syncGuestClock } from "../../src/engine/guest/clock.js";
import { mountHostShare, MOUNT_HOST_FS, waitForVirtioDriver } from "../../src/engine/guest/host-share.js";
import {
  GuestAgentCommandError,
  GuestAgentTimeoutError,
  QmpCommandError,
} from "../../src/engine/qemu/protocol-errors.js";
import { Phases, type EngineEvent } from "../../src/engine/lifecycle/events.js";
import type { ExecResult } from "../../src/engine/qemu/qga-types.js";

const ok = (stdout = ""): ExecResult => ({
  exitCode: 0,
  stdout: Buffer.from(stdout),
  stderr: Buffer.alloc(0),
  truncated: false,
});
const fail = (code: number, stderr: string): ExecResult => ({
  exitCode: code,
  stdout: Buffer.alloc(0),
  stderr: Buffer.from(stderr),
  truncated: false,
});
const unsupported = () =>
  new GuestAgentCommandError(
    "guest-set-time",
    "GenericError",
    "this feature or command is not currently supported",
  );

type Exec = (path: string, args?: readonly string[]) => Promise<ExecResult>;
function agent(setTime: () => Promise<void>, exec: Exec) {
  const calls: string[][] = [];
  return {
    calls,
    setTime: () => setTime(),
    exec: (path: string, args: readonly string[] = []) => {
      calls.push([path, ...args]);
      return exec(path, args);
    },
  };
}

describe("setting the guest clock after a resume (beyond the contract)", () => {
  it("uses guest-set-time when the agent supports it", async () => {
    const a = agent(
      async () => undefined,
      () => Promise.reject(new Error("no exec expected")),
    );
    expect(await syncGuestClock(a)).toEqual({ method: "guest-set-time" });
    expect(a.calls).toEqual([]);
  });

  it("falls back to date -s @now when guest-set-time is unsupported (no /sbin/hwclock)", async () => {
    const a = agent(
      () => Promise.reject(unsupported()),
      async () => ok(),
    );
    expect(await syncGuestClock(a, () => 1_700_000_000_999)).toEqual({ method: "date" });
    expect(a.calls).toEqual([["date", "-u", "-s", "@1700000000"]]);
  });

  it("skips with both reasons when no way to set the clock works", async () => {
    const a = agent(
      () => Promise.reject(unsupported()),
      async () => fail(1, "date: cannot set date: Operation not permitted"),
    );
    const r = await syncGuestClock(a);
    expect(r.method).toBe("none");
    expect(r).toMatchObject({ reason: expect.stringContaining("not currently supported") });
    expect(r).toMatchObject({ reason: expect.stringContaining("Operation not permitted") });
  });

  it("skips when the guest has no date command either", async () => {
    const noDate = new GuestAgentCommandError(
      "guest-exec",
      "GenericError",
      "Failed to execute child process “date”",
    );
    const a = agent(
      () => Promise.reject(unsupported()),
      () => Promise.reject(noDate),
    );
    expect(await syncGuestClock(a)).toMatchObject({
      method: "none",
      reason: expect.stringContaining("date"),
    });
  });

  it("fails when the agent itself is silent: the agent is the contract's", async () => {
    const a = agent(
      () => Promise.reject(new GuestAgentTimeoutError("guest agent guest-set-time", 10_000)),
      async () => ok(),
    );
    await expect(syncGuestClock(a)).rejects.toBeInstanceOf(GuestAgentTimeoutError);
  });
});

/** A clock that only moves when the code under test pauses. */
function fakeTime() {
  let t = 0;
  return { now: () => t, pause: async (ms: number) => void (t += ms) };
}

describe("mounting the host share after a resume", () => {
  it("mounts at /host<path> when the image offers the --path extension", async () => {
    const a = agent(
      async () => undefined,
      async () => ok(),
    );
    expect(await mountHostShare(a, "/work/repo", fakeTime())).toEqual({ guestPath: "/host/work/repo" });
    expect(a.calls).toEqual([[MOUNT_HOST_FS, "--post-resume", "--path", "/work/repo"]]);
  });

  it("degrades to the contract's /host, with the reason, when --path is refused", async () => {
    const a = agent(
      async () => undefined,
      async (_p, args) => (args?.includes("--path") ? fail(2, "unknown option --path") : ok()),
    );
    const r = await mountHostShare(a, "/work/repo", fakeTime());
    expect(r.guestPath).toBe("/host");
    expect(r.degraded).toMatch(
      /--path is not supported.*unknown option --path.*\/host, not \/host\/work\/repo/,
    );
  });

  it("retries until the hot-plugged device is bound, then mounts at /host<path>", async () => {
    let tries = 0;
    const a = agent(
      async () => undefined,
      async (_p, args) => {
        if (args?.includes("--path")) tries++;
        return tries >= 3 ? ok() : fail(1, "post-resume 9p mount failed");
      },
    );
    expect(await mountHostShare(a, "/w", fakeTime())).toEqual({ guestPath: "/host/w" });
    expect(tries).toBe(3);
  });

  it("uses only the contract's form when the whole host file system is shared", async () => {
    const a = agent(
      async () => undefined,
      async () => ok(),
    );
    expect(await mountHostShare(a, "/", fakeTime())).toEqual({ guestPath: "/host" });
    expect(a.calls).toEqual([[MOUNT_HOST_FS, "--post-resume"]]);
  });

  it("fails with HOST_SHARE_FAILED when the contract's mount never works", async () => {
    const a = agent(
      async () => undefined,
      async () => fail(1, "post-resume 9p mount failed"),
    );
    await expect(mountHostShare(a, "/w", fakeTime(), 1_000)).rejects.toMatchObject({
      code: "HOST_SHARE_FAILED",
      message: expect.stringContaining("post-resume 9p mount failed"),
    });
  });
});

describe("waiting for the guest's driver to bind the hot-plugged device", () => {
  const status = (...statuses: string[]) => ({ status: { statuses } });

  it("is bound once QEMU reports DRIVER_OK", async () => {
    const answers = [
      status(),
      status("VIRTIO_CONFIG_S_ACKNOWLEDGE"),
      status("VIRTIO_CONFIG_S_DRIVER_OK: ready"),
    ];
    const paths: unknown[] = [];
    const qmp = {
      execute: async (_c: string, a?: Record<string, unknown>) => (paths.push(a?.path), answers.shift()),
    };
    expect(await waitForVirtioDriver(qmp, "hostfs-dev", fakeTime())).toBe("bound");
    expect(paths).toEqual(Array(3).fill("/machine/peripheral/hostfs-dev/virtio-backend"));
  });

  it("is unknown on a QEMU without x-query-virtio-status", async () => {
    const qmp = {
      execute: () => Promise.reject(new QmpCommandError("x-query-virtio-status", "CommandNotFound", "no")),
    };
    expect(await waitForVirtioDriver(qmp, "hostfs-dev", fakeTime())).toBe("unknown");
  });

  it("with the driver bound, one refused --path is enough to fall back to /host", async () => {
    const a = agent(
      async () => undefined,
      async (_p, args) => (args?.includes("--path") ? fail(2, "unknown option --path") : ok()),
    );
    const r = await mountHostShare(a, "/w", fakeTime(), 20_000, "bound");
    expect(r.guestPath).toBe("/host");
    expect(a.calls).toHaveLength(2);
  });
});

describe("skipped optional steps", () => {
  it("are recorded with their reason and warned about", () => {
    const events: EngineEvent[] = [];
    const phases = new Phases((e) => events.push(e));
    phases.skip("clock", "the guest clock was not set (no hwclock)");
    expect(phases.skipped).toEqual([{ step: "clock", reason: "the guest clock was not set (no hwclock)" }]);
    expect(events).toEqual([{ kind: "warn", message: "clock: the guest clock was not set (no hwclock)" }]);
  });
});
