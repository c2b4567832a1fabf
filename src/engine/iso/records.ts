import { EngineError } from "../errors.js";
import type { PlannedDir, TreePlan } from "./types.js";

/** ECMA-119 byte encoders: directory records (9.1), path tables (9.4), dates (8.4.26.1, 9.1.5). */

/** Logical sector and block size; the only one Linux's isofs and every CD reader expect. */
export const SECTOR = 2048;

/** 7.3.3: little-endian then big-endian copy of a 32-bit number. */
export function writeBoth32(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32LE(value, offset);
  buf.writeUInt32BE(value, offset + 4);
}

/** 7.2.3: the same for 16 bits. */
export function writeBoth16(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt16LE(value, offset);
  buf.writeUInt16BE(value, offset + 2);
}

/** 33 fixed bytes, the identifier, and a pad byte that keeps the record length even. */
export function dirRecordLength(identifier: Buffer): number {
  return 33 + identifier.length + (identifier.length % 2 === 0 ? 1 : 0);
}

/** 8 fixed bytes, the identifier, and a pad byte that keeps the record length even. */
export function pathTableRecordLength(identifier: Buffer): number {
  return 8 + identifier.length + (identifier.length % 2);
}

function checkDate(date: Date): void {
  const year = date.getUTCFullYear();
  if (Number.isNaN(date.getTime()) || year < 1900 || year > 2155) {
    throw new EngineError("ISO_DATE_INVALID", `ISO recording date ${String(date)} is outside 1900-2155`, {
      hint: "pass a valid date, or none to use the current time",
    });
  }
}

/** 9.1.5: seven binary bytes, years since 1900 first; always UTC (offset 0). */
export function recordDate(date: Date): Buffer {
  checkDate(date);
  return Buffer.from([
    date.getUTCFullYear() - 1900,
    date.getUTCMonth() + 1,
    date.getUTCDate(),
    date.getUTCHours(),
    date.getUTCMinutes(),
    date.getUTCSeconds(),
    0,
  ]);
}

/** 8.4.26.1: "YYYYMMDDHHMMSScc" in ASCII digits plus a GMT offset byte; undefined means "not specified". */
export function volumeDate(date: Date | undefined): Buffer {
  const out = Buffer.alloc(17, "0");
  out[16] = 0;
  if (date === undefined) return out;
  checkDate(date);
  const pad = (n: number, width: number) => String(n).padStart(width, "0");
  const text =
    pad(date.getUTCFullYear(), 4) +
    pad(date.getUTCMonth() + 1, 2) +
    pad(date.getUTCDate(), 2) +
    pad(date.getUTCHours(), 2) +
    pad(date.getUTCMinutes(), 2) +
    pad(date.getUTCSeconds(), 2) +
    pad(Math.floor(date.getUTCMilliseconds() / 10), 2);
  out.write(text, 0, "ascii");
  return out;
}

export interface RecordFields {
  identifier: Buffer;
  sector: number;
  size: number;
  isDir: boolean;
  date: Buffer;
}

export function encodeDirRecord(buf: Buffer, offset: number, r: RecordFields): number {
  const length = dirRecordLength(r.identifier);
  buf[offset] = length;
  buf[offset + 1] = 0; // no extended attribute record
  writeBoth32(buf, offset + 2, r.sector);
  writeBoth32(buf, offset + 10, r.size);
  r.date.copy(buf, offset + 18);
  buf[offset + 25] = r.isDir ? 0x02 : 0x00;
  buf[offset + 26] = 0; // not interleaved
  buf[offset + 27] = 0;
  writeBoth16(buf, offset + 28, 1); // volume sequence number
  buf[offset + 32] = r.identifier.length;
  r.identifier.copy(buf, offset + 33);
  return length;
}

/** One directory's whole extent; unused bytes stay zero, which readers take as "rest of sector empty". */
export function encodeDirectory(dir: PlannedDir, date: Buffer): Buffer {
  const buf = Buffer.alloc(dir.size);
  for (const { identifier, offset, target } of dir.records) {
    encodeDirRecord(buf, offset, {
      identifier,
      sector: target.sector,
      size: target.size,
      isDir: target.kind === "dir",
      date,
    });
  }
  return buf;
}

/** The L (little-endian) or M (big-endian) path table, padded to whole sectors. */
export function encodePathTable(tree: TreePlan, endian: "L" | "M"): Buffer {
  const buf = Buffer.alloc(Math.ceil(tree.pathTableBytes / SECTOR) * SECTOR);
  let offset = 0;
  for (const dir of tree.dirs) {
    buf[offset] = dir.identifier.length;
    buf[offset + 1] = 0;
    if (endian === "L") {
      buf.writeUInt32LE(dir.sector, offset + 2);
      buf.writeUInt16LE(dir.parent, offset + 6);
    } else {
      buf.writeUInt32BE(dir.sector, offset + 2);
      buf.writeUInt16BE(dir.parent, offset + 6);
    }
    dir.identifier.copy(buf, offset + 8);
    offset += pathTableRecordLength(dir.identifier);
  }
  return buf;
}
