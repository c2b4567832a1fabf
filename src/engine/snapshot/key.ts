/**
 * Snapshot identity. A snapshot can only be resumed by a VM whose every
 * layout-relevant fact matches the one that captured it, so the key is a hash
 * of all of them. Pure: the host probe and image digest are computed elsewhere
 * and passed in.
 */
import { createHash } from "node:crypto";
import { z } from "zod";

/**
 * Bump when the on-disk snapshot layout or capture semantics change: every old
 * key misses (rather than being found and judged corrupt). 2: manifest files
 * carry an nzb1m-sha256 `digest` instead of a `sha256`.
 */
export const SNAPSHOT_FORMAT_VERSION = 2;

const port = z.number().int().min(1).max(65535);

export const SnapshotKeyPartsSchema = z.strictObject({
  formatVersion: z.number().int().positive(),
  arch: z.string().min(1),
  accelerator: z.enum(["kvm", "hvf", "tcg"]),
  qemuVersion: z.string().min(1),
  /**
   * The QEMU build, not just x.y.z: its package string (e.g. "Debian
   * 1:8.2.2+ds-0ubuntu1.4"), or the binary's sha256 when it has none.
   * Optional so manifests made before it still parse (their keys simply
   * never match again).
   */
  qemuBuild: z.string().min(1).optional(),
  /** sha256 over the BIOS and option ROM images QEMU loads from its data directories (see probe.ts). */
  romDigest: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  /** Versioned machine type, e.g. "pc-q35-7.2" (never the "q35" alias). */
  machineType: z.string().min(1),
  cpuModel: z.string().min(1),
  cpuFingerprint: z.string().min(1),
  ramMiB: z.number().int().positive(),
  cpus: z.number().int().positive(),
  /** sha256 hex of the base image's content. */
  imageDigest: z.string().regex(/^[0-9a-f]{64}$/, "must be a sha256 hex digest"),
  /** sha256 hex of the firmware image (arm64 UEFI), or "none": its ROM is part of the migrated state. */
  firmwareDigest: z.union([z.literal("none"), z.string().regex(/^[0-9a-f]{64}$/)]),
  /** Hash of the layout-relevant QEMU argv. */
  layoutHash: z.string().min(1),
  strategy: z.enum(["template", "mapped-ram", "stream"]),
  hostPorts: z.strictObject({
    dashboard: port,
    backend: port,
    minio: port,
    inbucket: port,
    mockOauth: port,
  }),
  portPrefix: z.string(),
});

export type SnapshotKeyParts = z.infer<typeof SnapshotKeyPartsSchema>;
export type SnapshotStrategy = SnapshotKeyParts["strategy"];
export type Accelerator = SnapshotKeyParts["accelerator"];

/** JSON with object keys sorted at every level, so property order never changes a hash. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

/** Lower-case, and anything outside [a-z0-9._] becomes "_": safe in paths and cache keys. */
function slug(text: string, max: number): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9._]+/g, "_")
    .slice(0, max);
}

/**
 * `hxe-v2-amd64-tcg-q7.2.22-<24 hex>`: the readable prefix is for humans
 * skimming a cache listing; the hash (sha256 of the canonical JSON of every
 * part) is what makes the key exact.
 */
export function snapshotKey(parts: SnapshotKeyParts): string {
  const hash = createHash("sha256").update(canonicalJson(parts)).digest("hex").slice(0, 24);
  return `hxe-v${parts.formatVersion}-${slug(parts.arch, 16)}-${parts.accelerator}-q${slug(parts.qemuVersion, 24)}-${hash}`;
}

export interface KeyPartDifference {
  /** Dotted path of the part, e.g. "qemuVersion" or "hostPorts.dashboard". */
  part: string;
  from: unknown;
  to: unknown;
}

/**
 * Which parts differ between `a` (e.g. the nearest stored snapshot) and `b`
 * (what this run wants), in a stable order. Used to explain a miss.
 */
export function diffKeyParts(a: SnapshotKeyParts, b: SnapshotKeyParts): KeyPartDifference[] {
  const out: KeyPartDifference[] = [];
  const walk = (x: unknown, y: unknown, path: string): void => {
    const bothObjects = isRecord(x) && isRecord(y);
    if (!bothObjects) {
      if (canonicalJson(x) !== canonicalJson(y)) out.push({ part: path, from: x, to: y });
      return;
    }
    const keys = [...new Set([...Object.keys(x), ...Object.keys(y)])].sort();
    for (const k of keys) walk(x[k], y[k], path ? `${path}.${k}` : k);
  };
  walk(a, b, "");
  return out;
}

/** "qemuVersion: 7.2.22 → 10.0.13" */
export function describeKeyDifference(d: KeyPartDifference): string {
  return `${d.part}: ${show(d.from)} → ${show(d.to)}`;
}

function show(v: unknown): string {
  return typeof v === "string" ? v : v === undefined ? "(none)" : JSON.stringify(v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
