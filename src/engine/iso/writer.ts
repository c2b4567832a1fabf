import { open, rename, rm, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { EngineError } from "../errors.js";
import { encodeTerminator, encodeVolumeDescriptor } from "./descriptors.js";
import { FIRST_FREE_SECTOR, PVD_SECTOR, planIso } from "./layout.js";
import { SECTOR, encodeDirectory, encodePathTable, recordDate } from "./records.js";
import type { IsoFile, IsoPlan, IsoSpec, PlannedFile } from "./types.js";

const COPY_CHUNK = 256 * 1024;

/**
 * Writes the image sector by sector in plan order, holding at most one
 * directory or one copy chunk in memory. It goes to `<outPath>.tmp` first and
 * is renamed into place, so `outPath` is either the old file or a whole ISO.
 */
export async function writeIso(outPath: string, spec: IsoSpec): Promise<{ bytes: number }> {
  const date = spec.date ?? new Date();
  recordDate(date); // validates before anything touches the disk
  const plan = planIso(spec, await statSources(spec.files));
  const tmp = `${outPath}.tmp`;
  let out: FileHandle | undefined;
  try {
    out = await open(tmp, "w");
    const bytes = await writeImage(new Sink(out), plan, date);
    await out.sync();
    await out.close();
    out = undefined;
    await rename(tmp, outPath);
    return { bytes };
  } catch (err) {
    await out?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    if (err instanceof EngineError) throw err;
    throw new EngineError(
      "ISO_WRITE_FAILED",
      `could not write ISO image ${outPath}: ${(err as Error).message}`,
      {
        hint: "check that the directory exists, is writable and has free space",
        cause: err,
      },
    );
  }
}

/** Sizes of the `sourcePath` files, which the plan needs up front. */
async function statSources(files: readonly IsoFile[]): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const file of files) {
    if (!("sourcePath" in file) || sizes.has(file.sourcePath)) continue;
    const info = await stat(file.sourcePath).catch((err: unknown) => {
      throw new EngineError(
        "ISO_SOURCE_INVALID",
        `cannot read "${file.sourcePath}" for ISO path "${file.path}": ${(err as NodeJS.ErrnoException).code ?? err}`,
        {
          hint: "check that the source file exists and is readable",
          cause: err,
        },
      );
    });
    if (!info.isFile()) {
      throw new EngineError(
        "ISO_SOURCE_INVALID",
        `"${file.sourcePath}" (ISO path "${file.path}") is not a regular file`,
        {
          hint: "list files, not directories; directories come from the ISO paths",
        },
      );
    }
    sizes.set(file.sourcePath, info.size);
  }
  return sizes;
}

/** Sequential writes with a running position, so every extent can be checked against its planned sector. */
class Sink {
  position = 0;
  constructor(private readonly out: FileHandle) {}

  async write(buf: Buffer, length = buf.length): Promise<void> {
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await this.out.write(buf, done, length - done, null);
      done += bytesWritten;
    }
    this.position += length;
  }

  /** Zero-fills to the next sector boundary. */
  async pad(): Promise<void> {
    const rest = (SECTOR - (this.position % SECTOR)) % SECTOR;
    if (rest > 0) await this.write(Buffer.alloc(rest));
  }

  at(sector: number, what: string): void {
    if (this.position !== sector * SECTOR) {
      throw new Error(
        `internal: ${what} planned at sector ${sector} but the writer is at byte ${this.position}`,
      );
    }
  }
}

async function writeImage(sink: Sink, plan: IsoPlan, date: Date): Promise<number> {
  await sink.write(Buffer.alloc(PVD_SECTOR * SECTOR)); // system area
  await sink.write(encodeVolumeDescriptor(plan, "primary", date));
  await sink.write(encodeVolumeDescriptor(plan, "joliet", date));
  await sink.write(encodeTerminator());
  sink.at(FIRST_FREE_SECTOR, "path tables");
  for (const tree of [plan.primary, plan.joliet]) {
    sink.at(tree.lPathTableSector, "L path table");
    await sink.write(encodePathTable(tree, "L"));
    sink.at(tree.mPathTableSector, "M path table");
    await sink.write(encodePathTable(tree, "M"));
  }
  const stamp = recordDate(date);
  for (const dir of [...plan.primary.dirs, ...plan.joliet.dirs]) {
    sink.at(dir.sector, `directory "/${dir.path}"`);
    await sink.write(encodeDirectory(dir, stamp));
  }
  for (const file of plan.files) {
    if (file.size === 0) continue;
    sink.at(file.sector, `"${file.path}"`);
    await writeFileData(sink, file);
    await sink.pad();
  }
  sink.at(plan.totalSectors, "end of image");
  return sink.position;
}

async function writeFileData(sink: Sink, file: PlannedFile): Promise<void> {
  const { source } = file;
  if ("data" in source) {
    await sink.write(typeof source.data === "string" ? Buffer.from(source.data) : source.data);
    return;
  }
  const input = await open(source.sourcePath, "r");
  try {
    const chunk = Buffer.alloc(Math.min(COPY_CHUNK, file.size + 1));
    let copied = 0;
    for (;;) {
      // Ask for one byte past the planned size so a file that grew is caught too.
      const want = Math.min(chunk.length, file.size + 1 - copied);
      const { bytesRead } = await input.read(chunk, 0, want, null);
      if (bytesRead === 0) break;
      copied += bytesRead;
      if (copied > file.size) break;
      await sink.write(chunk, bytesRead);
    }
    if (copied !== file.size) {
      throw new EngineError(
        "ISO_SOURCE_CHANGED",
        `"${source.sourcePath}" (ISO path "${file.path}") changed size while the ISO was written: expected ${file.size} bytes`,
        { hint: "do not modify source files while writing the ISO" },
      );
    }
  } finally {
    await input.close();
  }
}
