import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { MessageTooLargeError, ProtocolError } from "./protocol-errors.js";

/**
 * Why a transport closed: close() here; the peer went away (EOF, or a reset
 * or broken pipe, kept as `error`); or an error (socket or protocol).
 */
export type CloseReason = { by: "local" } | { by: "peer"; error?: Error } | { by: "error"; error: Error };

/** Errors that only mean the peer is gone (QEMU exited with data in flight). */
const PEER_GONE = new Set(["ECONNRESET", "EPIPE"]);

export interface JsonlTransportOptions {
  /** Names the peer in error messages ("QMP", "guest agent"). */
  peer: string;
  /** Largest accepted message in bytes (default 16 MiB); larger fails the connection. */
  maxMessageBytes?: number;
  /**
   * A byte that resets line assembly wherever it appears (the guest agent's
   * 0xFF delimiter). Without it every byte belongs to a line.
   */
  sentinel?: number;
  onMessage: (message: unknown) => void;
  /** Bytes dropped by discardUntilSentinel() or by a sentinel inside a partial line. */
  onDiscard?: (bytes: number) => void;
  onClose: (reason: CloseReason) => void;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const LF = 0x0a;

/**
 * Newline-delimited JSON over a connected stream socket, on Buffers (the
 * guest agent's 0xFF sentinel is not UTF-8). Partial chunks are assembled
 * incrementally; a message over the size limit or a line that is not JSON
 * fails the connection with a typed error. `onClose` fires exactly once, and
 * no message is delivered after it.
 */
export class JsonlTransport {
  private readonly socket: Socket;
  private readonly opts: JsonlTransportOptions;
  private readonly max: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private discarding = false;
  private done = false;

  constructor(socket: Socket, options: JsonlTransportOptions) {
    this.socket = socket;
    this.opts = options;
    this.max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err: NodeJS.ErrnoException) =>
      this.finish(PEER_GONE.has(err.code ?? "") ? { by: "peer", error: err } : { by: "error", error: err }),
    );
    socket.on("close", () => this.finish({ by: "peer" }));
  }

  get closed(): boolean {
    return this.done;
  }

  /** Sends one message as a line. bigint values are written as JSON integers. */
  send(message: unknown): void {
    this.sendRaw(Buffer.from(`${stringifyJson(message)}\n`, "utf8"));
  }

  sendRaw(bytes: Buffer): void {
    if (!this.done) this.socket.write(bytes);
  }

  /** Drops everything buffered and received up to and including the next sentinel byte. */
  discardUntilSentinel(): void {
    if (this.pendingBytes > 0) this.opts.onDiscard?.(this.pendingBytes);
    this.resetLine();
    this.discarding = true;
  }

  close(): void {
    this.finish({ by: "local" });
  }

  /** Closes the connection with `error` as the reason. */
  fail(error: Error): void {
    this.finish({ by: "error", error });
  }

  private finish(reason: CloseReason): void {
    if (this.done) return;
    this.done = true;
    this.resetLine();
    this.socket.destroy();
    this.opts.onClose(reason);
  }

  private resetLine(): void {
    this.pending = [];
    this.pendingBytes = 0;
  }

  private onData(chunk: Buffer): void {
    const sentinel = this.opts.sentinel;
    let pos = 0;
    let nextSentinel = sentinel === undefined ? -1 : chunk.indexOf(sentinel);
    while (pos < chunk.length && !this.done) {
      if (nextSentinel !== -1 && nextSentinel < pos) nextSentinel = chunk.indexOf(sentinel as number, pos);
      if (this.discarding) {
        const upTo = nextSentinel === -1 ? chunk.length : nextSentinel;
        if (upTo > pos) this.opts.onDiscard?.(upTo - pos);
        if (nextSentinel === -1) return;
        this.discarding = false;
        pos = nextSentinel + 1;
        continue;
      }
      const nl = chunk.indexOf(LF, pos);
      if (nextSentinel !== -1 && (nl === -1 || nextSentinel < nl)) {
        // The sentinel starts afresh: whatever partial line preceded it is dropped.
        const dropped = this.pendingBytes + (nextSentinel - pos);
        if (dropped > 0) this.opts.onDiscard?.(dropped);
        this.resetLine();
        pos = nextSentinel + 1;
        continue;
      }
      const end = nl === -1 ? chunk.length : nl;
      if (this.pendingBytes + (end - pos) > this.max) {
        this.fail(new MessageTooLargeError(this.opts.peer, this.max));
        return;
      }
      if (nl === -1) {
        this.pending.push(chunk.subarray(pos));
        this.pendingBytes += chunk.length - pos;
        return;
      }
      const piece = chunk.subarray(pos, nl);
      const line = this.pendingBytes === 0 ? piece : Buffer.concat([...this.pending, piece]);
      this.resetLine();
      pos = nl + 1;
      this.onLine(line);
    }
  }

  private onLine(line: Buffer): void {
    const text = line.toString("utf8").trim();
    if (text === "") return;
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch (err) {
      const shown = text.length > 80 ? `${text.slice(0, 80)}...` : text;
      this.fail(
        new ProtocolError(`${this.opts.peer} sent malformed JSON: ${JSON.stringify(shown)}`, { cause: err }),
      );
      return;
    }
    try {
      this.opts.onMessage(message);
    } catch (err) {
      // A throwing callback must not escape into the socket's event handler (that would crash the process).
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }
}

const BIGINT_TAG = `\u0000bigint-${randomBytes(6).toString("hex")}:`;
const BIGINT_TOKEN = new RegExp(
  `"${JSON.stringify(BIGINT_TAG).slice(1, -1).replace(/\\/g, "\\\\")}(-?\\d+)"`,
  "g",
);

/** JSON.stringify that writes bigint as a plain integer (guest-set-time takes nanoseconds). */
export function stringifyJson(value: unknown): string {
  let sawBigint = false;
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== "bigint") return v;
    sawBigint = true;
    return `${BIGINT_TAG}${v.toString()}`;
  });
  return sawBigint ? text.replace(BIGINT_TOKEN, "$1") : text;
}

/** A plain JSON object (not an array, not null). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
