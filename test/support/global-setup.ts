import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./tools.js";

/** Make sure both QEMUs and the test guest exist before any QEMU test runs (no-ops when cached). */
export default function setup(): void {
  execFileSync("bash", [join(REPO_ROOT, "scripts/install-qemu.sh")], { stdio: "inherit" });
  execFileSync("bash", [join(REPO_ROOT, "test/guest/build.sh")], { stdio: "inherit" });
}
