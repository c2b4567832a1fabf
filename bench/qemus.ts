/** The QEMUs to measure: those of test/support/tools.ts that are installed, narrowed by --qemu. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CACHE_ROOT, type QemuTarget } from "../test/support/tools.js";

const TOOLS_DIR = process.env.HEXCLAVE_TOOLS_DIR ?? join(CACHE_ROOT, "tools");

export function benchTargets(only: readonly string[]): QemuTarget[] {
  const all: QemuTarget[] = [
    { label: "qemu-7.2", binary: "/usr/bin/qemu-system-x86_64", img: "/usr/bin/qemu-img" },
    {
      label: "qemu-10",
      binary: join(TOOLS_DIR, "qemu-10", "bin", "qemu-system-x86_64"),
      img: join(TOOLS_DIR, "qemu-10", "bin", "qemu-img"),
    },
  ];
  const wanted = only.length ? all.filter((t) => only.includes(t.label.replace(/^qemu-/, ""))) : all;
  if (only.length && wanted.length !== only.length) {
    throw new Error(`unknown QEMU in --qemu ${only.join(",")}: the bench knows 7.2 and 10`);
  }
  const present = wanted.filter((t) => existsSync(t.binary));
  if (present.length === 0) {
    throw new Error(
      `no QEMU to measure (${wanted.map((t) => t.binary).join(", ")}): run bash scripts/install-qemu.sh`,
    );
  }
  if (only.length && present.length !== wanted.length) {
    const missing = wanted.filter((t) => !present.includes(t)).map((t) => t.binary);
    throw new Error(`not installed: ${missing.join(", ")}: run bash scripts/install-qemu.sh`);
  }
  return present;
}
