/** Memory of a process from /proc: its proportional set size, and that of one mapping (the guest RAM file). */
import { readFileSync } from "node:fs";

export interface MemoryFigures {
  /** KiB, from smaps_rollup. */
  pssKiB: number;
  rssKiB: number;
  pssAnonKiB: number;
  pssFileKiB: number;
  privateDirtyKiB: number;
  sharedCleanKiB: number;
}

export interface MappingFigures {
  rssKiB: number;
  pssKiB: number;
  /** Pages the guest wrote: copied on write, private to it. */
  privateDirtyKiB: number;
  /** Template pages still shared with other guests (through the page cache). */
  sharedCleanKiB: number;
}

const FIELDS: Record<string, keyof MemoryFigures> = {
  Pss: "pssKiB",
  Rss: "rssKiB",
  Pss_Anon: "pssAnonKiB",
  Pss_File: "pssFileKiB",
  Private_Dirty: "privateDirtyKiB",
  Shared_Clean: "sharedCleanKiB",
};

const line = /^(\w+):\s+(\d+) kB$/;

export function processMemory(pid: number): MemoryFigures {
  const out: MemoryFigures = {
    pssKiB: 0,
    rssKiB: 0,
    pssAnonKiB: 0,
    pssFileKiB: 0,
    privateDirtyKiB: 0,
    sharedCleanKiB: 0,
  };
  for (const l of readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").split("\n")) {
    const m = line.exec(l);
    const key = m ? FIELDS[m[1]!] : undefined;
    if (m && key) out[key] = Number(m[2]);
  }
  return out;
}

/** Sums the smaps entries of every mapping of `path` in `pid`. */
export function mappingMemory(pid: number, path: string): MappingFigures {
  const out: MappingFigures = { rssKiB: 0, pssKiB: 0, privateDirtyKiB: 0, sharedCleanKiB: 0 };
  let inside = false;
  for (const l of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(l)) {
      inside = l.trimEnd().endsWith(` ${path}`);
      continue;
    }
    if (!inside) continue;
    const m = line.exec(l);
    if (!m) continue;
    const v = Number(m[2]);
    if (m[1] === "Rss") out.rssKiB += v;
    else if (m[1] === "Pss") out.pssKiB += v;
    else if (m[1] === "Private_Dirty") out.privateDirtyKiB += v;
    else if (m[1] === "Shared_Clean") out.sharedCleanKiB += v;
  }
  return out;
}
