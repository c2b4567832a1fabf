/**
 * A TCP proxy in front of a server that can make its open connections go
 * silent without closing them (a half-open connection, as a dropped NAT
 * entry or a dead peer leaves one): `stall()` stops forwarding on every
 * connection open now; connections made after it flow as usual.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface StallProxy {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  stall(): void;
  close(): Promise<void>;
}

export async function startStallProxy(targetPort: number, host = "127.0.0.1"): Promise<StallProxy> {
  const open = new Set<{ client: Socket; upstream: Socket }>();
  const stalled = new Set<{ client: Socket; upstream: Socket }>();
  let accepted = 0;
  const server: Server = createServer((client) => {
    accepted += 1;
    const upstream = connect(targetPort, host);
    const pair = { client, upstream };
    open.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = () => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => accepted,
    stall: () => {
      for (const { client, upstream } of open) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
        stalled.add({ client, upstream });
      }
      open.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const { client, upstream } of [...open, ...stalled]) {
          client.destroy();
          upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
