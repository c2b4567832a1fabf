import { arm64Scenario } from "./arm64.scenario.js";
import { arm64QemuTargets } from "../support/tools.js";

for (const t of arm64QemuTargets().filter((q) => q.label === "qemu-7.2")) arm64Scenario(t);
