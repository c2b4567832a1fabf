/** Whether the runner can act as root: it is root, or has password-less sudo. */
import { run } from "../engine/index.js";

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

export async function canBeRoot(): Promise<boolean> {
  if (isRoot) return true;
  try {
    await run("sudo", ["-n", "true"], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}
