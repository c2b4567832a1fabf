import { qemuTargets } from "../../support/tools.js";
import { faultsSuite } from "./faults.scenario.js";

for (const t of qemuTargets().filter((q) => q.label === "qemu-7.2")) faultsSuite(t, 27560);
