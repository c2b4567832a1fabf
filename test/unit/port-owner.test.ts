import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findPortOwner, listeningInodes } from "../../src/engine/host/port-owner.js";
import { PortInUseError } from "../../src/engine/lifecycle/launch.js";

const fake = mkdtempSync(join(tmpdir(), "hxe-proc-"));
afterAll(() => rmSync(fake, { recursive: true, force: true }));

const HEADER =
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

describe("who holds a port", () => {
  it("reads listening sockets from /proc/net/tcp and tcp6, ignoring other states and ports", () => {
    mkdirSync(join(fake, "net"));
    writeFileSync(
      join(fake, "net", "tcp"),
      HEADER +
        "   0: 0100007F:6B6C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n" +
        "   1: 0100007F:6B6C 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n" +
        "   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n",
    );
    writeFileSync(
      join(fake, "net", "tcp6"),
      HEADER +
        "   0: 00000000000000000000000001000000:6B6C 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0\n",
    );
    expect(listeningInodes(0x6b6c, fake)).toEqual(new Set(["111", "444"]));
    mkdirSync(join(fake, "4242", "fd"), { recursive: true });
    writeFileSync(join(fake, "4242", "comm"), "python3\n");
    symlinkSync("socket:[444]", join(fake, "4242", "fd", "7"));
    expect(findPortOwner(0x6b6c, fake)).toEqual({ pid: 4242, command: "python3" });
    expect(findPortOwner(0x16, fake)).toEqual({}); // listening, owner not visible
    expect(findPortOwner(1, fake)).toBeUndefined();
  });

  it("finds this process holding a real port, and names it in PortInUseError", async () => {
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
    const port = (srv.address() as { port: number }).port;
    try {
      expect(findPortOwner(port)?.pid).toBe(process.pid);
      const err = new PortInUseError(port, "127.0.0.1");
      expect(err.code).toBe("PORT_IN_USE");
      expect(err.message).toMatch(
        new RegExp(`^host port 127\\.0\\.0\\.1:${port} is already in use by pid ${process.pid} \\(`),
      );
      expect(err.hint).toContain(`port ${port}`);
      expect(new PortInUseError(port, "::1").message).toContain(`[::1]:${port}`);
    } finally {
      srv.close();
    }
  });
});
