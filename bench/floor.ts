/**
 * The floor: how long the same QEMU binary takes from launch to its QMP
 * greeting, with QMP as the engine runs it (a unix socket server) and a
 * client that connects the moment the socket accepts. Two argvs: the bare
 * binary (`-machine none`) and, in overhead.ts and ram-scaling.ts, the full
 * resume argv.
 *
 * Two instants are taken. The greeting is written by QEMU's monitor I/O
 * thread, so it arrives while the main thread is still building the machine:
 * it is the literal floor of the issue, but no command can run yet. The
 * reply to `qmp_capabilities` comes from the main loop, after machine init:
 * "ready", the real lower bound of any engine (nothing can be migrated
 * before it).
 */
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import { escapeOpt } from "../src/engine/index.js";
import { now, repeat, summarize, type Summary } from "./stats.js";

const TIMEOUT_MS = 60_000;

export interface LaunchTimes {
  /** Launch → QMP greeting. */
  greetingMs: number;
  /** Launch → reply to qmp_capabilities (the main loop runs). */
  readyMs: number;
}

export interface FloorFigures {
  greetingMs: Summary;
  readyMs: Summary;
}

/** The argv of the bare floor: no machine, no devices, one QMP monitor. */
export function bareArgv(): string[] {
  return ["-machine", "none", "-nodefaults", "-no-user-config", "-display", "none"];
}

/** Points argv's QMP chardev at `sock` as a server (as the engine runs it), or appends one. */
export function withQmpAt(argv: readonly string[], sock: string): string[] {
  const out = [...argv];
  const spec = `socket,id=qmp,path=${escapeOpt(sock)},server=on,wait=off`;
  const i = out.findIndex((a, k) => out[k - 1] === "-chardev" && a.startsWith("socket,id=qmp,"));
  if (i >= 0) out[i] = spec;
  else out.push("-chardev", spec, "-mon", "chardev=qmp,mode=control");
  return out;
}

interface Peer {
  socket?: Socket;
  /** Set when the launch is over: stops the connect retries. */
  done?: boolean;
}

/**
 * Connects to `sock` as soon as it accepts (retrying every millisecond),
 * notes the greeting, sends qmp_capabilities and notes its reply.
 */
function talk(sock: string, deadline: number, peer: Peer): Promise<{ greeting: number; ready: number }> {
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      if (peer.done) return;
      if (now() > deadline) return reject(new Error("no QMP greeting"));
      const s = createConnection({ path: sock });
      s.once("error", () => {
        s.destroy();
        setTimeout(attempt, 1);
      });
      s.once("connect", () => {
        peer.socket = s;
        let buf = "";
        let greeting: number | undefined;
        s.on("data", (d: Buffer) => {
          buf += d.toString("utf8");
          if (greeting === undefined && buf.includes("\n") && buf.includes('"QMP"')) {
            greeting = now();
            buf = buf.slice(buf.indexOf("\n") + 1);
            s.write('{"execute":"qmp_capabilities"}\n');
          }
          if (greeting !== undefined && buf.includes('"return"')) resolve({ greeting, ready: now() });
        });
        s.on("error", () => undefined);
      });
    };
    attempt();
  });
}

/** Launches `binary argv` (whose QMP must be `withQmpAt(…, sock)`), times it, kills it. */
export async function launchTimes(
  binary: string,
  argv: readonly string[],
  sock: string,
): Promise<LaunchTimes> {
  rmSync(sock, { force: true });
  const peer: Peer = {};
  const t0 = now();
  const child = spawn(binary, argv, { stdio: "ignore" });
  const exited = new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("exit", (code, sig) =>
      reject(new Error(`QEMU exited before its QMP answered (${sig ?? code})`)),
    );
  });
  try {
    const t = await Promise.race([talk(sock, t0 + TIMEOUT_MS, peer), exited]);
    return { greetingMs: t.greeting - t0, readyMs: t.ready - t0 };
  } finally {
    peer.done = true;
    child.kill("SIGKILL");
    await new Promise<void>((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve() : child.once("exit", () => resolve()),
    );
    peer.socket?.destroy();
    rmSync(sock, { force: true });
  }
}

export function summarizeLaunches(launches: readonly LaunchTimes[]): FloorFigures {
  return {
    greetingMs: summarize(launches.map((l) => l.greetingMs)),
    readyMs: summarize(launches.map((l) => l.readyMs)),
  };
}

/** The bare floor, `runs` times. */
export async function bareFloor(binary: string, dir: string, runs: number): Promise<FloorFigures> {
  const sock = join(dir, "floor.sock");
  const argv = withQmpAt(bareArgv(), sock);
  // One unmeasured launch: the first one pays for loading the binary from disk.
  await launchTimes(binary, argv, sock);
  return summarizeLaunches(await repeat(runs, () => launchTimes(binary, argv, sock)));
}
