import { randomInt } from "node:crypto";
import type { Socket } from "node:net";
import { realClock, type Clock } from "./clock.js";
import { isJsonObject, JsonlTransport, type CloseReason } from "./jsonl-transport.js";
import {
  GuestAgentClosedError,
  GuestAgentCommandError,
  GuestAgentTimeoutError,
  ProtocolError,
} from "./protocol-errors.js";
import { execArguments, pollExec } from "./qga-exec.js";
import * as s from "./qga-types.js";
import { connectUnixSocket } from "./unix-socket.js";
import { WireLock } from "./wire-lock.js";
import { redactAgentReply, traceFor } from "./trace.js";

export type { ExecOptions, ExecResult, GuestAgentInfo, ShutdownMode } from "./qga-types.js";

export interface GuestAgentOptions {
  /** Deadline for connecting to the socket (QEMU may not have created it yet). */
  timeoutMs: number;
  /** Deadline of a call that gives none (default 30 s); it includes waiting for earlier calls. */
  defaultTimeoutMs?: number;
  maxMessageBytes?: number;
  /** Stale or unexpected data that was discarded: reported here, never thrown. */
  onProtocolWarning?: (message: string) => void;
  /** Sees every message sent and received; `input-data` and guest-exec output are redacted. Default: the process-wide trace (trace.ts). */
  trace?: (direction: "send" | "recv", message: unknown) => void;
  /** Deadlines and timers run on it. Default: the real clock. */
  clock?: Clock;
}

type Expect = { kind: "sync"; id: number } | { kind: "reply"; command: string };
type Slot = Expect & { resolve: (v: unknown) => void; reject: (e: Error) => void };
type CallOptions = { timeoutMs?: number };

const DELIMITER = Buffer.from([0xff]);

/**
 * A qemu-guest-agent client over the virtio-serial chardev socket. The agent
 * has no greeting and echoes no ids, so the channel is resynchronised with
 * guest-sync-delimited before first use and after any timeout; calls go on
 * the wire one at a time (callers queue), each with a deadline that covers
 * its wait in the queue.
 */
export class GuestAgent {
  private closeError: GuestAgentClosedError | undefined;
  private needsSync = true;
  private slot: Slot | undefined;
  private readonly lock: WireLock;
  private readonly transport: JsonlTransport;
  private readonly defaultTimeoutMs: number;
  private readonly clock: Clock;

  private constructor(
    socket: Socket,
    private readonly options: GuestAgentOptions,
  ) {
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 30_000;
    this.clock = options.clock ?? realClock;
    this.lock = new WireLock(this.clock);
    const warn = options.onProtocolWarning;
    this.transport = new JsonlTransport(socket, {
      peer: "guest agent",
      sentinel: 0xff,
      ...(options.maxMessageBytes === undefined ? {} : { maxMessageBytes: options.maxMessageBytes }),
      onMessage: (m) => this.onMessage(m),
      onDiscard: (n) => warn?.(`discarded ${n} stale bytes from the guest agent channel`),
      onClose: (r) => this.onClose(r),
    });
  }

  /** Connects to the socket (retrying until QEMU has created it); the first call resynchronises. */
  static async connect(socketPath: string, options: GuestAgentOptions): Promise<GuestAgent> {
    const onTimeout = () =>
      new GuestAgentTimeoutError(`guest agent connect on ${socketPath}`, options.timeoutMs);
    const clock = options.clock ?? realClock;
    const socket = await connectUnixSocket(socketPath, {
      deadline: clock.now() + options.timeoutMs,
      onTimeout,
      clock,
    });
    return new GuestAgent(socket, options);
  }

  get closed(): boolean {
    return this.closeError !== undefined;
  }

  /** Resynchronises the channel now (guest-sync-delimited with a fresh random id). */
  sync(options: CallOptions = {}): Promise<void> {
    const ms = options.timeoutMs ?? this.defaultTimeoutMs;
    return this.run("guest agent sync", this.now() + ms, ms, async () => undefined, true);
  }

  /** Retries sync() until the agent answers (it starts late in boot) or the deadline passes. */
  async waitUntilReady(options: { timeoutMs: number; attemptTimeoutMs?: number }): Promise<void> {
    const deadline = this.now() + options.timeoutMs;
    for (;;) {
      const remaining = deadline - this.now();
      if (remaining <= 0) {
        const hint = "is qemu-guest-agent running in the guest?";
        throw new GuestAgentTimeoutError("waiting for the guest agent", options.timeoutMs, hint);
      }
      try {
        return await this.sync({ timeoutMs: Math.min(options.attemptTimeoutMs ?? 1000, remaining) });
      } catch (err) {
        if (!(err instanceof GuestAgentTimeoutError)) throw err;
      }
    }
  }

  /** One agent command; rejects with GuestAgentCommandError, GuestAgentTimeoutError or GuestAgentClosedError. */
  call<T = unknown>(command: string, args?: Record<string, unknown>, options: CallOptions = {}): Promise<T> {
    const ms = options.timeoutMs ?? this.defaultTimeoutMs;
    const deadline = this.now() + ms;
    const what = `guest agent ${command}`;
    return this.run(what, deadline, ms, () =>
      this.wire({ kind: "reply", command }, args, deadline, what, ms),
    ) as Promise<T>;
  }

  async ping(options: CallOptions = {}): Promise<void> {
    await this.call("guest-ping", undefined, options);
  }

  async info(options: CallOptions = {}): Promise<s.GuestAgentInfo> {
    const r = s.parseReply("guest-info", s.infoSchema, await this.call("guest-info", undefined, options));
    return {
      version: r.version,
      commands: r.supported_commands.map(({ name, enabled }) => ({ name, enabled })),
    };
  }

  /** guest-set-time: to `nsSinceEpoch`, or without it from the guest's RTC. */
  async setTime(nsSinceEpoch?: bigint | number, options: CallOptions = {}): Promise<void> {
    const time = typeof nsSinceEpoch === "number" ? BigInt(Math.round(nsSinceEpoch)) : nsSinceEpoch;
    await this.call("guest-set-time", time === undefined ? undefined : { time }, options);
  }

  /**
   * guest-shutdown. The agent does not answer it on success: a closed
   * connection or no reply within `replyTimeoutMs` (default 2 s) counts as
   * success; an error reply rejects.
   */
  shutdown(
    mode: s.ShutdownMode = "powerdown",
    options: CallOptions & { replyTimeoutMs?: number } = {},
  ): Promise<void> {
    const ms = options.timeoutMs ?? this.defaultTimeoutMs;
    const deadline = this.now() + ms;
    return this.run("guest agent guest-shutdown", deadline, ms, async () => {
      const replyMs = Math.min(options.replyTimeoutMs ?? 2000, Math.max(1, deadline - this.now()));
      const what = "guest agent guest-shutdown";
      try {
        await this.wire(
          { kind: "reply", command: "guest-shutdown" },
          { mode },
          this.now() + replyMs,
          what,
          replyMs,
        );
      } catch (err) {
        if (!(err instanceof GuestAgentTimeoutError || err instanceof GuestAgentClosedError)) throw err;
      }
    });
  }

  /** guest-exec with captured output; returns the guest pid to pass to wait(). */
  async start(path: string, args: readonly string[] = [], options: s.ExecOptions = {}): Promise<number> {
    const r = await this.call("guest-exec", execArguments(path, args, options), options);
    return s.parseReply("guest-exec", s.execStartSchema, r).pid;
  }

  /** Polls guest-exec-status until the process exits. */
  wait(pid: number, options: CallOptions = {}): Promise<s.ExecResult> {
    const ms = options.timeoutMs ?? this.defaultTimeoutMs;
    return pollExec((c, a, o) => this.call(c, a, o), pid, this.now() + ms, ms, "guest exec", this.clock);
  }

  /** start() then wait(), under one deadline. */
  async exec(path: string, args: readonly string[] = [], options: s.ExecOptions = {}): Promise<s.ExecResult> {
    const ms = options.timeoutMs ?? this.defaultTimeoutMs;
    const deadline = this.now() + ms;
    let pid: number;
    try {
      pid = await this.start(path, args, { ...options, timeoutMs: ms });
    } catch (err) {
      throw err instanceof GuestAgentTimeoutError
        ? new GuestAgentTimeoutError(`guest exec of ${path}`, ms)
        : err;
    }
    return pollExec((c, a, o) => this.call(c, a, o), pid, deadline, ms, `guest exec of ${path}`, this.clock);
  }

  /** Closes the connection; everything pending rejects with GuestAgentClosedError. */
  close(): void {
    this.transport.close();
  }

  private now(): number {
    return this.clock.now();
  }

  /** Takes the wire (queueing behind earlier calls until `deadline`), resyncs if needed, runs `fn`. */
  private async run<T>(
    what: string,
    deadline: number,
    ms: number,
    fn: () => Promise<T>,
    forceSync = false,
  ): Promise<T> {
    if (this.closeError) throw this.closeError;
    const release = await this.lock.acquire(
      deadline,
      () => new GuestAgentTimeoutError(`${what} (queued)`, ms),
    );
    try {
      if (this.needsSync || forceSync) await this.resync(deadline, ms);
      return await fn();
    } finally {
      release();
    }
  }

  /** guest-sync-delimited: 0xFF resets the agent's parser, and we drop input until its 0xFF. */
  private async resync(deadline: number, ms: number): Promise<void> {
    const id = randomInt(1, 2 ** 31);
    this.needsSync = true;
    this.transport.discardUntilSentinel();
    this.transport.sendRaw(DELIMITER);
    await this.wire({ kind: "sync", id }, { id }, deadline, "guest agent sync", ms);
    this.needsSync = false;
  }

  private wire(
    expect: Expect,
    args: Record<string, unknown> | undefined,
    deadline: number,
    what: string,
    ms: number,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.closeError) return reject(this.closeError);
      const cancelTimer = this.clock.after(deadline - this.now(), () => {
        this.slot = undefined;
        this.needsSync = true;
        reject(new GuestAgentTimeoutError(what, ms));
      });
      const settle = () => (cancelTimer(), (this.slot = undefined));
      this.slot = {
        ...expect,
        resolve: (v) => (settle(), resolve(v)),
        reject: (e) => (settle(), reject(e)),
      };
      const command = expect.kind === "sync" ? "guest-sync-delimited" : expect.command;
      const message = args === undefined ? { execute: command } : { execute: command, arguments: args };
      traceFor("guest agent", this.options.trace)?.("send", s.redact(message));
      this.transport.send(message);
    });
  }

  private onMessage(message: unknown): void {
    traceFor("guest agent", this.options.trace)?.("recv", redactAgentReply(message));
    const slot = this.slot;
    const warn = this.options.onProtocolWarning;
    if (slot?.kind === "sync") {
      if (isJsonObject(message) && message.return === slot.id) slot.resolve(undefined);
      else warn?.("discarded a stale guest agent message while resynchronising");
    } else if (!slot) {
      this.needsSync = true;
      warn?.("discarded an unexpected guest agent message (stale reply?)");
    } else if (!isJsonObject(message) || !("return" in message || "error" in message)) {
      this.transport.fail(new ProtocolError("the guest agent sent a message that is not a reply"));
    } else if ("error" in message) {
      const e = s.errorSchema.safeParse(message.error);
      const [cls, desc] = e.success
        ? [e.data.class, e.data.desc]
        : ["GenericError", JSON.stringify(message.error)];
      slot.reject(new GuestAgentCommandError(slot.command, cls, desc));
    } else {
      slot.resolve(message.return);
    }
  }

  private onClose(reason: CloseReason): void {
    const err =
      reason.by === "error"
        ? new GuestAgentClosedError(`guest agent connection failed: ${reason.error.message}`, reason.error)
        : reason.by === "local"
          ? new GuestAgentClosedError("guest agent connection closed by the client")
          : new GuestAgentClosedError(
              "guest agent connection closed by the peer (QEMU exited?)",
              reason.error,
            );
    this.closeError = err;
    this.slot?.reject(err);
    this.lock.failAll(err);
  }
}
