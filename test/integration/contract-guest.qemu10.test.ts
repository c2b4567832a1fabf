import { contractGuestScenario } from "./contract-guest.scenario.js";
import { qemuTargets } from "../support/tools.js";

for (const t of qemuTargets().filter((q) => q.label === "qemu-10")) contractGuestScenario(t);
