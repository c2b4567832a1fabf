#!/usr/bin/env bash
# Everything a fresh machine of this kind needs, idempotently: both QEMUs
# (7.2 from bookworm, 10 from trixie in a private prefix), the test guest
# (cached by a hash of its recipe), the Kubernetes test binaries, and the npm
# dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-qemu.sh
bash test/guest/build.sh
# kube-apiserver, kubectl, etcd and helm built from the Go module proxy, cached
# under ~/.cache/hexclave-emulator/tools (the first build takes ~20 minutes).
bash scripts/k8s/install-apiserver.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
