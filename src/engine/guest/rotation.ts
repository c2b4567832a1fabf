/**
 * Secrets rotation after a boot: four fresh 32-byte secrets from the OS
 * CSPRNG, handed to the guest's trigger-fast-rotate on stdin through the
 * agent (never on a command line, never in a file inside the guest's
 * shared folder), and the live publishable key written for the CLI.
 */
import { randomBytes } from "node:crypto";
import { renameSync, writeFileSync } from "node:fs";
import { EngineError } from "../errors.js";
import type { GuestAgent } from "../qemu/qga.js";

export const ROTATE_COMMAND = "/usr/local/bin/trigger-fast-rotate";

/** The public placeholders an image built for snapshots ships with. */
export const PLACEHOLDER_PCK = "00000000000000000000000000000000ffffffffffffffffffffffffffffffff";

export interface RotatedSecrets {
  publishableClientKey: string;
  secretServerKey: string;
  superSecretAdminKey: string;
  cronSecret: string;
}

export function freshSecrets(): RotatedSecrets {
  const hex = () => randomBytes(32).toString("hex");
  return {
    publishableClientKey: hex(),
    secretServerKey: hex(),
    superSecretAdminKey: hex(),
    cronSecret: hex(),
  };
}

/** The KEY=VALUE lines trigger-fast-rotate reads on stdin. */
export function rotationInput(s: RotatedSecrets): string {
  return [
    `STACK_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY=${s.publishableClientKey}`,
    `STACK_INTERNAL_PROJECT_SECRET_SERVER_KEY=${s.secretServerKey}`,
    `STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY=${s.superSecretAdminKey}`,
    `CRON_SECRET=${s.cronSecret}`,
    "",
  ].join("\n");
}

/** Mode 0600 from the first byte: written to a 0600 temp file, then renamed. */
export function writeSecretFile(path: string, value: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, value, { mode: 0o600 });
  renameSync(tmp, path);
}

export class RotationError extends EngineError {}

/** The guest contract: every secret is 64 lowercase hex characters. */
export function checkSecrets(s: RotatedSecrets): RotatedSecrets {
  for (const [name, value] of Object.entries(s)) {
    if (typeof value !== "string" || !/^[0-9a-f]{64}$/.test(value)) {
      throw new RotationError("SECRETS_INVALID", `the given ${name} is not 64 lowercase hex characters`, {
        hint: "give 32 random bytes in hex for each of the four secrets, or let the engine generate them",
      });
    }
  }
  return s;
}

/**
 * Swaps the guest's secrets for `given` (the caller's, e.g. a Kubernetes
 * Secret the controller generated) or, without it, for fresh ones.
 */
export async function rotateSecrets(
  agent: GuestAgent,
  pckFile: string,
  timeoutMs: number,
  given?: RotatedSecrets,
): Promise<RotatedSecrets> {
  const secrets = given ? checkSecrets(given) : freshSecrets();
  const result = await agent.exec(ROTATE_COMMAND, [], { input: rotationInput(secrets), timeoutMs });
  if (result.exitCode !== 0) {
    // stderr of the guest script never echoes values; still, cap what we repeat.
    const why = result.stderr.toString("utf8").trim().slice(0, 500);
    throw new RotationError("ROTATION_FAILED", `${ROTATE_COMMAND} exited with ${result.exitCode}: ${why}`, {
      hint: "the guest could not swap its secrets; see serial.log",
    });
  }
  writeSecretFile(pckFile, secrets.publishableClientKey);
  return secrets;
}
