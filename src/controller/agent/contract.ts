/**
 * What the controller's Pod tells the agent beyond the engine's own
 * environment variables, and what the agent reports back on GET /status.
 * Shared by the Pod builder and the agent so the two cannot drift.
 */
import { z } from "zod";

export const AGENT_ENV = {
  /** The agent's HTTP port (/healthz, /readyz, /status, /metrics). */
  port: "HEXCLAVE_AGENT_PORT",
  /** A directory of one file per key (the mounted Secret). */
  keysDir: "HEXCLAVE_AGENT_KEYS_DIR",
  /** When the image is a URL: where to pull it from (into HEXCLAVE_EMULATOR_IMAGE). */
  imageUrl: "HEXCLAVE_AGENT_IMAGE_URL",
  /** namespace/name of the Emulator, for logs. */
  emulator: "HEXCLAVE_AGENT_EMULATOR",
} as const;

export const AGENT_PATHS = { healthz: "/healthz", readyz: "/readyz", status: "/status" } as const;

/** GET /status: the engine's StartResult, minus anything secret. */
export const AgentReport = z.object({
  state: z.enum(["starting", "ready", "failed", "stopping"]),
  emulator: z.string().optional(),
  startedAt: z.string(),
  readyAt: z.string().optional(),
  /** Seconds from the agent's start to a healthy emulator. */
  startupSeconds: z.number().optional(),
  bootMode: z.enum(["resume", "cold"]).optional(),
  fallbackReason: z.string().optional(),
  snapshotKey: z.string().optional(),
  strategy: z.string().optional(),
  captured: z.boolean().optional(),
  qemuVersion: z.string().optional(),
  accelerator: z.string().optional(),
  placeholderSecrets: z.boolean().optional(),
  /** True when the guest runs the keys of the mounted Secret. */
  rotatedToSecret: z.boolean().optional(),
  timings: z.record(z.string(), z.number()).optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type AgentReport = z.infer<typeof AgentReport>;
