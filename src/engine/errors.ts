/**
 * Every error the engine raises on purpose is an EngineError: a stable `code`
 * a program can switch on, a human `message`, and a `hint` that tells the user
 * what to do about it. Edges (CLI, Action, controller) print message + hint.
 */
/**
 * Every code the engine raises: a closed set, so an edge can switch on it
 * exhaustively. Add a code here when adding an error.
 */
export const ERROR_CODES = [
  "ABORTED",
  "ALREADY_RUNNING",
  "CACHE_ENTRY_INVALID",
  "CACHE_PROTOCOL",
  "CACHE_UNAVAILABLE",
  "CHECKSUM_INVALID",
  "CHECKSUM_MISMATCH",
  "COMMAND_FAILED",
  "COMMAND_NOT_FOUND",
  "CONFIG_INVALID",
  "DOWNLOAD_FAILED",
  "FIRMWARE_NOT_FOUND",
  "HEALTH_TIMEOUT",
  "HOST_SHARE_FAILED",
  "HOST_SHARE_REFUSED",
  "IMAGE_ARCH_MISMATCH",
  "IMAGE_CHANGED",
  "IMAGE_INVALID",
  "IMAGE_NOT_FOUND",
  "ISO_DATE_INVALID",
  "ISO_DUPLICATE_PATH",
  "ISO_FILE_TOO_LARGE",
  "ISO_NAME_INVALID",
  "ISO_NAME_TOO_LONG",
  "ISO_PATH_INVALID",
  "ISO_SOURCE_CHANGED",
  "ISO_SOURCE_INVALID",
  "ISO_SOURCE_SIZE_MISSING",
  "ISO_TOO_MANY_DIRS",
  "ISO_VOLUME_ID_INVALID",
  "ISO_WRITE_FAILED",
  "KEYS_MISSING",
  "KVM_UNAVAILABLE",
  "LOCK_FAILED",
  "MIGRATION_FAILED",
  "MIGRATION_TIMEOUT",
  "PORT_IN_USE",
  "QEMU_EXITED",
  "QEMU_IMG_NOT_FOUND",
  "QEMU_INSTALL_FAILED",
  "QEMU_KILLED",
  "QEMU_NOT_FOUND",
  "QEMU_NO_MACHINE",
  "QEMU_PROBE_FAILED",
  "QEMU_PROTOCOL",
  "QEMU_QUIT_TIMEOUT",
  "QEMU_SOCKET_CONNECT",
  "QGA_CLOSED",
  "QGA_COMMAND",
  "QMP_CLOSED",
  "QMP_COMMAND",
  "RELEASE_TAG_INVALID",
  "ROTATION_FAILED",
  "RUNTIME_ENV_INVALID",
  "RUN_DIR_BUSY",
  "RUN_STATE_INVALID",
  "SECRETS_INVALID",
  "SNAPSHOT_ARCHIVE_INVALID",
  "SNAPSHOT_CORRUPT",
  "SNAPSHOT_EXISTS",
  "SNAPSHOT_INCOMPLETE",
  "SNAPSHOT_INVALID",
  "SNAPSHOT_KEY_INVALID",
  "SNAPSHOT_KEY_MISMATCH",
  "SNAPSHOT_LOCKED",
  "SNAPSHOT_MANIFEST_INVALID",
  "SNAPSHOT_PACK_FAILED",
  "SNAPSHOT_PUBLISH_FAILED",
  "SNAPSHOT_PUBLISH_INVALID",
  "SNAPSHOT_REQUIRED",
  "SNAPSHOT_RESUME_FAILED",
  "SNAPSHOT_STORE_FULL",
  "SNAPSHOT_UNPACK_FAILED",
  "SNAPSHOT_UNUSABLE",
  "SNAPSHOT_WRITER_CLOSED",
  "STRATEGY_UNSUPPORTED",
  "TIMEOUT",
  "VM_EXITED",
  "ZSTD_FAILED",
  "ZSTD_NOT_FOUND",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class EngineError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }

  /** One line for logs: message, then the hint if any. */
  describe(): string {
    return this.hint ? `${this.message} (hint: ${this.hint})` : this.message;
  }
}

/** Bad configuration or input: names every problem and how to fix it. */
export class ConfigError extends EngineError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[], hint?: string) {
    super(
      "CONFIG_INVALID",
      `invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
      hint === undefined ? {} : { hint },
    );
    this.problems = problems;
  }
}

/** The codes of deadlines that passed; every such error is a TimeoutError. */
export type TimeoutCode = Extract<ErrorCode, "TIMEOUT" | `${string}_TIMEOUT`>;

/**
 * A deadline passed. Callers recognise one by type (`instanceof
 * TimeoutError`), never by the spelling of its code. The short form names
 * the operation (`what`) and the deadline; the long form is for errors that
 * say more (which services were still unhealthy, say).
 */
export class TimeoutError extends EngineError {
  constructor(what: string, ms: number, hint?: string);
  constructor(code: TimeoutCode, message: string, options?: { hint?: string; cause?: unknown });
  constructor(a: string, b: number | string, c?: string | { hint?: string; cause?: unknown }) {
    if (typeof b === "number") {
      super("TIMEOUT", `${a} did not finish within ${b} ms`, typeof c === "string" ? { hint: c } : {});
    } else {
      super(a as TimeoutCode, b, typeof c === "object" ? c : {});
    }
  }
}

export function describeError(err: unknown): string {
  if (err instanceof EngineError) return err.describe();
  if (err instanceof Error) return err.message;
  return String(err);
}
