/**
 * The four secrets a start rotates the guest to, made by the Action so each
 * is masked (core.setSecret) before the engine runs: nothing the step or a
 * later one prints (the engine's events, an error, the guest's console in
 * the post step's diagnostics) can show one. The runner keeps a mask for
 * the rest of the job.
 */
import { randomBytes } from "node:crypto";
import type { RotatedSecrets } from "../engine/index.js";

/** The output that carries each secret. */
export const SECRET_OUTPUTS = {
  publishableClientKey: "publishable-client-key",
  secretServerKey: "secret-server-key",
  superSecretAdminKey: "super-secret-admin-key",
  cronSecret: "cron-secret",
} as const satisfies Record<keyof RotatedSecrets, string>;

/** Four fresh 32-byte secrets (hex), each handed to `mask` before it is returned. */
export function maskedSecrets(mask: (secret: string) => void, random = randomBytes): RotatedSecrets {
  const hex = () => random(32).toString("hex");
  const s: RotatedSecrets = {
    publishableClientKey: hex(),
    secretServerKey: hex(),
    superSecretAdminKey: hex(),
    cronSecret: hex(),
  };
  for (const v of Object.values(s)) mask(v);
  return s;
}
