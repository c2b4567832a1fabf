#!/usr/bin/env node
// The hexclave-emulator command (run `npm run build:lib` first in a checkout).
// The bundle (scripts/bundle-cli.mjs) loads in a fraction of the time of the
// module tree; it is used only while it is not older than the tree it was built from.
import { statSync } from "node:fs";

const lib = new URL("../lib/engine/cli/", import.meta.url);
const mtime = (name) => statSync(new URL(name, lib), { throwIfNoEntry: false })?.mtimeMs ?? -1;
const bundled = mtime("bundle/index.js") >= mtime("main.js") && mtime("main.js") >= 0;
const { main } = await import(bundled ? "../lib/engine/cli/bundle/index.js" : "../lib/engine/cli/main.js");

process.exitCode = await main(process.argv.slice(2));
