// Bundles the hexclave-emulator command into lib/engine/cli/bundle/ with @vercel/ncc:
// one file per verb (its dynamic import), so a start loads one or two files instead of
// a few hundred modules (~190 ms of a 2-core machine's start). bin/hexclave-emulator.js
// uses it while it is at least as new as lib/engine/cli/main.js.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";

const out = "lib/engine/cli/bundle";
rmSync(out, { recursive: true, force: true });
execFileSync("npx", ["ncc", "build", "lib/engine/cli/main.js", "-o", out, "--target", "es2022", "--quiet"], {
  stdio: "inherit",
});
