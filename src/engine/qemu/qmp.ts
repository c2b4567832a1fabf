import { z } from "zod";
import { realClock, type Clock } from "./clock.js";
import { isJsonObject, JsonlTransport, type CloseReason } from "./jsonl-transport.js";
import { ProtocolError, QmpClosedError, QmpCommandError, QmpTimeoutError } from "./protocol-errors.js";
import { QmpEventHub, type QmpEventHandler } from "./qmp-events.js";
import * as t from "./qmp-types.js";
import { connectUnixSocket } from "./unix-socket.js";
import { redactQmp, traceFor } from "./trace.js";

export type { QmpEventHandler } from "./qmp-events.js";
export type {
  QmpEvent,
  QmpGreeting,
  QmpKvmInfo,
  QmpMachineInfo,
  QmpMigrateCapability,
  QmpMigrationInfo,
  QmpStatus,
  QmpVersion,
} from "./qmp-types.js";

export type QmpState = "connecting" | "negotiating" | "ready" | "closed";

export interface QmpClientOptions {
  /** Deadline for connecting, the greeting and capability negotiation together. */
  timeoutMs: number;
  /** Deadline of execute() and waitForEvent() when the call gives none (default 30 s). */
  defaultTimeoutMs?: number;
  maxMessageBytes?: number;
  /** Unknown reply ids, late replies, odd messages, throwing handlers: reported here, never thrown. */
  onProtocolWarning?: (message: string) => void;
  /** Sees every message sent and received (debugging); secret arguments are redacted. Default: the process-wide trace (trace.ts). */
  trace?: (direction: "send" | "recv", message: unknown) => void;
  /** Deadlines and timers run on it. Default: the real clock. */
  clock?: Clock;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  cancelTimer: () => void;
}

const MAX_EXPIRED = 1000;

/**
 * A QMP client in the spirit of qemu.qmp: explicit states, one pending map
 * keyed by id, a deadline on every call, events dispatched in arrival order
 * (so an event that precedes its command's reply reaches a waiter registered
 * before the command was sent), typed errors.
 */
export class QmpClient {
  private stateValue: QmpState = "connecting";
  private transport: JsonlTransport | undefined;
  private greetingValue: t.QmpGreeting | undefined;
  private greetingWaiter: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private closeError: QmpClosedError | undefined;
  private seq = 0;
  private readonly pending = new Map<string, Pending>();
  private readonly expired = new Map<string, string>();
  private readonly events: QmpEventHub;
  private readonly closeHandlers = new Set<(err: QmpClosedError) => void>();
  private readonly defaultTimeoutMs: number;
  private readonly clock: Clock;

  private constructor(private readonly options: QmpClientOptions) {
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 30_000;
    this.clock = options.clock ?? realClock;
    this.events = new QmpEventHub((m) => this.warn(m), this.defaultTimeoutMs, this.clock);
  }

  /** Connects (retrying until QEMU has created the socket), reads the greeting, enters command mode. */
  static async connect(socketPath: string, options: QmpClientOptions): Promise<QmpClient> {
    const client = new QmpClient(options);
    const clock = client.clock;
    const deadline = clock.now() + options.timeoutMs;
    const timeout = (what: string) => () =>
      new QmpTimeoutError(`QMP ${what} on ${socketPath}`, options.timeoutMs);
    const socket = await connectUnixSocket(socketPath, { deadline, onTimeout: timeout("connect"), clock });
    client.stateValue = "negotiating";
    client.transport = new JsonlTransport(socket, {
      peer: "QMP",
      ...(options.maxMessageBytes === undefined ? {} : { maxMessageBytes: options.maxMessageBytes }),
      onMessage: (m) => client.onMessage(m),
      onClose: (r) => client.handleClose(r),
    });
    try {
      await new Promise<void>((resolve, reject) => {
        if (client.closeError) return reject(client.closeError);
        const cancelTimer = clock.after(deadline - clock.now(), () =>
          client.greetingWaiter?.reject(timeout("greeting")()),
        );
        const settle = () => (cancelTimer(), (client.greetingWaiter = undefined));
        client.greetingWaiter = {
          resolve: () => (settle(), resolve()),
          reject: (err) => (settle(), reject(err)),
        };
      });
      await client.call("qmp_capabilities", undefined, Math.max(1, deadline - clock.now()));
    } catch (err) {
      client.close();
      throw err instanceof QmpClosedError && err.cause instanceof ProtocolError ? err.cause : err;
    }
    client.stateValue = "ready";
    return client;
  }

  get state(): QmpState {
    return this.stateValue;
  }

  /** The server greeting: QEMU version and capabilities. */
  get greeting(): t.QmpGreeting {
    if (!this.greetingValue) throw new QmpClosedError("QMP greeting not received");
    return this.greetingValue;
  }

  /** Runs a command; rejects with QmpCommandError, QmpTimeoutError or QmpClosedError. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.stateValue !== "ready") {
      return Promise.reject(
        this.closeError ?? new QmpClosedError(`QMP is ${this.stateValue}, cannot run ${command}`),
      );
    }
    return this.call(command, args, options.timeoutMs ?? this.defaultTimeoutMs) as Promise<T>;
  }

  on(eventName: string, handler: QmpEventHandler): void {
    this.events.on(eventName, handler);
  }

  off(eventName: string, handler: QmpEventHandler): void {
    this.events.off(eventName, handler);
  }

  /** Called once when the connection closes, with the error pending calls got. */
  onClose(handler: (err: QmpClosedError) => void): void {
    if (this.closeError) handler(this.closeError);
    else this.closeHandlers.add(handler);
  }

  /**
   * Resolves with the next `eventName` event that satisfies `predicate`. It is
   * subscribed when called: call it BEFORE sending the command that causes the
   * event. The returned promise never counts as an unhandled rejection.
   */
  waitForEvent<D = Record<string, unknown>>(
    eventName: string,
    predicate?: (event: t.QmpEvent<D>) => boolean,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<t.QmpEvent<D>> {
    return this.events.waitFor(eventName, predicate, options);
  }

  /** Closes the connection; everything pending rejects with QmpClosedError. */
  close(): void {
    this.transport?.close();
  }

  queryStatus(): Promise<t.QmpStatus> {
    return this.query("query-status", t.statusInfoSchema);
  }

  queryMigrate(): Promise<t.QmpMigrationInfo> {
    return this.query("query-migrate", t.migrationInfoSchema);
  }

  queryMigrateCapabilities(): Promise<t.QmpMigrateCapability[]> {
    return this.query("query-migrate-capabilities", t.migrateCapabilitiesSchema);
  }

  queryVersion(): Promise<t.QmpVersion> {
    return this.query("query-version", t.qmpVersionSchema);
  }

  queryMachines(): Promise<t.QmpMachineInfo[]> {
    return this.query("query-machines", t.machinesSchema);
  }

  queryKvm(): Promise<t.QmpKvmInfo> {
    return this.query("query-kvm", t.kvmInfoSchema);
  }

  private async query<S extends z.ZodType>(command: string, schema: S): Promise<z.infer<S>> {
    const parsed = schema.safeParse(await this.execute(command));
    if (parsed.success) return parsed.data;
    throw new ProtocolError(`unexpected reply to QMP ${command}: ${z.prettifyError(parsed.error)}`);
  }

  private call(command: string, args: Record<string, unknown> | undefined, ms: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.closeError || !this.transport)
        return reject(this.closeError ?? new QmpClosedError("QMP not connected"));
      const id = `hx-${++this.seq}`;
      const cancelTimer = this.clock.after(ms, () => {
        this.pending.delete(id);
        this.expired.set(id, command);
        if (this.expired.size > MAX_EXPIRED) this.expired.delete(this.expired.keys().next().value as string);
        reject(new QmpTimeoutError(`QMP ${command}`, ms));
      });
      this.pending.set(id, { command, resolve, reject, cancelTimer });
      const message =
        args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.trace("send", message);
      this.transport.send(message);
    });
  }

  private warn(message: string): void {
    this.options.onProtocolWarning?.(message);
  }

  private trace(direction: "send" | "recv", message: unknown): void {
    const trace = traceFor("QMP", this.options.trace);
    if (trace) trace(direction, direction === "send" ? redactQmp(message) : message);
  }

  private onMessage(message: unknown): void {
    this.trace("recv", message);
    if (!isJsonObject(message))
      return this.transport?.fail(new ProtocolError("QMP sent a message that is not an object"));
    if (!this.greetingValue) {
      const g = t.qmpGreetingSchema.safeParse(message);
      if (!g.success)
        return this.transport?.fail(
          new ProtocolError("expected a QMP greeting: the socket is not a QMP monitor"),
        );
      this.greetingValue = { version: g.data.QMP.version, capabilities: g.data.QMP.capabilities };
      return this.greetingWaiter?.resolve();
    }
    if ("event" in message) return this.dispatchEvent(message);
    if ("return" in message || "error" in message) return this.dispatchReply(message);
    this.warn(
      `ignored a QMP message that is neither a reply nor an event: ${Object.keys(message).join(",")}`,
    );
  }

  private dispatchReply(message: Record<string, unknown>): void {
    const id = typeof message.id === "string" ? message.id : undefined;
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (id === undefined || !pending) {
      const late = id === undefined ? undefined : this.expired.get(id);
      if (late !== undefined) this.expired.delete(id as string);
      this.warn(
        late !== undefined
          ? `dropped the late reply to timed-out QMP ${late}`
          : `ignored a QMP reply with unknown id ${JSON.stringify(message.id)}`,
      );
      return;
    }
    this.pending.delete(id);
    pending.cancelTimer();
    if (!("error" in message)) return pending.resolve(message.return);
    const e = t.qmpErrorSchema.safeParse(message.error);
    pending.reject(
      new QmpCommandError(
        pending.command,
        e.success ? e.data.class : "GenericError",
        e.success ? e.data.desc : JSON.stringify(message.error),
      ),
    );
  }

  private dispatchEvent(message: Record<string, unknown>): void {
    const parsed = t.qmpEventSchema.safeParse(message);
    if (!parsed.success) return this.warn("ignored a malformed QMP event");
    const event: t.QmpEvent = {
      event: parsed.data.event,
      data: parsed.data.data ?? {},
      timestamp: parsed.data.timestamp ?? { seconds: 0, microseconds: 0 },
    };
    this.events.dispatch(event);
  }

  private handleClose(reason: CloseReason): void {
    this.stateValue = "closed";
    const err =
      reason.by === "error"
        ? new QmpClosedError(`QMP connection failed: ${reason.error.message}`, reason.error)
        : reason.by === "local"
          ? new QmpClosedError("QMP connection closed by the client")
          : new QmpClosedError("QMP connection closed by QEMU", reason.error);
    this.closeError = err;
    for (const p of this.pending.values()) {
      p.cancelTimer();
      p.reject(err);
    }
    this.pending.clear();
    this.events.close(err);
    this.greetingWaiter?.reject(err);
    for (const handler of this.closeHandlers) {
      try {
        handler(err);
      } catch (e) {
        this.warn(`an onClose handler threw: ${(e as Error).message}`);
      }
    }
    this.closeHandlers.clear();
  }
}
