/**
 * Connected Unix stream sockets bound to a path, from /proc/net/unix (Linux):
 * a server's accepted connections carry its path with state 03 (connected),
 * its listening socket state 01. Lets a test see whether a client of QEMU's
 * chardev socket is connected without connecting to it itself.
 */
import { readFileSync } from "node:fs";

const CONNECTED = "03";

export function connectedAt(path: string): number {
  let n = 0;
  for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path
    if (f.length >= 8 && f[5] === CONNECTED && f.slice(7).join(" ") === path) n++;
  }
  return n;
}
