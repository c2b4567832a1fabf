import { stringify } from "yaml";
import { CRD_HEADER, emulatorCrd } from "./manifest.js";

/** The CRD file as committed under charts/hexclave-emulator/crds/. */
export function crdYaml(): string {
  return `${CRD_HEADER}\n${stringify(emulatorCrd(), { lineWidth: 0 })}`;
}
