/**
 * Does a snapshot directory still hold what its manifest says? Fast: every
 * file exists with its recorded size. Deep: and its content digest
 * (digest.ts) matches.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { EngineError } from "../errors.js";
import { digestFiles } from "./digest.js";
import { isErrno } from "./durable.js";
import type { SnapshotManifest } from "./manifest.js";

export interface FileProblem {
  file: string;
  problem: "missing" | "not-a-file" | "truncated" | "oversized" | "checksum-mismatch";
  detail: string;
}

export class SnapshotCorruptError extends EngineError {
  readonly problems: readonly FileProblem[];
  constructor(key: string, problems: readonly FileProblem[]) {
    super(
      "SNAPSHOT_CORRUPT",
      `snapshot ${key} is corrupt: ${problems.map((p) => `${p.file} ${p.problem} (${p.detail})`).join("; ")}`,
      { hint: "quarantine it and capture again" },
    );
    this.problems = problems;
  }
}

export interface VerifyOptions {
  /** Also digest every file and compare with the manifest (reads all the data). */
  deep?: boolean;
  /**
   * Digests the caller computed from the very bytes it wrote into these files
   * (an unpack): compared with the manifest whatever `deep` says, instead of
   * reading the files again.
   */
  digests?: ReadonlyMap<string, string>;
}

/** undefined when the files match; otherwise an error naming every problem. */
export async function verifySnapshotFiles(
  dir: string,
  manifest: SnapshotManifest,
  { deep = false, digests }: VerifyOptions = {},
): Promise<SnapshotCorruptError | undefined> {
  const problems: FileProblem[] = [];
  const compare: { file: SnapshotManifest["files"][number]; digest?: string }[] = [];
  for (const f of manifest.files) {
    const path = join(dir, f.name);
    let size: number;
    try {
      const s = await stat(path);
      if (!s.isFile()) {
        problems.push({ file: f.name, problem: "not-a-file", detail: "expected a regular file" });
        continue;
      }
      size = s.size;
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
      problems.push({ file: f.name, problem: "missing", detail: `expected ${f.bytes} bytes` });
      continue;
    }
    if (size !== f.bytes) {
      const problem = size < f.bytes ? "truncated" : "oversized";
      problems.push({ file: f.name, problem, detail: `${size} bytes, expected ${f.bytes}` });
      continue;
    }
    const known = digests?.get(f.name);
    if (known !== undefined) compare.push({ file: f, digest: known });
    else if (deep) compare.push({ file: f });
  }
  const toRead = compare.filter((c) => c.digest === undefined);
  const read = await digestFiles(toRead.map((c) => join(dir, c.file.name)));
  toRead.forEach((c, i) => (c.digest = read[i]!.digest));
  for (const { file, digest } of compare) {
    if (digest !== file.digest) {
      problems.push({
        file: file.name,
        problem: "checksum-mismatch",
        detail: `digest ${digest}, expected ${file.digest}`,
      });
    }
  }
  return problems.length ? new SnapshotCorruptError(manifest.key, problems) : undefined;
}
