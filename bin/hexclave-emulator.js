#!/usr/bin/env node
// The hexclave-emulator command (run `npm run build:lib` first in a checkout).
import { main } from "../lib/engine/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
