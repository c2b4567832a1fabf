#!/usr/bin/env node
// The Kubernetes edge: controller | agent | warm | crd (run `npm run build:lib` first in a checkout).
import { k8sMain } from "../lib/controller/cli.js";

process.exit(await k8sMain(process.argv.slice(2)));
