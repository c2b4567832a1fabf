import { qemuTargets } from "../../support/tools.js";
import { soakSuite } from "./soak.scenario.js";

for (const t of qemuTargets().filter((q) => q.label === "qemu-7.2")) soakSuite(t, 27540);
