#!/usr/bin/env bash
# The main job on its built-in default, the project's test guest: install what
# is needed, build, then start the emulator (the first run cold-boots,
# captures a snapshot and resumes from it; later runs resume in seconds),
# show its status, and stop it. Set KEEP_RUNNING=1 to leave it up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh main
npm run --silent build:lib
image="$(bash test/guest/build.sh --print-path)"
export HEXCLAVE_EMULATOR_HOME="${HEXCLAVE_EMULATOR_HOME:-$HOME/.hexclave/test-guest-emulator}"
export EMULATOR_RAM="${EMULATOR_RAM:-1024}" EMULATOR_CPUS="${EMULATOR_CPUS:-2}"
cli() { node bin/hexclave-emulator.js "$@"; }
cli start --image "$image"
cli status
if [ "${KEEP_RUNNING:-0}" != 1 ]; then cli stop; fi
