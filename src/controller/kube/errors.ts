/**
 * API errors as one class with the HTTP code and the Status reason. Built
 * from client-node's ApiException without its headers or raw body, so a log
 * line never repeats more than the API server's own message.
 */
import { ApiException } from "@kubernetes/client-node";

export class KubeError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "KubeError";
  }
}

interface StatusBody {
  reason?: string;
  message?: string;
}

function parseBody(body: unknown): StatusBody {
  if (typeof body === "string") {
    try {
      return JSON.parse(body) as StatusBody;
    } catch {
      return {};
    }
  }
  return (body ?? {}) as StatusBody;
}

/** Any error from a client-node call, normalised; `redact` drops a message that could quote values (for Secrets). */
export function kubeError(err: unknown, what: string, redact = false): KubeError {
  if (err instanceof KubeError) return err;
  if (err instanceof ApiException) {
    const body = parseBody(err.body);
    // A validation error (422) can quote the object's values; an admission refusal (403) speaks of
    // policy (Pod Security, quota, a namespace being deleted) and is what the user needs to read.
    const message = redact && err.code !== 403 ? "" : (body.message ?? "");
    return new KubeError(
      err.code,
      body.reason ?? String(err.code),
      `${what}: ${err.code} ${body.reason ?? ""} ${message}`.trim(),
      {
        cause: redact ? undefined : err,
      },
    );
  }
  const name = (err as Error)?.name;
  if (name === "TimeoutError" || name === "AbortError")
    return new KubeError(0, "Timeout", `${what}: the API server did not answer in time`, { cause: err });
  const code =
    (err as { code?: unknown; statusCode?: unknown }).statusCode ?? (err as { code?: unknown }).code;
  return new KubeError(
    typeof code === "number" ? code : 0,
    "Unreachable",
    `${what}: ${(err as Error).message ?? String(err)}`,
    { cause: err },
  );
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeError && err.code === 404;
export const isConflict = (err: unknown): boolean =>
  err instanceof KubeError && err.code === 409 && err.reason === "Conflict";
export const isAlreadyExists = (err: unknown): boolean =>
  err instanceof KubeError && err.code === 409 && err.reason === "AlreadyExists";
/** An object being deleted cannot get new children: a 403 from the namespace lifecycle admission. */
export const isForbidden = (err: unknown): boolean => err instanceof KubeError && err.code === 403;

/** Runs an API call, turning its failure into a KubeError. */
export async function call<T>(what: string, fn: () => Promise<T>, redact = false): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw kubeError(err, what, redact);
  }
}

/** undefined for a 404, else the value. */
export async function orNotFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
