// Bundles the Action's two entry points into dist/ with @vercel/ncc (ESM).
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";

for (const entry of ["main", "post"]) {
  rmSync(`dist/${entry}`, { recursive: true, force: true });
  execFileSync(
    "npx",
    [
      "ncc",
      "build",
      `lib/action/${entry}.js`,
      "-o",
      `dist/${entry}`,
      "--target",
      "es2022",
      "--quiet",
      "--license",
      "licenses.txt",
    ],
    { stdio: "inherit" },
  );
}
