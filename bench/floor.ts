/**
 * The floor: how long the same QEMU binary takes from launch to its QMP
 * greeting. QEMU connects to a socket the bench listens on (`server=off`),
 * so the greeting is seen the moment it is written, with no connect polling.
 * Two argvs: the bare binary (`-machine none`, what the target is
 * measured against) and, in direct.ts, the full resume argv.
 */
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { escapeOpt } from "../src/engine/qemu/argv.js";
import { now, repeat, summarize, type Summary } from "./stats.js";

const GREETING_TIMEOUT_MS = 60_000;

/** The argv of the bare floor: no machine, no devices, one QMP monitor. */
export function bareArgv(): string[] {
  return ["-machine", "none", "-nodefaults", "-no-user-config", "-display", "none"];
}

/** Replaces argv's QMP chardev (server=on) by a client one to `sock`, or appends one. */
export function withClientQmp(argv: readonly string[], sock: string): string[] {
  const out = [...argv];
  const spec = `socket,id=qmp,path=${escapeOpt(sock)},server=off`;
  const i = out.findIndex((a, k) => out[k - 1] === "-chardev" && a.startsWith("socket,id=qmp,"));
  if (i >= 0) out[i] = spec;
  else out.push("-chardev", spec, "-mon", "chardev=qmp,mode=control");
  return out;
}

/** Launches `binary argv` (whose QMP must be `withClientQmp(…, sock)`) and times launch → greeting. */
export async function launchToGreeting(
  binary: string,
  argv: readonly string[],
  sock: string,
): Promise<number> {
  rmSync(sock, { force: true });
  let peer: Socket | undefined;
  const server = createServer();
  const greeted = new Promise<number>((resolve, reject) => {
    server.on("connection", (s) => {
      peer = s;
      let buf = "";
      s.on("data", (d: Buffer) => {
        buf += d.toString("utf8");
        if (buf.includes("\n") && buf.includes('"QMP"')) resolve(now());
      });
    });
    server.on("error", reject);
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  const t0 = now();
  const child = spawn(binary, argv, { stdio: "ignore" });
  const exited = new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("exit", (code, sig) => reject(new Error(`QEMU exited before greeting (${sig ?? code})`)));
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no QMP greeting")), GREETING_TIMEOUT_MS);
  });
  try {
    const t1 = await Promise.race([greeted, exited, timeout]);
    return t1 - t0;
  } finally {
    clearTimeout(timer);
    child.kill("SIGKILL");
    await new Promise<void>((resolve) =>
      child.exitCode !== null ? resolve() : child.once("exit", () => resolve()),
    );
    peer?.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(sock, { force: true });
  }
}

/** The bare floor, `runs` times. */
export async function bareFloor(binary: string, dir: string, runs: number): Promise<Summary> {
  const sock = join(dir, "floor.sock");
  // One unmeasured launch: the first one pays for loading the binary from disk.
  await launchToGreeting(binary, withClientQmp(bareArgv(), sock), sock);
  const ms = await repeat(runs, () => launchToGreeting(binary, withClientQmp(bareArgv(), sock), sock));
  return summarize(ms);
}
