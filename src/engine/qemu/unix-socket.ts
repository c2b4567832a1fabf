import { createConnection, type Socket } from "node:net";
import { realClock, sleep, type Clock } from "./clock.js";
import { SocketConnectError } from "./protocol-errors.js";

/** Linux sun_path is 108 bytes including the terminating NUL. */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107;
const RETRY_MS = 20;
const RETRYABLE = new Set(["ENOENT", "ECONNREFUSED"]);

export interface ConnectUnixOptions {
  /** Absolute deadline, on `clock`. */
  deadline: number;
  /** Builds the error thrown when the deadline passes before a connection. */
  onTimeout: () => Error;
  /** Default: the real clock. */
  clock?: Clock;
}

/**
 * Connects to a unix socket that QEMU may not have created yet: ENOENT and
 * ECONNREFUSED are retried every few tens of ms until the deadline; any other
 * error fails at once.
 */
export async function connectUnixSocket(path: string, options: ConnectUnixOptions): Promise<Socket> {
  if (Buffer.byteLength(path) > MAX_UNIX_SOCKET_PATH_BYTES) {
    throw new SocketConnectError(
      path,
      new Error(`path is ${Buffer.byteLength(path)} bytes, the limit is ${MAX_UNIX_SOCKET_PATH_BYTES}`),
      "use a shorter directory for the sockets (e.g. under /tmp)",
    );
  }
  const clock = options.clock ?? realClock;
  for (;;) {
    const remaining = options.deadline - clock.now();
    if (remaining <= 0) throw options.onTimeout();
    try {
      return await attempt(path, remaining, options.onTimeout, clock);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === undefined || !RETRYABLE.has(code)) throw err;
    }
    const wait = Math.min(RETRY_MS, options.deadline - clock.now());
    if (wait > 0) await sleep(clock, wait);
  }
}

function attempt(path: string, remaining: number, onTimeout: () => Error, clock: Clock): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = createConnection({ path });
    const cancelTimer = clock.after(remaining, () => {
      socket.destroy();
      reject(onTimeout());
    });
    const onError = (err: NodeJS.ErrnoException): void => {
      cancelTimer();
      socket.destroy();
      if (err.code !== undefined && RETRYABLE.has(err.code)) reject(err);
      else reject(new SocketConnectError(path, err));
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      cancelTimer();
      socket.off("error", onError);
      resolve(socket);
    });
  });
}
