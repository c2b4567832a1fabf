/**
 * Writing one snapshot: the capture fills `writer.dir` (a hidden temporary
 * directory), then `publish` digests the files (digest.ts) while fsyncing
 * them, writes the manifest, writes the COMPLETE marker last and renames the
 * directory into place. Until that rename nothing is visible under
 * `<root>/<key>`; after it, everything is durable.
 */
import { createHash } from "node:crypto";
import { readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { EngineError } from "../errors.js";
import { settledAll } from "../settle.js";
import { fsyncDir, fsyncFile, isErrno, randomHex, writeFileDurable } from "./durable.js";
import { digestFiles } from "./digest.js";
import { SNAPSHOT_FORMAT_VERSION, snapshotKey } from "./key.js";
import type { SnapshotKeyParts } from "./key.js";
import { oldDirName } from "./layout.js";
import type { HeldLock } from "./lock.js";
import { COMPLETE_FILE, MANIFEST_FILE, parseManifest, serializeManifest } from "./manifest.js";
import type { SnapshotFileRole, SnapshotManifest } from "./manifest.js";
import type { PublishedSnapshot, StoreEvent } from "./store-types.js";
import { verifySnapshotFiles } from "./verify.js";
import type { VerifyOptions } from "./verify.js";

/** The manifest fields the capture knows; key, digests, sizes and the rest are filled in by publish. */
export interface ManifestDraft {
  keyParts: SnapshotKeyParts;
  captureTimings: Record<string, number>;
  guest: Record<string, string | number | boolean | null>;
  engineVersion: string;
  /** Defaults to now. */
  createdAt?: string;
}

export interface PublishInput {
  manifest: ManifestDraft;
  /** Every file the capture wrote into `writer.dir`, with its role. */
  files: { name: string; role: SnapshotFileRole }[];
}

/** What the store lends a writer. */
export interface WriterContext {
  root: string;
  key: string;
  tmpName: string;
  lock: HeldLock;
  /** Replace a published snapshot of the same key. */
  force: boolean;
  /** Is `<root>/<key>` a valid published snapshot right now? */
  isPublished(key: string): Promise<boolean>;
  emit(e: StoreEvent): void;
}

export class SnapshotWriter {
  readonly key: string;
  /** Where the capture writes its files. */
  readonly dir: string;
  private state: "open" | "publishing" | "done" = "open";

  constructor(private readonly ctx: WriterContext) {
    this.key = ctx.key;
    this.dir = join(ctx.root, ctx.tmpName);
  }

  /** The path for a snapshot file inside `dir`. */
  path(name: string): string {
    return join(this.dir, name);
  }

  /** Digest the files, write the manifest and publish. On failure the writer is aborted. */
  async publish(input: PublishInput): Promise<PublishedSnapshot> {
    return this.finish(async () => {
      const derived = snapshotKey(input.manifest.keyParts);
      if (derived !== this.key) {
        throw new EngineError(
          "SNAPSHOT_KEY_MISMATCH",
          `key parts derive ${derived}, this writer is for ${this.key}`,
          {
            hint: "pass the key parts the key was computed from",
          },
        );
      }
      await this.checkDirHolds(input.files.map((f) => f.name));
      const paths = input.files.map((f) => this.path(f.name));
      // Hashing is CPU, fsync is disk: overlapped, both done before anything points at the files.
      const [digests] = await settledAll([digestFiles(paths), fsyncEach(paths)]);
      const files = input.files.map((f, i) => ({
        name: f.name,
        bytes: digests[i]!.bytes,
        digest: digests[i]!.digest,
        role: f.role,
      }));
      const { keyParts, createdAt, ...rest } = input.manifest;
      const candidate = {
        formatVersion: SNAPSHOT_FORMAT_VERSION,
        key: this.key,
        keyParts,
        strategy: keyParts.strategy,
        createdAt: createdAt ?? new Date().toISOString(),
        qemuVersion: keyParts.qemuVersion,
        files,
        ...rest,
      };
      const manifest = parseManifest(candidate);
      if (manifest instanceof EngineError) throw manifest;
      return this.commit(manifest, { filesSynced: true });
    });
  }

  /**
   * Publish files that are already in `dir` with a known manifest (an
   * unpacked archive): verifies them against it instead of recomputing it.
   * `digests` are ones the caller computed from the bytes as it wrote them:
   * compared with the manifest without reading the files again (see
   * verifySnapshotFiles). A mismatch throws SNAPSHOT_CORRUPT and publishes
   * nothing.
   */
  async publishPrepared(manifest: SnapshotManifest, options: VerifyOptions): Promise<PublishedSnapshot> {
    return this.finish(async () => {
      if (manifest.key !== this.key) {
        throw new EngineError(
          "SNAPSHOT_KEY_MISMATCH",
          `manifest is for ${manifest.key}, expected ${this.key}`,
          {
            hint: "the archive or directory holds a different snapshot than the one asked for",
          },
        );
      }
      await this.checkDirHolds(manifest.files.map((f) => f.name));
      const corrupt = await verifySnapshotFiles(this.dir, manifest, options);
      if (corrupt) throw corrupt;
      return this.commit(manifest, { filesSynced: false });
    });
  }

  /** Remove the temporary directory and release the lock. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.state === "done") return;
    this.state = "done";
    try {
      await rm(this.dir, { recursive: true, force: true });
    } finally {
      await this.ctx.lock.release();
    }
  }

  private async finish(work: () => Promise<PublishedSnapshot>): Promise<PublishedSnapshot> {
    if (this.state !== "open") {
      throw new EngineError(
        "SNAPSHOT_WRITER_CLOSED",
        `the writer for ${this.key} was already published or aborted`,
      );
    }
    this.state = "publishing";
    try {
      const published = await work();
      this.state = "done";
      return published;
    } catch (err) {
      this.state = "open";
      await this.abort().catch(() => undefined);
      if (err instanceof EngineError) throw err;
      throw new EngineError(
        "SNAPSHOT_PUBLISH_FAILED",
        `publishing snapshot ${this.key} failed: ${String(err)}`,
        {
          hint: "check free space and permissions of the snapshot store",
          cause: err,
        },
      );
    }
  }

  /** `dir` holds exactly `names` (plus manifest.json, which publish writes). */
  private async checkDirHolds(names: string[]): Promise<void> {
    const present = new Set((await readdir(this.dir)).filter((n) => n !== MANIFEST_FILE));
    const missing = names.filter((n) => !present.has(n));
    for (const n of names) present.delete(n);
    const problems = [
      ...missing.map((n) => `${n} is listed but was not written`),
      ...[...present].map((n) => `${n} was written but is not listed`),
    ];
    if (problems.length) {
      throw new EngineError(
        "SNAPSHOT_PUBLISH_INVALID",
        `cannot publish ${this.key}: ${problems.join("; ")}`,
        {
          hint: "list every file the capture wrote, and nothing else",
        },
      );
    }
  }

  private async commit(
    manifest: SnapshotManifest,
    { filesSynced }: { filesSynced: boolean },
  ): Promise<PublishedSnapshot> {
    const { root, key } = this.ctx;
    const manifestText = serializeManifest(manifest);
    await settledAll([
      writeFileDurable(this.path(MANIFEST_FILE), manifestText),
      filesSynced ? Promise.resolve() : fsyncEach(manifest.files.map((f) => this.path(f.name))),
    ]);
    // The marker seals the manifest: a reader refuses a manifest changed after publish.
    const manifestSha256 = createHash("sha256").update(manifestText).digest("hex");
    await writeFileDurable(
      this.path(COMPLETE_FILE),
      `${JSON.stringify({ key, completedAt: new Date().toISOString(), manifestSha256 })}\n`,
    );
    await fsyncDir(this.dir);

    if (!(await this.ctx.lock.held())) {
      throw new EngineError(
        "SNAPSHOT_LOCKED",
        `the lock for ${key} was taken away while it was being written`,
        {
          hint: "another process broke the lock; capture again",
        },
      );
    }
    const target = join(root, key);
    if (!this.ctx.force && (await this.ctx.isPublished(key))) {
      throw new EngineError("SNAPSHOT_EXISTS", `snapshot ${key} is already published`, {
        hint: "use it, or replace it explicitly (force)",
      });
    }
    // A directory cannot be renamed over a non-empty one: move the old one aside first.
    const aside = join(root, oldDirName(key, randomHex()));
    let replaced = false;
    try {
      await rename(target, aside);
      replaced = true;
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
    }
    try {
      await rename(this.dir, target);
    } catch (err) {
      if (replaced) await rename(aside, target).catch(() => undefined); // put the old one back
      throw err;
    }
    await fsyncDir(root);
    if (replaced) {
      this.ctx.emit({ type: "replaced", key });
      await rm(aside, { recursive: true, force: true }).catch(() => undefined); // else sweep removes it
    }
    await this.ctx.lock.release();
    return { key, dir: target, manifest };
  }
}

/** fsync one file after another: one thread-pool thread, leaving the others to the reads. */
async function fsyncEach(paths: readonly string[]): Promise<void> {
  for (const p of paths) await fsyncFile(p);
}
