import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { probeQemu } from "../../src/engine/host/probe.js";

/** A fake QEMU: a shell script whose body decides per argv. */
function fakeQemu(body: string): { binary: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "hxe-fake-qemu-"));
  const binary = join(dir, "qemu-system-x86_64");
  writeFileSync(binary, `#!/bin/sh\n${body}\n`);
  chmodSync(binary, 0o755);
  return { binary, dir };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("probing a QEMU that fails", () => {
  it("names the exit of the live QEMU, not the -accel help that failed beside it", async () => {
    const { binary, dir } = fakeQemu(
      'if [ "$1" = --version ]; then echo "QEMU emulator version 9.9.9"; exit 0; fi\necho "fake: refusing $1" >&2\nexit 1',
    );
    await expect(probeQemu(binary, { cacheDir: join(dir, "cache"), tryKvm: false })).rejects.toMatchObject({
      code: "QEMU_PROBE_FAILED",
      message: `${binary} exited while being probed: fake: refusing -machine`,
    });
  });

  it("reports a failing --version and kills the live QEMU started beside it", async () => {
    // --version fails late enough for the live QEMU (a sleep here) to have written its pid.
    const { binary, dir } = fakeQemu(
      [
        'if [ "$1" = --version ]; then sleep 0.3; echo "fake: no version" >&2; exit 3; fi',
        'if [ "$1" = -machine ]; then echo $$ > "$(dirname "$0")/live.pid"; exec sleep 60; fi',
        "exit 0",
      ].join("\n"),
    );
    await expect(probeQemu(binary, { cacheDir: join(dir, "cache"), tryKvm: false })).rejects.toMatchObject({
      code: "COMMAND_FAILED",
      message: `${binary} --version failed (exit 3): fake: no version`,
    });
    const pidFile = join(dir, "live.pid");
    expect(existsSync(pidFile)).toBe(true);
    expect(alive(Number(readFileSync(pidFile, "utf8").trim()))).toBe(false);
  });
});
