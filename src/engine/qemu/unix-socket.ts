import { createConnection, type Socket } from "node:net";
import { SocketConnectError } from "./protocol-errors.js";

/** Linux sun_path is 108 bytes including the terminating NUL. */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107;
const RETRY_MS = 20;
const RETRYABLE = new Set(["ENOENT", "ECONNREFUSED"]);

export interface ConnectUnixOptions {
  /** Absolute deadline (performance.now() clock). */
  deadline: number;
  /** Builds the error thrown when the deadline passes before a connection. */
  onTimeout: () => Error;
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
  for (;;) {
    const remaining = options.deadline - performance.now();
    if (remaining <= 0) throw options.onTimeout();
    try {
      return await attempt(path, remaining, options.onTimeout);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === undefined || !RETRYABLE.has(code)) throw err;
    }
    const wait = Math.min(RETRY_MS, options.deadline - performance.now());
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

function attempt(path: string, remaining: number, onTimeout: () => Error): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = createConnection({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(onTimeout());
    }, remaining);
    const onError = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err.code !== undefined && RETRYABLE.has(err.code)) reject(err);
      else reject(new SocketConnectError(path, err));
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      resolve(socket);
    });
  });
}
