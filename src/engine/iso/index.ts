/**
 * A native ISO 9660 + Joliet writer for the guest's STACKCFG disk, so the
 * engine needs neither mkisofs nor hdiutil on the host.
 */
export type { IsoFile, IsoPlan, IsoSpec, PlannedDir, PlannedFile, PlannedRecord, TreePlan } from "./types.js";
export { planIso } from "./layout.js";
export { writeIso } from "./writer.js";
export { runtimeConfigIsoSpec, STACKCFG_VOLUME_ID } from "./stackcfg.js";
