/**
 * A create or update the API server refused for a reason the user can act
 * on: admission (Pod Security, a webhook, a namespace's ResourceQuota: 403
 * Forbidden) or validation (422 Invalid). Pure. The server's message is the
 * diagnosis and goes to the Emulator's status and a Warning event; a
 * Secret's is redacted before it gets here (it could echo a value).
 */
import { KubeError } from "../kube/errors.js";

export type Problem = { reason: string; message: string };

export function rejectionOf(err: unknown, kind: string, name: string): Problem | undefined {
  if (!(err instanceof KubeError) || (err.code !== 403 && err.code !== 422)) return undefined;
  // A namespace being deleted refuses new objects with a 403 too: not the user's to fix, and it ends.
  if (/because it is being terminated/.test(err.message)) return undefined;
  const quota = err.code === 403 && /exceeded quota/i.test(err.message);
  const reason = quota ? `${kind}QuotaExceeded` : `${kind}Rejected`;
  const said = err.message.replace(/^[^:]*:\s*/, "");
  const hint = quota
    ? "raise the namespace's ResourceQuota or lower spec.resources"
    : err.code === 422
      ? "the object the controller built is invalid: check the Emulator's spec and the chart's agent values"
      : "the namespace's admission refused it: for Pod Security, label the namespace pod-security.kubernetes.io/enforce=privileged (see docs/kubernetes.md)";
  return { reason, message: `the API server refused ${kind} ${name}: ${said}; ${hint}` };
}
