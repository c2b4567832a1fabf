#!/usr/bin/env bash
# Installs what a job needs, idempotently, in two profiles:
#   main   what the main job uses: QEMU 7.2 and the host tools, the test guest
#          (cached by a hash of its recipe), the npm dependencies;
#   tests  all of main, plus QEMU 10 (trixie, private prefix), the aarch64
#          QEMUs, the contract-only and arm64 test guests, and the Kubernetes
#          test binaries (built from the Go module proxy and cached);
#   bench  what `npm run bench` uses: main, QEMU 10, the seed baseline's
#          tools, and the built command (the seed section runs it).
# Usage: setup.sh [main|tests|bench]   (default: tests)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-tests}"
case "$profile" in
  main) bash scripts/install-qemu.sh --host-only ;;
  tests) bash scripts/install-qemu.sh ;;
  bench) bash scripts/install-qemu.sh --seed-tools ;;
  *) printf '[setup] unknown profile %s: use main, tests or bench\n' "$profile" >&2; exit 2 ;;
esac
bash test/guest/build.sh
if [ "$profile" = tests ]; then
  # The contract-only flavour and the arm64 guest, for their test files.
  bash test/guest/build.sh --flavour contract
  bash test/guest/build.sh --arch arm64
fi
[ "$profile" != tests ] || bash scripts/k8s/install-apiserver.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
[ "$profile" != bench ] || npm run --silent build:lib
[ "$profile" != tests ] || { bash scripts/k8s/cluster.sh prepare && bash scripts/k8s/build-image.sh >/dev/null; } # the test cluster's pieces and the agent image, cached
