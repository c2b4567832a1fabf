/**
 * Writes charts/hexclave-emulator/crds/*.yaml (Emulator, EmulatorPool, EmulatorClaim) from the
 * zod types (src/controller/crd). `--check` exits 1 when a committed file differs.
 *   npx tsx scripts/k8s/generate-crd.ts [--check]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { crdFiles } from "../../src/controller/crd/yaml.js";

const dir = join(resolve(import.meta.dirname, "..", ".."), "charts/hexclave-emulator/crds");
for (const [file, text] of Object.entries(crdFiles())) {
  const target = join(dir, file);
  if (process.argv.includes("--check")) {
    let current = "";
    try {
      current = readFileSync(target, "utf8");
    } catch {
      /* missing counts as stale */
    }
    if (current !== text) {
      console.error(`${target} is stale: run npx tsx scripts/k8s/generate-crd.ts`);
      process.exitCode = 1;
    }
  } else {
    writeFileSync(target, text);
    console.log(`wrote ${target}`);
  }
}
