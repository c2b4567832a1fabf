import { stringify } from "yaml";
import { CRD_HEADER, emulatorCrd } from "./manifest.js";
import { claimCrd, poolCrd } from "./pool-manifest.js";
import type { JsonSchema } from "./structural.js";

const asYaml = (crd: JsonSchema) => `${CRD_HEADER}\n${stringify(crd, { lineWidth: 0 })}`;

/** The CRD file as committed under charts/hexclave-emulator/crds/. */
export function crdYaml(): string {
  return asYaml(emulatorCrd());
}

/** Every CRD file committed under charts/hexclave-emulator/crds/, by file name. */
export function crdFiles(): Record<string, string> {
  return {
    "emulators.yaml": crdYaml(),
    "emulatorpools.yaml": asYaml(poolCrd()),
    "emulatorclaims.yaml": asYaml(claimCrd()),
  };
}
