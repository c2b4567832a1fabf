import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Readers for the ISO tests that share no code with the writer: xorriso
 * (libisofs) for listing and extraction, and a small raw parser that checks the
 * on-disk structure byte by byte.
 */

/** "joliet": the Joliet tree, names as stored; "ecma119": the primary tree, identifiers as stored (with ";1"). */
export type Tree = "joliet" | "ecma119";

function xorriso(args: string[]): { stdout: string; stderr: string } {
  const r = spawnSync("xorriso", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`xorriso ${args.join(" ")} failed (${r.status}):\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

const readOptions = (tree: Tree) =>
  tree === "joliet"
    ? ["-read_fs", "norock", "-joliet_map", "unmapped"]
    : ["-read_fs", "ecma119", "-ecma119_map", "unmapped"];

export interface Listed {
  type: "d" | "-";
  size: number;
}

/** Every path xorriso finds ("/" excluded), with type and size. Also fails on any complaint xorriso prints. */
export function listIso(iso: string, tree: Tree): Map<string, Listed> {
  const { stdout, stderr } = xorriso([...readOptions(tree), "-indev", iso, "-find", "/", "-exec", "lsdl"]);
  const complaints = stderr.split("\n").filter((l) => /: (WARNING|SORRY|FAILURE|FATAL|MISHAP) :/.test(l));
  if (complaints.length > 0) throw new Error(`xorriso complained about ${iso}:\n${complaints.join("\n")}`);
  const entries = new Map<string, Listed>();
  for (const line of stdout.split("\n")) {
    const m = /^([d-])\S+\s+\d+\s+\d+\s+\d+\s+(\d+)\s+\S+\s+\d+\s+\S+\s+'(.*)'$/.exec(line);
    if (m && m[3] !== "/") entries.set(m[3]!.slice(1), { type: m[1] as "d" | "-", size: Number(m[2]) });
  }
  return entries;
}

/** Extracts the whole tree with xorriso and reads it back as path -> bytes (directories map to null). */
export function extractIso(iso: string, tree: Tree): Map<string, Buffer | null> {
  const dir = mkdtempSync(join(tmpdir(), "iso-extract-"));
  try {
    xorriso(["-osirrox", "on", ...readOptions(tree), "-indev", iso, "-extract", "/", join(dir, "x")]);
    const found = new Map<string, Buffer | null>();
    const walk = (rel: string) => {
      for (const name of readdirSync(join(dir, "x", rel)).sort()) {
        const path = rel ? `${rel}/${name}` : name;
        const full = join(dir, "x", path);
        if (statSync(full).isDirectory()) {
          found.set(path, null);
          walk(path);
        } else {
          found.set(path, readFileSync(full));
        }
      }
    };
    walk("");
    return found;
  } finally {
    // xorriso restores the read-only modes; make them writable so a non-root user can delete them.
    execFileSync("chmod", ["-R", "u+rwX", dir]);
    rmSync(dir, { recursive: true, force: true });
  }
}

export function xorrisoVolumeId(iso: string): string {
  const { stdout } = xorriso(["-indev", iso, "-pvd_info"]);
  const m = /^Volume Id\s*:\s?(.*)$/m.exec(stdout);
  if (!m) throw new Error(`no "Volume Id" in xorriso -pvd_info output:\n${stdout}`);
  return m[1]!.trimEnd();
}

// --- raw structure ----------------------------------------------------------

const SECTOR = 2048;

/** Reads a both-endian 32-bit field and fails if its two halves disagree. */
export function both32(buf: Buffer, offset: number): number {
  const le = buf.readUInt32LE(offset);
  const be = buf.readUInt32BE(offset + 4);
  if (le !== be) throw new Error(`both-endian field at ${offset} disagrees: LE ${le}, BE ${be}`);
  return le;
}

export function both16(buf: Buffer, offset: number): number {
  const le = buf.readUInt16LE(offset);
  const be = buf.readUInt16BE(offset + 2);
  if (le !== be) throw new Error(`both-endian field at ${offset} disagrees: LE ${le}, BE ${be}`);
  return le;
}

export interface RawRecord {
  identifier: Buffer;
  sector: number;
  size: number;
  isDir: boolean;
  /** Byte offset within the directory extent. */
  offset: number;
}

export function parseRecord(buf: Buffer, offset: number): RawRecord {
  const length = buf[offset]!;
  const idLength = buf[offset + 32]!;
  if (length !== 33 + idLength + (idLength % 2 === 0 ? 1 : 0))
    throw new Error(`bad record length at ${offset}`);
  both16(buf, offset + 28);
  return {
    identifier: buf.subarray(offset + 33, offset + 33 + idLength),
    sector: both32(buf, offset + 2),
    size: both32(buf, offset + 10),
    isDir: (buf[offset + 25]! & 2) !== 0,
    offset,
  };
}

/** Walks one directory extent the way Linux isofs does: a zero length byte ends the sector. */
export function readDirectory(image: Buffer, sector: number, size: number): RawRecord[] {
  if (size % SECTOR !== 0) throw new Error(`directory at ${sector} has size ${size}, not whole sectors`);
  const extent = image.subarray(sector * SECTOR, sector * SECTOR + size);
  const records: RawRecord[] = [];
  for (let s = 0; s < size; s += SECTOR) {
    let offset = s;
    while (offset < s + SECTOR && extent[offset]! > 0) {
      const record = parseRecord(extent, offset);
      if (offset + extent[offset]! > s + SECTOR) throw new Error(`record at ${offset} crosses a sector`);
      records.push(record);
      offset += extent[offset]!;
    }
  }
  return records;
}

export interface RawDescriptor {
  type: number;
  volumeId: Buffer;
  escape: Buffer;
  spaceSize: number;
  pathTableSize: number;
  lPathTable: number;
  mPathTable: number;
  root: RawRecord;
}

export function readDescriptor(image: Buffer, sector: number): RawDescriptor {
  const d = image.subarray(sector * SECTOR, (sector + 1) * SECTOR);
  if (d.toString("ascii", 1, 6) !== "CD001" || d[6] !== 1)
    throw new Error(`no volume descriptor at ${sector}`);
  if (d[0] === 1 || d[0] === 2) {
    if (both16(d, 128) !== SECTOR || both16(d, 120) !== 1 || both16(d, 124) !== 1) {
      throw new Error(`descriptor ${sector}: bad block size or volume set fields`);
    }
  }
  return {
    type: d[0]!,
    volumeId: d.subarray(40, 72),
    escape: d.subarray(88, 91),
    spaceSize: d[0] === 255 ? 0 : both32(d, 80),
    pathTableSize: d[0] === 255 ? 0 : both32(d, 132),
    lPathTable: d.readUInt32LE(140),
    mPathTable: d.readUInt32BE(148),
    root: d[0] === 255 ? parseRecord(Buffer.from([34, ...Buffer.alloc(31), 0, 0]), 0) : parseRecord(d, 156),
  };
}

export interface PathTableEntry {
  identifier: Buffer;
  sector: number;
  parent: number;
}

export function readPathTable(
  image: Buffer,
  sector: number,
  size: number,
  endian: "L" | "M",
): PathTableEntry[] {
  const table = image.subarray(sector * SECTOR, sector * SECTOR + size);
  const entries: PathTableEntry[] = [];
  for (let offset = 0; offset < size;) {
    const idLength = table[offset]!;
    entries.push({
      identifier: table.subarray(offset + 8, offset + 8 + idLength),
      sector: endian === "L" ? table.readUInt32LE(offset + 2) : table.readUInt32BE(offset + 2),
      parent: endian === "L" ? table.readUInt16LE(offset + 6) : table.readUInt16BE(offset + 6),
    });
    offset += 8 + idLength + (idLength % 2);
  }
  return entries;
}

export const ucs2 = (s: string) => Buffer.from(s, "utf16le").swap16();
export const fromUcs2 = (b: Buffer) => Buffer.from(b).swap16().toString("utf16le");

// --- whole-image structure check -------------------------------------------

function paddedCompare(a: string, b: string): number {
  const n = Math.max(a.length, b.length);
  const [x, y] = [a.padEnd(n, " "), b.padEnd(n, " ")];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** ECMA-119 9.3: file name, then extension, each padded with spaces; then version. */
function ecmaOrder(a: Buffer, b: Buffer): number {
  const split = (id: Buffer) => {
    const [nameExt = "", version = ""] = id.toString("ascii").split(";");
    const dot = nameExt.indexOf(".");
    return dot < 0 ? [nameExt, "", version] : [nameExt.slice(0, dot), nameExt.slice(dot + 1), version];
  };
  const [x, y] = [split(a), split(b)];
  return paddedCompare(x[0]!, y[0]!) || paddedCompare(x[1]!, y[1]!) || paddedCompare(y[2]!, x[2]!);
}

export interface TreeFiles {
  /** Path as the tree names it (no version) -> record; directories included. */
  entries: Map<string, RawRecord>;
}

/**
 * Checks what Linux isofs and other readers rely on: empty system area,
 * descriptors at 16-18, volume size matching the file, "." and ".." records,
 * sorted records that never cross a sector, and L/M path tables that match
 * the directory tree. Returns each tree's records by path.
 */
export function checkStructure(image: Buffer): {
  primary: TreeFiles;
  joliet: TreeFiles;
  pvd: RawDescriptor;
  svd: RawDescriptor;
} {
  if (image.length % SECTOR !== 0) throw new Error(`image size ${image.length} is not whole sectors`);
  if (image.subarray(0, 16 * SECTOR).some((b) => b !== 0)) throw new Error("system area is not zero");
  const pvd = readDescriptor(image, 16);
  const svd = readDescriptor(image, 17);
  const terminator = readDescriptor(image, 18);
  if (pvd.type !== 1 || svd.type !== 2 || terminator.type !== 255)
    throw new Error("descriptor types are not 1, 2, 255");
  if (svd.escape.toString("ascii") !== "%/E") throw new Error("SVD is not Joliet level 3");
  const trees = [
    {
      d: pvd,
      decode: (b: Buffer) => b.toString("ascii").replace(/;1$/, "").replace(/\.$/, ""),
      order: ecmaOrder,
    },
    {
      d: svd,
      decode: fromUcs2,
      order: (a: Buffer, b: Buffer) => paddedCompare(fromUcs2(a), fromUcs2(b)),
    },
  ].map(({ d, decode, order }) => {
    if (d.spaceSize * SECTOR !== image.length)
      throw new Error(`volume space size ${d.spaceSize} != image size`);
    const entries = new Map<string, RawRecord>();
    const walked: PathTableEntry[] = [];
    const queue: { path: string; record: RawRecord; number: number; parent: number; identifier: Buffer }[] = [
      { path: "", record: d.root, number: 1, parent: 1, identifier: Buffer.from([0]) },
    ];
    for (let i = 0; i < queue.length; i++) {
      const dir = queue[i]!;
      walked.push({ identifier: dir.identifier, sector: dir.record.sector, parent: dir.parent });
      const records = readDirectory(image, dir.record.sector, dir.record.size);
      const [dot, dotdot, ...children] = records;
      if (dot?.identifier[0] !== 0 || dot.sector !== dir.record.sector || dot.size !== dir.record.size) {
        throw new Error(`"." of "/${dir.path}" is wrong`);
      }
      const parentRecord = i === 0 ? d.root : queue[dir.parent - 1]!.record;
      if (dotdot?.identifier[0] !== 1 || dotdot.sector !== parentRecord.sector)
        throw new Error(`".." of "/${dir.path}" is wrong`);
      children.forEach((c, k) => {
        if (k > 0 && order(children[k - 1]!.identifier, c.identifier) >= 0) {
          throw new Error(`records in "/${dir.path}" are not sorted at ${decode(c.identifier)}`);
        }
        if (!c.isDir && c.size > 0 && (c.sector + Math.ceil(c.size / SECTOR)) * SECTOR > image.length) {
          throw new Error(`extent of ${decode(c.identifier)} runs past the end of the image`);
        }
        const path = dir.path ? `${dir.path}/${decode(c.identifier)}` : decode(c.identifier);
        entries.set(path, c);
      });
      // Path table order: breadth first, each directory's subdirectories in record order.
      for (const c of children.filter((c) => c.isDir)) {
        const path = dir.path ? `${dir.path}/${decode(c.identifier)}` : decode(c.identifier);
        queue.push({
          path,
          record: c,
          number: queue.length + 1,
          parent: dir.number,
          identifier: c.identifier,
        });
      }
    }
    for (const endian of ["L", "M"] as const) {
      const sector = endian === "L" ? d.lPathTable : d.mPathTable;
      const table = readPathTable(image, sector, d.pathTableSize, endian);
      const same =
        table.length === walked.length &&
        table.every(
          (t, k) =>
            t.sector === walked[k]!.sector &&
            t.parent === walked[k]!.parent &&
            t.identifier.equals(walked[k]!.identifier),
        );
      if (!same) throw new Error(`${endian} path table does not match the directory tree`);
    }
    return { entries };
  });
  return { primary: trees[0]!, joliet: trees[1]!, pvd, svd };
}
