import { coldBootScenario } from "./cold-boot.scenario.js";
import { qemuTargets } from "../support/tools.js";

for (const t of qemuTargets().filter((q) => q.label === "qemu-10")) coldBootScenario(t);
