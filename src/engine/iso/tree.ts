import { EngineError } from "../errors.js";
import {
  assignShortNames,
  compareCodeUnits,
  compareShortNames,
  jolietIdentifier,
  shortIdentifier,
  splitIsoPath,
} from "./names.js";
import type { IsoFile } from "./types.js";

/** The spec's paths as a tree of names, validated once for both ISO trees. */
export interface FileNode {
  kind: "file";
  name: string;
  path: string;
  size: number;
  source: IsoFile;
}
export interface DirNode {
  kind: "dir";
  name: string;
  path: string;
  children: Map<string, TreeNode>;
}
export type TreeNode = FileNode | DirNode;

/** Largest single extent: data length is a 32-bit field. */
const MAX_FILE_SIZE = 0xffff_ffff;

export function buildTree(files: readonly IsoFile[], sizeOf: (file: IsoFile) => number): DirNode {
  const root: DirNode = { kind: "dir", name: "", path: "", children: new Map() };
  for (const file of files) {
    const parts = splitIsoPath(file.path);
    let dir = root;
    for (const [i, name] of parts.entries()) {
      const path = parts.slice(0, i + 1).join("/");
      const existing = dir.children.get(name);
      if (i === parts.length - 1) {
        if (existing) throw conflict(file.path, existing.kind);
        const size = sizeOf(file);
        if (size > MAX_FILE_SIZE) {
          throw new EngineError(
            "ISO_FILE_TOO_LARGE",
            `"${file.path}" is ${size} bytes; an ISO 9660 extent holds at most ${MAX_FILE_SIZE}`,
            {
              hint: "split the file; the config disk is meant for small files",
            },
          );
        }
        dir.children.set(name, { kind: "file", name, path, size, source: file });
      } else if (existing?.kind === "file") {
        throw conflict(file.path, "file", path);
      } else {
        const next: DirNode = existing ?? { kind: "dir", name, path, children: new Map() };
        dir.children.set(name, next);
        dir = next;
      }
    }
  }
  return root;
}

function conflict(path: string, kind: TreeNode["kind"], at = path): EngineError {
  const what = kind === "file" ? `file "${at}"` : `directory "${at}"`;
  return new EngineError("ISO_DUPLICATE_PATH", `"${path}" clashes with the ${what} already on the disk`, {
    hint: "give every file a distinct path, and never use a file's path as a directory",
  });
}

export type TreeKind = "primary" | "joliet";

/** One directory's children as a given ISO tree names and orders them. */
export function orderedChildren(dir: DirNode, kind: TreeKind): { identifier: Buffer; node: TreeNode }[] {
  const nodes = [...dir.children.values()];
  if (kind === "joliet") {
    return nodes
      .sort((a, b) => compareCodeUnits(a.name, b.name))
      .map((node) => ({ identifier: jolietIdentifier(node.name, node.path), node }));
  }
  const shortNames = assignShortNames(nodes.map((n) => ({ name: n.name, isDir: n.kind === "dir" })));
  return nodes
    .map((node, i) => ({ node, short: shortNames[i]! }))
    .sort((a, b) => compareShortNames(a.short, b.short))
    .map(({ node, short }) => ({
      identifier: Buffer.from(shortIdentifier(short, node.kind === "dir"), "ascii"),
      node,
    }));
}
