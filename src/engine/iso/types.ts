/** One file on the disk: its ISO path ("dir/name.txt") and contents, in memory or copied from a file. */
export type IsoFile =
  { path: string; data: Buffer | string /* utf8 */ } | { path: string; sourcePath: string };

export interface IsoSpec {
  /** Primary volume id: 1-32 of A-Z 0-9 _ (Joliet carries its first 16). */
  volumeId: string;
  /** Directories are implied by the paths; there is no way to add an empty one. */
  files: IsoFile[];
  /** Recording time of every record; fix it for byte-identical output. Defaults to now. */
  date?: Date;
}

/** The whole image laid out in 2048-byte sectors, before any byte is written. */
export interface IsoPlan {
  volumeId: string;
  totalSectors: number;
  primary: TreePlan;
  joliet: TreePlan;
  /** Every file once, in the order their data is written; both trees point at the same extents. */
  files: PlannedFile[];
}

export interface TreePlan {
  /** Bytes of one path table (ECMA-119 "Path Table Size"); each copy starts on its own sector. */
  pathTableBytes: number;
  lPathTableSector: number;
  mPathTableSector: number;
  /** Path table order (level, parent number, identifier); dirs[0] is the root. */
  dirs: PlannedDir[];
}

export interface PlannedDir {
  kind: "dir";
  /** ISO path, "" for the root. */
  path: string;
  /** As written in the parent's record and the path table; the root's is 0x00. */
  identifier: Buffer;
  /** 1-based path table number, and the parent's (the root is its own parent). */
  number: number;
  parent: number;
  sector: number;
  /** Extent length in bytes, a multiple of 2048. */
  size: number;
  /** ".", "..", then the children in sort order; `offset` never lets a record cross a sector. */
  records: PlannedRecord[];
}

export interface PlannedRecord {
  identifier: Buffer;
  offset: number;
  target: PlannedDir | PlannedFile;
}

export interface PlannedFile {
  kind: "file";
  path: string;
  size: number;
  /** First sector of the data; 0 for an empty file, which owns no sectors. */
  sector: number;
  source: IsoFile;
}
