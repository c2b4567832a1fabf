/** What the post step prints when the job or the emulator failed: service status and log tails. */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { runPaths, type EmulatorConfig, type StatusReport } from "../engine/index.js";

/** The last `lines` lines of a file (reading at most its last 256 KiB), or a note that it is missing. */
export function tail(path: string, lines: number): string {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return `(${path} does not exist)`;
  }
  try {
    const size = fstatSync(fd).size;
    const want = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(want);
    readSync(fd, buf, 0, want, size - want);
    const text = buf.toString("utf8").replace(/\r/g, "");
    const all = text.split("\n");
    if (all.at(-1) === "") all.pop();
    const shown = all.slice(-lines);
    return shown.length > 0 ? shown.join("\n") : `(${path} is empty)`;
  } finally {
    closeSync(fd);
  }
}

export function diagnostics(config: EmulatorConfig, report: StatusReport | undefined): string {
  const paths = runPaths(config.runDir);
  return [
    report ? report.human : "(status unavailable)",
    "",
    `--- last 100 lines of ${paths.serialLog} (the guest's console) ---`,
    tail(paths.serialLog, 100),
    "",
    `--- last 30 lines of ${paths.qemuLog} (QEMU's own output) ---`,
    tail(paths.qemuLog, 30),
  ].join("\n");
}
