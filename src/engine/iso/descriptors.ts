import { jolietVolumeId, ucs2 } from "./names.js";
import { SECTOR, encodeDirRecord, recordDate, volumeDate, writeBoth16, writeBoth32 } from "./records.js";
import type { IsoPlan, TreePlan } from "./types.js";

/** ECMA-119 8.4 (primary), 8.5 with Joliet's escape sequence (supplementary), 8.3 (terminator). */

const APPLICATION_ID = "HEXCLAVE EMULATOR";
/** "%/E": UCS-2 level 3, the Joliet level every reader (Linux isofs included) recognises. */
const JOLIET_ESCAPE = Buffer.from("%/E", "ascii");

type Kind = "primary" | "joliet";

/** A text field: ASCII padded with spaces, or UCS-2 padded with UCS-2 spaces (an odd last byte stays 0). */
function writeText(buf: Buffer, offset: number, width: number, text: string, kind: Kind): void {
  if (kind === "primary") {
    buf.write(text.padEnd(width, " "), offset, width, "ascii");
  } else {
    ucs2(text.padEnd(Math.floor(width / 2), " ")).copy(buf, offset);
  }
}

function header(type: number): Buffer {
  const buf = Buffer.alloc(SECTOR);
  buf[0] = type;
  buf.write("CD001", 1, "ascii");
  buf[6] = 1; // descriptor version
  return buf;
}

export function encodeVolumeDescriptor(plan: IsoPlan, kind: Kind, date: Date): Buffer {
  const tree: TreePlan = kind === "primary" ? plan.primary : plan.joliet;
  const buf = header(kind === "primary" ? 1 : 2);
  writeText(buf, 8, 32, "", kind); // system id
  writeText(buf, 40, 32, kind === "primary" ? plan.volumeId : jolietVolumeId(plan.volumeId), kind);
  writeBoth32(buf, 80, plan.totalSectors);
  if (kind === "joliet") JOLIET_ESCAPE.copy(buf, 88);
  writeBoth16(buf, 120, 1); // volume set size
  writeBoth16(buf, 124, 1); // volume sequence number
  writeBoth16(buf, 128, SECTOR);
  writeBoth32(buf, 132, tree.pathTableBytes);
  buf.writeUInt32LE(tree.lPathTableSector, 140);
  buf.writeUInt32BE(tree.mPathTableSector, 148);
  const root = tree.dirs[0]!;
  encodeDirRecord(buf, 156, {
    identifier: root.identifier,
    sector: root.sector,
    size: root.size,
    isDir: true,
    date: recordDate(date),
  });
  writeText(buf, 190, 128, "", kind); // volume set
  writeText(buf, 318, 128, "", kind); // publisher
  writeText(buf, 446, 128, "", kind); // data preparer
  writeText(buf, 574, 128, APPLICATION_ID, kind);
  writeText(buf, 702, 37, "", kind); // copyright file
  writeText(buf, 739, 37, "", kind); // abstract file
  writeText(buf, 776, 37, "", kind); // bibliographic file
  volumeDate(date).copy(buf, 813); // creation
  volumeDate(date).copy(buf, 830); // modification
  volumeDate(undefined).copy(buf, 847); // expiration: never
  volumeDate(undefined).copy(buf, 864); // effective: immediately
  buf[881] = 1; // file structure version
  return buf;
}

export function encodeTerminator(): Buffer {
  return header(255);
}
