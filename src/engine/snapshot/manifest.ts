/**
 * manifest.json: what a snapshot directory holds and what it was captured
 * for. Read from disk (and from downloaded archives), so it is parsed with zod
 * and every cross-field rule a reader relies on is checked here.
 */
import { z } from "zod";
import { EngineError } from "../errors.js";
import { DIGEST_PATTERN } from "./digest.js";
import { SNAPSHOT_FORMAT_VERSION, SnapshotKeyPartsSchema, snapshotKey } from "./key.js";

export const MANIFEST_FILE = "manifest.json";
export const COMPLETE_FILE = "COMPLETE";
export const REASON_FILE = "REASON";
const RESERVED_NAMES = new Set([MANIFEST_FILE, COMPLETE_FILE, REASON_FILE]);

/** A plain file name inside a snapshot directory: no separators, no dot names, not reserved. */
export function isSnapshotFileName(name: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$/.test(name) && !RESERVED_NAMES.has(name);
}

export const SnapshotFileSchema = z.strictObject({
  name: z
    .string()
    .refine(isSnapshotFileName, "must be a plain file name (not manifest.json, COMPLETE or REASON)"),
  /** Apparent size in bytes (holes included). */
  bytes: z.number().int().nonnegative(),
  /** Content digest, "nzb1m-sha256:<hex>" (digest.ts): not a sha256 of the file. */
  digest: z.string().regex(DIGEST_PATTERN, 'must be "nzb1m-sha256:" and 64 hex digits'),
  role: z.enum(["device-state", "ram", "disk-layer"]),
});

const guestValue = z.union([z.string().max(4096), z.number(), z.boolean(), z.null()]);

export const ManifestSchema = z
  .strictObject({
    formatVersion: z.number().int().positive(),
    key: z.string().min(1),
    keyParts: SnapshotKeyPartsSchema,
    strategy: z.enum(["template", "mapped-ram", "stream"]),
    createdAt: z.iso.datetime(),
    qemuVersion: z.string().min(1),
    files: z.array(SnapshotFileSchema).max(64),
    /** Capture phase → milliseconds. */
    captureTimings: z.record(z.string(), z.number().nonnegative()),
    /** Free-form facts about the guest at capture (kernel, agent version, …). */
    guest: z.record(z.string(), guestValue).refine((r) => Object.keys(r).length <= 64, "at most 64 entries"),
    engineVersion: z.string().min(1),
  })
  .superRefine((m, ctx) => {
    const issue = (path: (string | number)[], message: string): void => {
      ctx.addIssue({ code: "custom", path, message });
    };
    if (m.formatVersion !== SNAPSHOT_FORMAT_VERSION) {
      issue(["formatVersion"], `is ${m.formatVersion}, this engine reads ${SNAPSHOT_FORMAT_VERSION}`);
    }
    if (m.keyParts.formatVersion !== m.formatVersion) {
      issue(["keyParts", "formatVersion"], "differs from formatVersion");
    }
    if (m.strategy !== m.keyParts.strategy) {
      issue(["strategy"], `is ${m.strategy} but keyParts say ${m.keyParts.strategy}`);
    }
    if (m.qemuVersion !== m.keyParts.qemuVersion) issue(["qemuVersion"], "differs from keyParts.qemuVersion");
    const derived = snapshotKey(m.keyParts);
    if (m.key !== derived) issue(["key"], `is ${m.key} but keyParts derive ${derived}`);
    const seen = new Set<string>();
    m.files.forEach((f, i) => {
      if (seen.has(f.name)) issue(["files", i, "name"], `${f.name} is listed twice`);
      seen.add(f.name);
    });
  });

export type SnapshotManifest = z.infer<typeof ManifestSchema>;
export type SnapshotFile = z.infer<typeof SnapshotFileSchema>;
export type SnapshotFileRole = SnapshotFile["role"];

/**
 * The manifest, or an EngineError (SNAPSHOT_MANIFEST_INVALID) that names each
 * problem. Accepts the JSON text or an already-parsed value.
 */
export function parseManifest(json: string | unknown): SnapshotManifest | EngineError {
  let value: unknown = json;
  if (typeof json === "string") {
    try {
      value = JSON.parse(json);
    } catch (err) {
      return invalid([`not JSON: ${(err as Error).message}`], err);
    }
  }
  const parsed = ManifestSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  return invalid(
    parsed.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`),
    parsed.error,
  );
}

function invalid(problems: string[], cause: unknown): EngineError {
  return new EngineError(
    "SNAPSHOT_MANIFEST_INVALID",
    `snapshot manifest is invalid: ${problems.join("; ")}`,
    {
      hint: "this snapshot cannot be used: quarantine or remove it and capture again",
      cause,
    },
  );
}

/** Stable, readable serialisation (the key order of the schema, 2-space indent). */
export function serializeManifest(m: SnapshotManifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}
