import { qemuTargets } from "../../support/tools.js";
import { faultsSuite } from "./faults.scenario.js";

for (const t of qemuTargets().filter((q) => q.label === "qemu-10")) faultsSuite(t, 27500);
