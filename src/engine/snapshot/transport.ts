/**
 * Moving a snapshot through a cache (the GitHub Action uploads it).
 *
 * packSnapshot (pack.ts) writes manifest.json and every manifest file as one
 * zstd stream (`zstd -T0 -3`, fed through a pipe: nothing is held whole in
 * memory), or plain with compression "none" for a carrier that compresses
 * it anyway (the Action's cache entries: compressed once, and unpacked
 * straight from the download by unpackSnapshotStream), with the holes left
 * out: only the data ranges the file system
 * reports (SEEK_DATA/SEEK_HOLE, holes.ts) are read, and all-zero pages within
 * them are dropped too (sparse.ts).
 * unpackSnapshot (unpack.ts) takes the destination's store lock, recreates
 * each file in a hidden temporary dir at its apparent size (ftruncate: all
 * hole) and writes the data extents at their offsets, so a 4 GiB RAM file with
 * 500 MiB of data allocates 500 MiB. Each file's content digest (digest.ts) is
 * computed from the extents on their way to the disk; publishing compares
 * them with the manifest's, without reading anything back, and renames the
 * directory into place. A bad archive leaves nothing behind.
 *
 * Archive format, version 1 (archive-format.ts), before compression:
 *
 *   header   "HXSNAPAR"  u16 version (1)  u16 reserved (0)  u32 fileCount
 *   file*    'F' u16 nameLength  name (UTF-8)  u64 apparentSize
 *              extent*   'E' u64 offset  u32 length  <length data bytes>
 *              'f' u64 dataBytes            (end of file: sum of its extent lengths)
 *   trailer  'T' u32 fileCount  u64 totalDataBytes  "HXSNAPEN"
 *
 * Integers are little-endian. manifest.json comes first, then the files in
 * manifest order. A file's extents are its non-zero ranges in increasing
 * offset order (each at most 1 MiB); everything between them is a hole. Each
 * extent's (offset, length) comes right before its data rather than as a list
 * up front, so packing is one pass over each file. zstd's frame checksum
 * (the carrier's, for a plain archive) catches corrupted bytes, the content
 * digests catch anything else, and the trailer catches a stream cut short.
 */
export { packSnapshot } from "./pack.js";
export type { PackOptions, PackStats, TransportStats } from "./pack.js";
export { unpackSnapshot, unpackSnapshotStream } from "./unpack.js";
export type { UnpackOptions, UnpackResult } from "./unpack.js";
