#!/usr/bin/env bash
# Builds the agent's container image (the one the Dockerfile builds) without
# a Docker daemon or a registry, as a `docker save` archive for
# `ctr images import`:
#   layer 1  a Debian root filesystem from mmdebstrap: images/agent/packages.txt
#            (through packages.sh), then images/agent/setup.sh (the user);
#   layer 2  Node $NODE_VERSION: bin/node of the npm registry's `node` package;
#   layer 3  the app, as images/agent/files.txt lists it: package.json, lib/
#            (src/ compiled with tsconfig.build.json), bin/, the production
#            node_modules of package-lock.json.
# Each layer is cached by a hash of its inputs under $TOOLS_DIR/agent-image/,
# and the image by the hash of its layers; it is named like the chart's
# default image (image.repository:appVersion of charts/hexclave-emulator).
#
# Usage: build-image.sh [--import CONTAINERD_SOCKET] [--plan]
#   --import  also import it into that containerd's k8s.io namespace
#   --plan    print what the image holds (packages, files, config) and build nothing
# Prints the archive's path (and, with --import, the image's name) on stdout.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
IMG="$REPO/images/agent"
TOOLS_DIR="${HEXCLAVE_TOOLS_DIR:-$HOME/.cache/hexclave-emulator/tools}"
CACHE="$TOOLS_DIR/agent-image"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
NICE="${BUILD_NICE:-10}"
# shellcheck source=images/agent/image.env
. "$IMG/image.env"
# shellcheck source=scripts/k8s/image-lib.sh
. "$HERE/image-lib.sh"

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

import_sock=""
plan=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --import) shift; import_sock="${1:?--import needs a containerd socket}" ;;
    --plan) plan=1 ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done

ARCH="$(dpkg --print-architecture)"
read -r -a PACKAGES <<<"$(sh "$IMG/packages.sh" "$ARCH")"
chart_value() { sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$2" | head -1; }
REPOSITORY="$(sed -n 's/^  repository: *//p' "$REPO/charts/hexclave-emulator/values.yaml" | head -1)"
TAG="$(chart_value appVersion "$REPO/charts/hexclave-emulator/Chart.yaml")"
NAME="$REPOSITORY:$TAG"
# The image config; the Dockerfile's ENV, WORKDIR, USER and CMD say the same.
CONFIG="{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\"NODE_ENV=production\"],\"WorkingDir\":\"/app\",\"User\":\"$IMAGE_UID:$IMAGE_UID\",\"Cmd\":[\"hexclave-emulator-k8s\",\"controller\"]}"
files() { sed -e 's/#.*//' "$IMG/files.txt" | awk 'NF == 2 { print $1, $2 }'; }

if [ "$plan" = 1 ]; then
  echo "name $NAME"
  echo "suite $DEBIAN_SUITE"
  echo "node $NODE_VERSION"
  echo "packages ${PACKAGES[*]}"
  files | sed 's/^/file /'
  echo "config $CONFIG"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap --mode=root)"
t0=$SECONDS
mkdir -p "$CACHE"
hash_of() { sha256sum | cut -c1-16; }

# ---- layer 1: the Debian root filesystem
ensure_debs() {
  local p missing=()
  for p in mmdebstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing from Debian: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
base_key="$( (cat "$IMG/packages.txt" "$IMG/packages.sh" "$IMG/setup.sh" "$IMG/image.env"; echo "$ARCH $MIRROR base-v1") | hash_of)"
base="$CACHE/base-$base_key.tar"
if [ ! -f "$base" ]; then
  ensure_debs
  log "building the root filesystem (Debian $DEBIAN_SUITE: ${PACKAGES[*]})"
  t=$SECONDS
  nice -n "$NICE" mmdebstrap --mode=root --variant=minbase --format=tar --quiet \
    --aptopt='Apt::Install-Recommends "false"' \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --customize-hook="copy-in $IMG/setup.sh /tmp" \
    --customize-hook='chroot "$1" sh /tmp/setup.sh' \
    --customize-hook='rm -f "$1/tmp/setup.sh"' \
    "$DEBIAN_SUITE" "$base.tmp" \
    "deb $MIRROR $DEBIAN_SUITE main" "deb $MIRROR $DEBIAN_SUITE-updates main" \
    "deb $SECURITY_MIRROR $DEBIAN_SUITE-security main"
  mv "$base.tmp" "$base"
  log "root filesystem: $(du -h "$base" | cut -f1) in $((SECONDS - t)) s"
fi

# ---- layer 2: Node, from the npm registry's `node` package
node_layer="$CACHE/node-$NODE_VERSION-$ARCH.tar"
if [ ! -f "$node_layer" ]; then
  t=$SECONDS
  work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-node-XXXXXX")"
  npm install --prefix "$work/npm" --no-save --no-audit --no-fund --loglevel=error "node@$NODE_VERSION" >/dev/null
  mkdir -p "$work/root/usr/local/bin"
  cp -L "$work/npm/node_modules/node/bin/node" "$work/root/usr/local/bin/node"
  [ "$("$work/root/usr/local/bin/node" --version)" = "v$NODE_VERSION" ] || die "the npm node package gave $("$work/root/usr/local/bin/node" --version)"
  tar -C "$work/root" --owner=0 --group=0 --numeric-owner -cf "$node_layer.tmp" .
  mv "$node_layer.tmp" "$node_layer"
  rm -rf "$work"
  log "node $NODE_VERSION layer in $((SECONDS - t)) s"
fi

# ---- layer 3: the app (files.txt minus node)
app_key="$( (cd "$REPO" && find src bin -type f | LC_ALL=C sort | xargs sha256sum;
  sha256sum package.json package-lock.json tsconfig.json tsconfig.build.json "$IMG/files.txt") | hash_of)"
app_layer="$CACHE/app-$app_key.tar"
if [ ! -f "$app_layer" ]; then
  t=$SECONDS
  lock_key="$(cat "$REPO/package.json" "$REPO/package-lock.json" | hash_of)"
  modules="$CACHE/node_modules-$lock_key"
  if [ ! -d "$modules" ]; then
    work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-modules-XXXXXX")"
    cp "$REPO/package.json" "$REPO/package-lock.json" "$work/"
    (cd "$work" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    mv "$work/node_modules" "$modules.tmp" && mv "$modules.tmp" "$modules"
    rm -rf "$work"
  fi
  work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-app-XXXXXX")"
  # tsc emits even on a type error; the typecheck is the suite's job, a missing file is ours.
  (cd "$REPO" && nice -n "$NICE" npx tsc -p tsconfig.build.json --outDir "$work/lib") >&2 ||
    log "tsc reported type errors (output emitted anyway)"
  [ -f "$work/lib/controller/cli.js" ] || die "tsc produced no lib/controller/cli.js"
  while read -r src dest; do
    mkdir -p "$work/root$(dirname "$dest")"
    case "$src" in
      node) continue ;; # layer 2
      package.json) cp "$REPO/package.json" "$work/root$dest" ;;
      lib) cp -a "$work/lib" "$work/root$dest" ;;
      bin) cp -a "$REPO/bin" "$work/root$dest" ;;
      node_modules) cp -a "$modules" "$work/root$dest" ;;
      *) die "files.txt: unknown source $src" ;;
    esac
  done < <(files)
  chmod -R u+rwX,go+rX,go-w "$work/root"
  tar -C "$work/root" --owner=0 --group=0 --numeric-owner -cf "$app_layer.tmp" .
  mv "$app_layer.tmp" "$app_layer"
  rm -rf "$work"
  log "app layer in $((SECONDS - t)) s"
fi

image_key="$( (echo "$NAME $CONFIG"; basename "$base"; basename "$node_layer"; basename "$app_layer"; cat "$HERE/image-lib.sh") | hash_of)"
image="$CACHE/image-$image_key.tar"
if [ ! -f "$image" ]; then
  docker_archive "$image.tmp" "$NAME" "$CONFIG" "$base" "$node_layer" "$app_layer"
  mv "$image.tmp" "$image"
  # Older images of this builder: keep the newest two.
  ls -t "$CACHE"/image-*.tar 2>/dev/null | tail -n +3 | xargs -r rm -f
  ls -t "$CACHE"/app-*.tar 2>/dev/null | tail -n +3 | xargs -r rm -f
fi
log "$NAME: $image ($(du -h "$image" | cut -f1), $((SECONDS - t0)) s)"
echo "$image"
if [ -n "$import_sock" ]; then
  t=$SECONDS
  ctr --address "$import_sock" -n k8s.io images import "$image" >/dev/null
  log "imported into $import_sock in $((SECONDS - t)) s"
  echo "$NAME"
fi
