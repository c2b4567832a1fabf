/**
 * The command on QEMU installs other than ours: a QEMU_BINARY wrapper with
 * no qemu-img beside it, an image that is not a qcow2; and nothing stale
 * left in the run directory after a capture. Real QEMU 7.2, the test guest.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { main } from "../../src/engine/cli/main.js";
import { testGuestImage } from "../support/tools.js";

/** Host ports 27830-27834. */
const PORT = 27830;

function output() {
  const lines: string[] = [];
  vi.spyOn(console, "log").mockImplementation((s: string) => void lines.push(String(s)));
  vi.spyOn(console, "error").mockImplementation((s: string) => void lines.push(String(s)));
  return lines;
}

describe("the command on another QEMU layout", () => {
  const home = mkdtempSync(join(tmpdir(), "hxe-layout-"));
  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HEXCLAVE_EMULATOR_HOME: join(home, "emulator"),
    EMULATOR_RAM: "512",
    EMULATOR_CPUS: "1",
    EMULATOR_DASHBOARD_PORT: String(PORT),
    EMULATOR_BACKEND_PORT: String(PORT + 1),
    EMULATOR_MINIO_PORT: String(PORT + 2),
    EMULATOR_INBUCKET_PORT: String(PORT + 3),
    EMULATOR_MOCK_OAUTH_PORT: String(PORT + 4),
    HEXCLAVE_EMULATOR_HOST_SHARE: "none",
    ...extra,
  });
  afterEach(() => vi.restoreAllMocks());
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("refuses an image that is not a qcow2 before launching anything, with one error", async () => {
    const lines = output();
    expect(await main(["start", "--image", "/etc/passwd"], env())).toBe(1);
    const text = lines.join("\n");
    expect(text).toContain("the image /etc/passwd is not a qcow2 file");
    expect(text).toContain("qemu-img convert -O qcow2");
    expect(text).not.toMatch(/capture|cold boot|QEMU.*exited/i);
    const run = join(home, "emulator", "run");
    expect(existsSync(join(run, "qemu.log"))).toBe(false);
  });

  it("captures through a QEMU_BINARY wrapper with qemu-img only on PATH, and leaves no pid file or socket", async () => {
    const wrapperDir = join(home, "wrapper");
    mkdirSync(wrapperDir);
    const wrapper = join(wrapperDir, "qemu10");
    writeFileSync(wrapper, '#!/bin/sh\nexec /usr/bin/qemu-system-x86_64 "$@"\n');
    chmodSync(wrapper, 0o755);
    const lines = output();
    const code = await main(["capture", "--image", testGuestImage()], env({ QEMU_BINARY: wrapper }));
    expect(code, lines.join("\n")).toBe(0);
    const run = join(home, "emulator", "run");
    const left = readdirSync(run);
    expect(left).not.toContain("qemu.pid");
    expect(left.filter((f) => f.endsWith(".sock"))).toEqual([]);
  });
});
