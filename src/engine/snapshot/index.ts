/** Snapshot identity, manifest, store and transport: the public surface of src/engine/snapshot. */
export {
  SNAPSHOT_FORMAT_VERSION,
  SnapshotKeyPartsSchema,
  canonicalJson,
  describeKeyDifference,
  diffKeyParts,
  snapshotKey,
} from "./key.js";
export type { Accelerator, KeyPartDifference, SnapshotKeyParts, SnapshotStrategy } from "./key.js";
export { imageDigest } from "./image-digest.js";
export type { ImageDigestOptions } from "./image-digest.js";
export {
  COMPLETE_FILE,
  MANIFEST_FILE,
  ManifestSchema,
  parseManifest,
  serializeManifest,
} from "./manifest.js";
export type { SnapshotFile, SnapshotFileRole, SnapshotManifest } from "./manifest.js";
export { SnapshotStore, openSnapshotStore } from "./store.js";
export type {
  Examination,
  PublishedSnapshot,
  StoreEvent,
  StoreListing,
  StoreOptions,
  SweepReport,
  Usability,
} from "./store.js";
export { SnapshotWriter } from "./writer.js";
export type { ManifestDraft, PublishInput } from "./writer.js";
export { DIGEST_ALGORITHM, digestFile } from "./digest.js";
export type { FileDigest } from "./digest.js";
export { SnapshotCorruptError } from "./verify.js";
export type { FileProblem, VerifyOptions } from "./verify.js";
export type { LockHolder } from "./lock.js";
export { packSnapshot, unpackSnapshot, unpackSnapshotStream } from "./transport.js";
export type { PackOptions, PackStats, TransportStats, UnpackOptions, UnpackResult } from "./transport.js";
