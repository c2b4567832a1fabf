/**
 * Who listens on a TCP port: the listening socket's inode from
 * /proc/net/tcp{,6}, then the process whose fd links to `socket:[inode]`.
 * Best effort and Linux only: undefined when it cannot be told (another
 * network namespace, no /proc, a process we may not inspect).
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

export interface PortOwner {
  pid?: number | undefined;
  command?: string | undefined;
}

const LISTEN = "0A";

/** Inodes of sockets listening on `port` (any address), from /proc/net/tcp and tcp6. */
export function listeningInodes(port: number, procRoot = "/proc"): Set<string> {
  const inodes = new Set<string>();
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = readFileSync(`${procRoot}/net/${table}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== LISTEN) continue;
      const local = f[1] ?? "";
      const p = Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      if (p === port && f[9] !== "0") inodes.add(f[9] as string);
    }
  }
  return inodes;
}

/** The process holding a listening socket on `port`, when it can be found. */
export function findPortOwner(port: number, procRoot = "/proc"): PortOwner | undefined {
  const inodes = listeningInodes(port, procRoot);
  if (inodes.size === 0) return undefined;
  const wanted = new Set([...inodes].map((i) => `socket:[${i}]`));
  let pids: string[];
  try {
    pids = readdirSync(procRoot).filter((d) => /^\d+$/.test(d));
  } catch {
    return {};
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`${procRoot}/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`${procRoot}/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!wanted.has(target)) continue;
      let command: string | undefined;
      try {
        command = readFileSync(`${procRoot}/${pid}/comm`, "utf8").trim();
      } catch {
        command = undefined;
      }
      return { pid: Number(pid), command };
    }
  }
  return {}; // listening, but by a process this user cannot see
}

/** "pid 1234 (python3)", "a process this user cannot inspect", or undefined. */
export function describePortOwner(port: number): string | undefined {
  const owner = findPortOwner(port);
  if (!owner) return undefined;
  if (owner.pid === undefined) return "a process this user cannot inspect";
  return `pid ${owner.pid}${owner.command ? ` (${owner.command})` : ""}`;
}
