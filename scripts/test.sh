#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then
# typecheck, lint, build, and every test (unit and real-QEMU).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
bash scripts/setup.sh tests
npm run typecheck
npm run lint
# lib/ for the commands; dist/ is committed and a test checks a fresh build reproduces it.
npm run build:lib
npx vitest run
echo "whole suite took $((SECONDS - started)) s"
