/**
 * Writes charts/hexclave-emulator/crds/emulators.yaml from the zod types
 * (src/controller/crd). `--check` exits 1 when the committed file differs.
 *   npx tsx scripts/k8s/generate-crd.ts [--check]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { crdYaml } from "../../src/controller/crd/yaml.js";

const target = join(resolve(import.meta.dirname, "..", ".."), "charts/hexclave-emulator/crds/emulators.yaml");
const text = crdYaml();
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
