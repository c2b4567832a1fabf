import { EngineError } from "../errors.js";
import { validateVolumeId } from "./names.js";
import { SECTOR, dirRecordLength, pathTableRecordLength } from "./records.js";
import { buildTree, orderedChildren } from "./tree.js";
import type { DirNode, FileNode, TreeKind } from "./tree.js";
import type { IsoFile, IsoPlan, IsoSpec, PlannedDir, PlannedFile, TreePlan } from "./types.js";

/** Sectors 0-15 are the system area; the descriptors follow: PVD, Joliet SVD, terminator. */
export const PVD_SECTOR = 16;
export const FIRST_FREE_SECTOR = 19;

const DOT = Buffer.from([0]);
const DOTDOT = Buffer.from([1]);
const sectorsFor = (bytes: number) => Math.ceil(bytes / SECTOR);

/**
 * Lays the image out without touching the disk: every descriptor, path table,
 * directory and file gets its sectors. `sourceSizes` gives the size of each
 * `sourcePath` file (writeIso stats them), so the function stays pure.
 */
export function planIso(spec: IsoSpec, sourceSizes: ReadonlyMap<string, number> = new Map()): IsoPlan {
  validateVolumeId(spec.volumeId);
  const root = buildTree(spec.files, (file) => sizeOf(file, sourceSizes));

  const filesByNode = new Map<FileNode, PlannedFile>();
  const primary = planTree(root, "primary", filesByNode);
  const joliet = planTree(root, "joliet", filesByNode);

  let next = FIRST_FREE_SECTOR;
  for (const tree of [primary, joliet]) {
    tree.lPathTableSector = next;
    tree.mPathTableSector = next + sectorsFor(tree.pathTableBytes);
    next = tree.mPathTableSector + sectorsFor(tree.pathTableBytes);
  }
  for (const dir of [...primary.dirs, ...joliet.dirs]) {
    dir.sector = next;
    next += dir.size / SECTOR;
  }
  // Data in primary tree order (filesByNode filled it so), like mkisofs; empty files own no sectors.
  const files = [...filesByNode.values()];
  for (const file of files) {
    file.sector = file.size === 0 ? 0 : next;
    next += sectorsFor(file.size);
  }
  return { volumeId: spec.volumeId, totalSectors: next, primary, joliet, files };
}

function sizeOf(file: IsoFile, sourceSizes: ReadonlyMap<string, number>): number {
  if ("data" in file) return typeof file.data === "string" ? Buffer.byteLength(file.data) : file.data.length;
  const size = sourceSizes.get(file.sourcePath);
  if (size === undefined) {
    const hint = "pass the sizes of sourcePath files to planIso, or use writeIso, which stats them";
    throw new EngineError("ISO_SOURCE_SIZE_MISSING", `no size for "${file.sourcePath}" ("${file.path}")`, {
      hint,
    });
  }
  return size;
}

/** Numbers the directories in path table order (breadth first, children sorted) and packs their records. */
function planTree(root: DirNode, kind: TreeKind, filesByNode: Map<FileNode, PlannedFile>): TreePlan {
  const dirs: PlannedDir[] = [];
  const queue: { node: DirNode; dir: PlannedDir }[] = [];
  const enqueue = (node: DirNode, identifier: Buffer, parent: PlannedDir | undefined): PlannedDir => {
    const number = dirs.length + 1;
    const dir: PlannedDir = {
      kind: "dir",
      path: node.path,
      identifier,
      number,
      parent: parent?.number ?? number,
      sector: 0,
      size: 0,
      records: [],
    };
    dir.records.push(
      { identifier: DOT, offset: 0, target: dir },
      { identifier: DOTDOT, offset: 0, target: parent ?? dir },
    );
    dirs.push(dir);
    queue.push({ node, dir });
    return dir;
  };
  enqueue(root, DOT, undefined);

  // Breadth first with sorted children is exactly the path table order of ECMA-119 6.9.1.
  for (let i = 0; i < queue.length; i++) {
    const { node, dir } = queue[i]!;
    for (const { identifier, node: child } of orderedChildren(node, kind)) {
      if (child.kind === "dir") {
        dir.records.push({ identifier, offset: 0, target: enqueue(child, identifier, dir) });
      } else {
        let file = filesByNode.get(child);
        if (!file) {
          file = { kind: "file", path: child.path, size: child.size, sector: 0, source: child.source };
          filesByNode.set(child, file);
        }
        dir.records.push({ identifier, offset: 0, target: file });
      }
    }
    dir.size = packRecords(dir);
  }
  if (dirs.length > 0xffff) {
    // Path table parent numbers are 16-bit.
    const message = `${dirs.length} directories; ISO 9660 path tables number at most 65535`;
    throw new EngineError("ISO_TOO_MANY_DIRS", message, { hint: "use fewer directories" });
  }

  const pathTableBytes = dirs.reduce((sum, d) => sum + pathTableRecordLength(d.identifier), 0);
  return { pathTableBytes, lPathTableSector: 0, mPathTableSector: 0, dirs };
}

/** Gives each record its offset, moving it to the next sector rather than letting it straddle one. */
function packRecords(dir: PlannedDir): number {
  let offset = 0;
  for (const record of dir.records) {
    const length = dirRecordLength(record.identifier);
    if ((offset % SECTOR) + length > SECTOR) offset = sectorsFor(offset) * SECTOR;
    record.offset = offset;
    offset += length;
  }
  return sectorsFor(offset) * SECTOR;
}
