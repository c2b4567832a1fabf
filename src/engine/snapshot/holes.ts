/**
 * Where a file's data is, without reading its holes.
 *
 * A guest RAM file is mostly holes (4 GiB apparent, a few hundred MiB
 * written). Reading a hole costs no disk IO, but the first read of each hole
 * page makes the kernel allocate and zero a page-cache page: measured here,
 * 4 GiB of never-read holes took 9.6 s to read (and filled 4 GiB of page
 * cache, evicting the guest image), the same holes once cached 0.7 s. So
 * packing and hashing ask the file system where the data is, with
 * lseek(SEEK_DATA / SEEK_HOLE).
 *
 * Node has no lseek binding. The stand-ins considered: `filefrag -v` (FIEMAP:
 * e2fsprogs and Linux only, unsupported on tmpfs, reports unwritten
 * preallocated extents that read as zeros), python3 (not on every machine).
 * What is used: a perl one-liner calling sysseek with the platform's SEEK_DATA
 * / SEEK_HOLE values (Linux 3/4, macOS 4/3). perl is part of every Debian and
 * Ubuntu base system (perl-base is essential) and of macOS; it needs no
 * module. SEEK_DATA never calls data a hole: on a file system without hole
 * support the whole file is reported as data.
 *
 * When perl is missing, the platform is another, or the answer does not parse,
 * the map is the whole file ("read-all"): callers then read every byte and
 * still find zero pages by comparison (sparse.ts), which is correct anywhere,
 * only slower. Either way callers also skip zero pages inside data ranges
 * (a guest that zeroed memory, a non-sparse copy).
 */
import { run } from "../exec.js";

export interface ByteRange {
  start: number;
  /** Exclusive. */
  end: number;
}

export interface DataMap {
  /** Sorted, disjoint ranges that may hold data; everything else reads as zeros. */
  ranges: ByteRange[];
  method: "seek" | "read-all";
}

/** Below this, one spawn costs more than reading the file. */
export const MIN_SIZE_FOR_SEEK = 8 << 20;

const SEEK_CONSTANTS: Partial<Record<NodeJS.Platform, { data: number; hole: number }>> = {
  linux: { data: 3, hole: 4 },
  darwin: { data: 4, hole: 3 },
};

// Prints "start end" per data range. errno 6 (ENXIO, same on Linux and macOS): no data after pos.
// A SEEK_DATA failure at offset 0 for any other reason (EINVAL: not supported) means "all data".
const SEEK_SCRIPT = `
my ($p, $sd, $sh) = @ARGV;
open(my $f, "<", $p) or die "open $p: $!\\n";
my $size = -s $f;
my $pos = 0;
while ($pos < $size) {
  my $d = sysseek($f, $pos, $sd);
  if (!defined $d) {
    last if ($! + 0) == 6;
    if ($pos == 0) { print "0 $size\\n"; exit 0; }
    die "SEEK_DATA at $pos: $!\\n";
  }
  my $h = sysseek($f, $d, $sh);
  defined $h or die "SEEK_HOLE at $d: $!\\n";
  $d += 0; $h += 0;
  last if $h <= $d;
  print "$d $h\\n";
  $pos = $h;
}
`;

let perlUnavailable = false;

/** The data map of the file at `path`, whose size is `size` (the caller's fstat). */
export async function dataMap(path: string, size: number): Promise<DataMap> {
  const whole: DataMap = { ranges: size > 0 ? [{ start: 0, end: size }] : [], method: "read-all" };
  const seek = SEEK_CONSTANTS[process.platform];
  if (size < MIN_SIZE_FOR_SEEK || !seek || perlUnavailable) return whole;
  let stdout: string;
  try {
    ({ stdout } = await run("perl", ["-e", SEEK_SCRIPT, path, String(seek.data), String(seek.hole)], {
      timeoutMs: 60_000,
    }));
  } catch (err) {
    if ((err as { code?: string }).code === "COMMAND_NOT_FOUND") perlUnavailable = true;
    return whole;
  }
  const ranges = parseRanges(stdout, size);
  return ranges ? { ranges, method: "seek" } : whole;
}

/** "start end" lines → ranges clipped to `size`, or undefined if anything is off. */
export function parseRanges(text: string, size: number): ByteRange[] | undefined {
  const ranges: ByteRange[] = [];
  let last = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const m = /^(\d+) (\d+)$/.exec(line.trim());
    if (!m) return undefined;
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), size);
    if (start < last || end <= start) return undefined;
    ranges.push({ start, end });
    last = end;
  }
  return ranges;
}
