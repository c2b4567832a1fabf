import { EngineError, type ErrorCode } from "../errors.js";

/**
 * Identifier rules for the two directory trees. The primary tree uses ECMA-119
 * level 1 (8.3 d-characters), read by anything; the Joliet tree keeps the real
 * names, and is what Linux shows when it is present.
 */

export const JOLIET_NAME_MAX = 64;
/** Joliet limits a path to 240 bytes, i.e. 120 UCS-2 code units. */
export const JOLIET_PATH_MAX = 120;
/** ECMA-119 6.8.2.1: at most 8 directory levels counting the root, so 7 directories in a path. */
export const MAX_DIR_DEPTH = 7;
export const VOLUME_ID_MAX = 32;
export const JOLIET_VOLUME_ID_MAX = 16;

const D_CHARS = /^[A-Z0-9_]*$/;
// Joliet forbids control characters and these; "/" never reaches here.
const JOLIET_FORBIDDEN = new Set(["*", "/", ":", ";", "?", "\\"]);
const forbiddenInJoliet = (name: string) =>
  Array.from(name).some((c) => c.charCodeAt(0) < 0x20 || JOLIET_FORBIDDEN.has(c));

function invalid(code: ErrorCode, message: string, hint: string): EngineError {
  return new EngineError(code, message, { hint });
}

/** Splits an ISO path ("a/b/c.txt") into its names, rejecting anything ambiguous. */
export function splitIsoPath(path: string): string[] {
  const parts = path.split("/");
  if (path === "" || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw invalid(
      "ISO_PATH_INVALID",
      `invalid ISO path "${path}"`,
      'use relative paths like "dir/file.txt" without empty, "." or ".." parts',
    );
  }
  if (parts.length - 1 > MAX_DIR_DEPTH) {
    throw invalid(
      "ISO_PATH_INVALID",
      `ISO path "${path}" is nested ${parts.length - 1} directories deep; ISO 9660 allows ${MAX_DIR_DEPTH}`,
      "flatten the directory layout",
    );
  }
  if (path.length > JOLIET_PATH_MAX) {
    throw invalid(
      "ISO_PATH_INVALID",
      `ISO path "${path}" is ${path.length} characters long; Joliet allows ${JOLIET_PATH_MAX}`,
      "shorten the directory or file names",
    );
  }
  for (const name of parts) jolietIdentifier(name, path);
  return parts;
}

/** The Joliet identifier: the name itself in UCS-2 big-endian (no ";1", as libisofs writes it). */
export function jolietIdentifier(name: string, path: string = name): Buffer {
  if (name.length > JOLIET_NAME_MAX) {
    throw invalid(
      "ISO_NAME_TOO_LONG",
      `file name "${name}" in "${path}" is ${name.length} characters long; Joliet allows at most ${JOLIET_NAME_MAX}`,
      `shorten the name to ${JOLIET_NAME_MAX} characters or fewer`,
    );
  }
  // Lone or paired surrogates: UCS-2 has no room for characters outside the BMP.
  if (forbiddenInJoliet(name) || /[\ud800-\udfff]/.test(name)) {
    throw invalid(
      "ISO_NAME_INVALID",
      `file name "${name}" in "${path}" has a character Joliet cannot store`,
      "avoid control characters, * : ; ? \\ and characters outside the Basic Multilingual Plane",
    );
  }
  return ucs2(name);
}

export function ucs2(text: string): Buffer {
  return Buffer.from(text, "utf16le").swap16();
}

export function validateVolumeId(volumeId: string): void {
  if (volumeId.length === 0 || volumeId.length > VOLUME_ID_MAX || !D_CHARS.test(volumeId)) {
    throw invalid(
      "ISO_VOLUME_ID_INVALID",
      `invalid ISO volume id "${volumeId}": it must be 1 to ${VOLUME_ID_MAX} characters of A-Z, 0-9 and _`,
      'use an uppercase label such as "STACKCFG"',
    );
  }
}

/** Joliet's volume id field holds 16 UCS-2 characters; blkid merges it with the longer primary id. */
export function jolietVolumeId(volumeId: string): string {
  return volumeId.slice(0, JOLIET_VOLUME_ID_MAX);
}

/** A primary-tree name: `base` and, for files, `ext` (possibly empty). */
export interface ShortName {
  base: string;
  ext: string;
}

export function shortIdentifier(name: ShortName, isDir: boolean): string {
  return isDir ? name.base : `${name.base}.${name.ext};1`;
}

/** ECMA-119 9.3 order: name, then extension; d-characters sort above the (20) padding, so prefixes first. */
export function compareShortNames(a: ShortName, b: ShortName): number {
  return compareCodeUnits(a.base, b.base) || compareCodeUnits(a.ext, b.ext);
}

export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const toDChars = (s: string): string =>
  Array.from(s, (c) => (/^[a-z]$/.test(c) ? c.toUpperCase() : /^[A-Z0-9_]$/.test(c) ? c : "_")).join("");

/** The names one directory's children get in the primary tree, in input order, all distinct. */
export function assignShortNames(children: readonly { name: string; isDir: boolean }[]): ShortName[] {
  const candidates = children.map(({ name, isDir }) => {
    const dot = isDir ? -1 : name.lastIndexOf(".");
    const rawBase = dot > 0 ? name.slice(0, dot) : name;
    const rawExt = dot > 0 ? name.slice(dot + 1) : "";
    const base = toDChars(rawBase);
    const ext = toDChars(rawExt);
    // Exact: only the case changes, so the name survives (Linux lowercases it back).
    const exact =
      base.length <= 8 && ext.length <= 3 && base === rawBase.toUpperCase() && ext === rawExt.toUpperCase();
    return { base, ext: ext.slice(0, 3), exact };
  });
  const taken = new Set<string>();
  const key = (n: ShortName) => (n.ext ? `${n.base}.${n.ext}` : n.base);
  const result: ShortName[] = new Array(children.length);
  // Exact names claim theirs first, in name order, so "base.env" stays BASE.ENV whatever else is there.
  const order = candidates
    .map((c, i) => ({ c, i }))
    .sort(
      (x, y) =>
        Number(y.c.exact) - Number(x.c.exact) || compareCodeUnits(children[x.i]!.name, children[y.i]!.name),
    );
  for (const { c, i } of order) {
    let name: ShortName = { base: c.base, ext: c.ext };
    if (!c.exact || taken.has(key(name))) {
      for (let n = 1; ; n++) {
        const suffix = `~${n}`;
        name = { base: c.base.slice(0, 8 - suffix.length) + suffix, ext: c.ext };
        if (!taken.has(key(name))) break;
      }
    }
    taken.add(key(name));
    result[i] = name;
  }
  return result;
}
