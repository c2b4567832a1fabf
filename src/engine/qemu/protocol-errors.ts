import { EngineError, TimeoutError } from "../errors.js";

/**
 * Typed errors of the QEMU protocol clients (QMP and the guest agent).
 * Every one is an EngineError, so the edges print message + hint as usual.
 */

/** The peer sent something that is not the protocol: bad JSON, a wrong greeting, a bad reply shape. */
export class ProtocolError extends EngineError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super("QEMU_PROTOCOL", message, options);
  }
}

/** One message grew past the size limit; the connection is dropped rather than buffering without bound. */
export class MessageTooLargeError extends ProtocolError {
  readonly limitBytes: number;
  constructor(peer: string, limitBytes: number) {
    super(`${peer} sent a message larger than ${limitBytes} bytes`, {
      hint: "the peer is not speaking the expected protocol, or a reply is unexpectedly huge",
    });
    this.limitBytes = limitBytes;
  }
}

/** Connecting to a unix socket failed for a reason other than "not there yet". */
export class SocketConnectError extends EngineError {
  constructor(path: string, cause: unknown, hint?: string) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super("QEMU_SOCKET_CONNECT", `cannot connect to ${path}: ${detail}`, {
      cause,
      ...(hint === undefined ? {} : { hint }),
    });
  }
}

// --- QMP ---------------------------------------------------------------------

/** A QMP call or event wait did not finish before its deadline. */
export class QmpTimeoutError extends TimeoutError {
  constructor(what: string, ms: number, hint?: string) {
    super(what, ms, hint);
  }
}

/** The QMP connection is closed (QEMU exited, `quit`, close(), or a protocol failure: see `cause`). */
export class QmpClosedError extends EngineError {
  constructor(message: string, cause?: unknown) {
    super("QMP_CLOSED", message, {
      hint: "QEMU exited or the monitor connection was closed",
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

/** QEMU answered a command with `{"error": {"class", "desc"}}`. */
export class QmpCommandError extends EngineError {
  readonly command: string;
  readonly errorClass: string;
  readonly desc: string;
  constructor(command: string, errorClass: string, desc: string) {
    super("QMP_COMMAND", `QMP ${command} failed: ${errorClass}: ${desc}`);
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

// --- guest agent -------------------------------------------------------------

/** A guest agent call did not finish before its deadline (the channel is resynchronised before the next call). */
export class GuestAgentTimeoutError extends TimeoutError {
  constructor(what: string, ms: number, hint?: string) {
    super(what, ms, hint);
  }
}

/** The guest agent channel is closed (QEMU exited, close(), or a protocol failure: see `cause`). */
export class GuestAgentClosedError extends EngineError {
  constructor(message: string, cause?: unknown) {
    super("QGA_CLOSED", message, {
      hint: "QEMU exited or the guest agent socket was closed",
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

/** The guest agent answered with `{"error": {"class", "desc"}}`. */
export class GuestAgentCommandError extends EngineError {
  readonly command: string;
  readonly errorClass: string;
  readonly desc: string;
  constructor(command: string, errorClass: string, desc: string) {
    super("QGA_COMMAND", `guest agent ${command} failed: ${errorClass}: ${desc}`);
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}
