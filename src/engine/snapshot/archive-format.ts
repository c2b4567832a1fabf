/**
 * Encoder and parser of the snapshot archive framing; the format is specified
 * in transport.ts's header. The parser trusts nothing: magic, version, names,
 * extent order and bounds, per-file and total byte counts, and the end of the
 * stream are all checked.
 */
import { isSnapshotFileName, MANIFEST_FILE } from "./manifest.js";

export const ARCHIVE_VERSION = 1;
const MAGIC = Buffer.from("HXSNAPAR", "ascii");
const END_MAGIC = Buffer.from("HXSNAPEN", "ascii");
const TAG_FILE = 0x46; // F
const TAG_EXTENT = 0x45; // E
const TAG_FILE_END = 0x66; // f
const TAG_TRAILER = 0x54; // T
const MAX_FILES = 1024;
const MAX_EXTENT = 64 << 20;

export function encodeHeader(fileCount: number): Buffer {
  const b = Buffer.alloc(16);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(ARCHIVE_VERSION, 8);
  b.writeUInt32LE(fileCount, 12);
  return b;
}

export function encodeFileStart(name: string, apparentSize: number): Buffer {
  const n = Buffer.from(name, "utf8");
  const b = Buffer.alloc(1 + 2 + n.length + 8);
  b[0] = TAG_FILE;
  b.writeUInt16LE(n.length, 1);
  n.copy(b, 3);
  b.writeBigUInt64LE(BigInt(apparentSize), 3 + n.length);
  return b;
}

export function encodeExtent(offset: number, length: number): Buffer {
  const b = Buffer.alloc(13);
  b[0] = TAG_EXTENT;
  b.writeBigUInt64LE(BigInt(offset), 1);
  b.writeUInt32LE(length, 9);
  return b;
}

export function encodeFileEnd(dataBytes: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = TAG_FILE_END;
  b.writeBigUInt64LE(BigInt(dataBytes), 1);
  return b;
}

export function encodeTrailer(fileCount: number, totalDataBytes: number): Buffer {
  const b = Buffer.alloc(1 + 4 + 8 + 8);
  b[0] = TAG_TRAILER;
  b.writeUInt32LE(fileCount, 1);
  b.writeBigUInt64LE(BigInt(totalDataBytes), 5);
  END_MAGIC.copy(b, 13);
  return b;
}

/** The archive's first bytes are the framing's own (packed with compression "none"), not zstd's. */
export const isPlainArchive = (head: Buffer): boolean =>
  head.length >= MAGIC.length && head.subarray(0, MAGIC.length).equals(MAGIC);

/** What the reader yields, in stream order. `data` pieces of one extent arrive in order. */
export type ArchiveEvent =
  | { type: "file"; name: string; apparentSize: number }
  | { type: "data"; offset: number; data: Buffer }
  | { type: "file-end"; dataBytes: number };

/** The framing is wrong: the message says where and how. */
export class ArchiveFormatError extends Error {}

/** Parse a decompressed archive stream; throws ArchiveFormatError on anything malformed or truncated. */
export async function* readArchive(source: AsyncIterable<Buffer>): AsyncGenerator<ArchiveEvent> {
  const src = new ByteSource(source);
  const head = await src.exact(16, "header");
  if (!head.subarray(0, 8).equals(MAGIC)) throw new ArchiveFormatError("not a snapshot archive (bad magic)");
  const version = head.readUInt16LE(8);
  if (version !== ARCHIVE_VERSION) {
    throw new ArchiveFormatError(`archive format version ${version}; this engine reads ${ARCHIVE_VERSION}`);
  }
  const fileCount = head.readUInt32LE(12);
  if (fileCount > MAX_FILES) throw new ArchiveFormatError(`implausible file count ${fileCount}`);
  const names = new Set<string>();
  let total = 0;
  for (let i = 0; i < fileCount; i++) {
    const tag = await src.exact(3, `file ${i} header`);
    if (tag[0] !== TAG_FILE) throw new ArchiveFormatError(`file ${i}: expected a file record`);
    const name = (await src.exact(tag.readUInt16LE(1), `file ${i} name`)).toString("utf8");
    if (!(name === MANIFEST_FILE || isSnapshotFileName(name)) || names.has(name)) {
      throw new ArchiveFormatError(`file ${i}: bad or repeated name ${JSON.stringify(name)}`);
    }
    names.add(name);
    const apparentSize = toSafeNumber((await src.exact(8, `${name} size`)).readBigUInt64LE(0), name);
    yield { type: "file", name, apparentSize };
    let next = 0; // lowest offset the next extent may start at
    let dataBytes = 0;
    for (;;) {
      const t = (await src.exact(1, `${name} record`))[0];
      if (t === TAG_FILE_END) break;
      if (t !== TAG_EXTENT) throw new ArchiveFormatError(`${name}: unexpected record tag ${t}`);
      const e = await src.exact(12, `${name} extent`);
      const offset = toSafeNumber(e.readBigUInt64LE(0), name);
      const length = e.readUInt32LE(8);
      if (offset < next || length === 0 || length > MAX_EXTENT || offset + length > apparentSize) {
        throw new ArchiveFormatError(
          `${name}: bad extent (${offset}, ${length}) in a ${apparentSize}-byte file`,
        );
      }
      let at = offset;
      for await (const piece of src.stream(length, `${name} data`)) {
        yield { type: "data", offset: at, data: piece };
        at += piece.length;
      }
      next = offset + length;
      dataBytes += length;
    }
    const recorded = toSafeNumber((await src.exact(8, `${name} end`)).readBigUInt64LE(0), name);
    if (recorded !== dataBytes) {
      throw new ArchiveFormatError(`${name}: ${dataBytes} data bytes, trailer says ${recorded}`);
    }
    total += dataBytes;
    yield { type: "file-end", dataBytes };
  }
  const tr = await src.exact(21, "trailer");
  if (tr[0] !== TAG_TRAILER || !tr.subarray(13).equals(END_MAGIC)) {
    throw new ArchiveFormatError("bad trailer");
  }
  if (tr.readUInt32LE(1) !== fileCount || toSafeNumber(tr.readBigUInt64LE(5), "trailer") !== total) {
    throw new ArchiveFormatError("trailer totals do not match the archive");
  }
  if (!(await src.atEnd())) throw new ArchiveFormatError("unexpected bytes after the trailer");
}

function toSafeNumber(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ArchiveFormatError(`${what}: value ${v} out of range`);
  return Number(v);
}

/** Pull-based reads over a chunked stream, without copying data pieces. */
class ByteSource {
  private readonly it: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(source: AsyncIterable<Buffer>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.it.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, r.value]) : r.value;
    return true;
  }

  async exact(n: number, what: string): Promise<Buffer> {
    while (this.buf.length < n) {
      if (!(await this.fill())) throw new ArchiveFormatError(`archive ends early (in ${what})`);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  async *stream(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.fill())) {
        throw new ArchiveFormatError(`archive ends early (in ${what})`);
      }
      const take = Math.min(left, this.buf.length);
      yield this.buf.subarray(0, take);
      this.buf = this.buf.subarray(take);
      left -= take;
    }
  }

  async atEnd(): Promise<boolean> {
    return this.buf.length === 0 && !(await this.fill());
  }
}
