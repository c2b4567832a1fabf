/**
 * Does a snapshot directory still hold what its manifest says? Fast: every
 * file exists with its recorded size. Deep: and its sha256 matches.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { EngineError } from "../errors.js";
import { isErrno } from "./durable.js";
import { sha256File } from "./hash.js";
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
  /** Also hash every file and compare with the manifest (reads everything). */
  deep?: boolean;
}

/** undefined when the files match; otherwise an error naming every problem. */
export async function verifySnapshotFiles(
  dir: string,
  manifest: SnapshotManifest,
  { deep = false }: VerifyOptions = {},
): Promise<SnapshotCorruptError | undefined> {
  const problems: FileProblem[] = [];
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
    if (deep) {
      const { sha256 } = await sha256File(path);
      if (sha256 !== f.sha256) {
        problems.push({
          file: f.name,
          problem: "checksum-mismatch",
          detail: `sha256 ${sha256}, expected ${f.sha256}`,
        });
      }
    }
  }
  return problems.length ? new SnapshotCorruptError(manifest.key, problems) : undefined;
}
