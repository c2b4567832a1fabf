/** Types shared by the store and its writer. */
import type { EngineError } from "../errors.js";
import type { LockHolder } from "./lock.js";
import type { SnapshotManifest } from "./manifest.js";

/** A published snapshot: `dir` holds `manifest.files`, manifest.json and COMPLETE. */
export interface PublishedSnapshot {
  key: string;
  dir: string;
  manifest: SnapshotManifest;
}

/** What a lookup found under `<root>/<key>`. */
export type Examination =
  | { state: "absent" }
  | { state: "incomplete" }
  | { state: "invalid"; error: EngineError }
  | { state: "published"; snapshot: PublishedSnapshot };

/**
 * The one answer to "may this snapshot be resumed": absent (incomplete
 * counts as absent: a writer may still be at work), unusable with why (the
 * caller quarantines it), or usable.
 */
export type Usability =
  | { state: "absent" }
  | { state: "unusable"; reason: string }
  | { state: "usable"; snapshot: PublishedSnapshot };

/** Notes the store reports as it works (the engine turns them into events). */
export type StoreEvent =
  | { type: "lock-broken"; key: string; holder: LockHolder | undefined }
  | { type: "replaced"; key: string }
  | { type: "quarantined"; key: string; reason: string; path: string }
  | { type: "swept"; path: string; why: string };
