/**
 * Every error the engine raises on purpose is an EngineError: a stable `code`
 * a program can switch on, a human `message`, and a `hint` that tells the user
 * what to do about it. Edges (CLI, Action, controller) print message + hint.
 */
export class EngineError extends Error {
  readonly code: string;
  readonly hint: string | undefined;

  constructor(code: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
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

/** A deadline passed. `what` says which operation, for the message. */
export class TimeoutError extends EngineError {
  constructor(what: string, ms: number, hint?: string) {
    super("TIMEOUT", `${what} did not finish within ${ms} ms`, hint === undefined ? {} : { hint });
  }
}

export function describeError(err: unknown): string {
  if (err instanceof EngineError) return err.describe();
  if (err instanceof Error) return err.message;
  return String(err);
}
