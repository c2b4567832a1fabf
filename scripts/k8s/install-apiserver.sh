#!/usr/bin/env bash
# Builds and caches the Kubernetes binaries the controller's tests run against,
# from the Go module proxy only (no GitHub or GCS downloads):
#   - kube-apiserver and kubectl from k8s.io/kubernetes. That module replaces its
#     staging modules with ./staging/..., so `go install` refuses it; a wrapper
#     module requires k8s.io/kubernetes and replaces every staging module with
#     its published v0.Y.Z tag instead.
#   - etcd from go.etcd.io/etcd/server/v3, with the same wrapper trick (its
#     go.mod replaces the sibling api/client/pkg modules with ../).
#   - helm from helm.sh/helm/v3 (a plain `go build` of its cmd/helm).
#   - `cluster` (only when asked for): kubelet, kube-scheduler,
#     kube-controller-manager and kube-proxy of the same Kubernetes version,
#     from the same wrapper module, for the one-node cluster of
#     scripts/k8s/cluster.sh; cached apart, in $TOOLS_DIR/kubernetes-node/.
# Each lands in $TOOLS_DIR/<tool>/<version>/bin/, is built into a temporary
# directory and published by rename after it ran once, so a cached entry is
# always complete. Idempotent: a cached version is not rebuilt.
#
# Usage: install-apiserver.sh [--env] [--cached-only] [kubernetes|etcd|helm|cluster ...]
#   (no tool named: kubernetes etcd helm)
#   --env          print KUBE_APISERVER_BIN=..., KUBECTL_BIN=..., ETCD_BIN=..., HELM_BIN=...
#                  (and KUBELET_BIN, KUBE_SCHEDULER_BIN, KUBE_CONTROLLER_MANAGER_BIN,
#                  KUBE_PROXY_BIN when cluster is named)
#   --cached-only  build nothing; exit 3 when a wanted binary is not cached (for tests)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.8}"
HELM_VERSION="${HELM_VERSION:-3.19.5}"
TOOLS_DIR="${HEXCLAVE_TOOLS_DIR:-$HOME/.cache/hexclave-emulator/tools}"
NICE="${BUILD_NICE:-10}"

log() { printf '[install-apiserver] %s\n' "$*" >&2; }

print_env=0
cached_only=0
wanted=()
for arg in "$@"; do
  case "$arg" in
    --env) print_env=1 ;;
    --cached-only) cached_only=1 ;;
    kubernetes | etcd | helm | cluster) wanted+=("$arg") ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) log "unknown argument: $arg"; exit 2 ;;
  esac
done
[ "${#wanted[@]}" -gt 0 ] || wanted=(kubernetes etcd helm)

k8s_dir="$TOOLS_DIR/kubernetes/v$K8S_VERSION"
etcd_dir="$TOOLS_DIR/etcd/v$ETCD_VERSION"
helm_dir="$TOOLS_DIR/helm/v$HELM_VERSION"
node_dir="$TOOLS_DIR/kubernetes-node/v$K8S_VERSION"
NODE_BINS=(kubelet kube-scheduler kube-controller-manager kube-proxy)
node_cached() {
  local b
  for b in "${NODE_BINS[@]}"; do [ -x "$node_dir/bin/$b" ] || return 1; done
}

missing() {
  log "$1 is not built yet: run bash scripts/k8s/install-apiserver.sh${2:+ $2}"
  exit 3
}
if [ "$cached_only" = 1 ]; then
  for tool in "${wanted[@]}"; do
    case "$tool" in
      kubernetes) [ -x "$k8s_dir/bin/kube-apiserver" ] && [ -x "$k8s_dir/bin/kubectl" ] || missing "kube-apiserver v$K8S_VERSION" ;;
      etcd) [ -x "$etcd_dir/bin/etcd" ] || missing "etcd v$ETCD_VERSION" ;;
      helm) [ -x "$helm_dir/bin/helm" ] || missing "helm v$HELM_VERSION" ;;
      cluster) node_cached || missing "kubelet and the control plane v$K8S_VERSION" cluster ;;
    esac
  done
fi

[ "$cached_only" = 1 ] || command -v go >/dev/null || { log "needs Go (https://go.dev/dl/); none on PATH"; exit 1; }
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"


# Runs a build in a fresh directory and publishes $1 by rename on success.
publish() {
  local dest="$1" staged="$2"
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest.old"
  [ ! -e "$dest" ] || mv "$dest" "$dest.old"
  mv "$staged" "$dest"
  rm -rf "$dest.old"
}

timed() {
  local name="$1"; shift
  local t0=$SECONDS
  "$@"
  log "$name built in $((SECONDS - t0)) s"
}

# The wrapper module for k8s.io/kubernetes in the current directory; sets K8S_LDFLAGS.
k8s_module() {
  local ver="v$K8S_VERSION" staging="v0.${K8S_VERSION#1.}"
  go mod init hexclave.local/k8s-tools >/dev/null 2>&1
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$ver"; return 1; }
  local godirective
  godirective="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
  go mod edit -go="$godirective" -require="k8s.io/kubernetes@$ver"
  # Every `k8s.io/x => ./staging/src/k8s.io/x` becomes `k8s.io/x => k8s.io/x v0.Y.Z`.
  local m
  for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace="$m=$m@$staging"
  done
  local minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
  K8S_LDFLAGS="-s -w"
  local p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    K8S_LDFLAGS+=" -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
}

build_kubernetes() {
  local work; work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-k8s-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  local ver="v$K8S_VERSION"
  cd "$work"
  k8s_module
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$ver" "k8s.io/kubernetes/cmd/kubectl@$ver" >/dev/null
  mkdir -p "$work/out/bin"
  nice -n "$NICE" go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$work/out/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  nice -n "$NICE" go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$work/out/bin/kubectl" k8s.io/kubernetes/cmd/kubectl
  "$work/out/bin/kube-apiserver" --version >/dev/null
  "$work/out/bin/kubectl" version --client >/dev/null
  publish "$k8s_dir" "$work/out"
}

# kubelet, kube-scheduler, kube-controller-manager, kube-proxy; each timed.
build_cluster() {
  local work; work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-k8s-node-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  local ver="v$K8S_VERSION" b
  cd "$work"
  k8s_module
  local pkgs=()
  for b in "${NODE_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b@$ver"); done
  go get "${pkgs[@]}" >/dev/null
  mkdir -p "$work/out/bin"
  for b in "${NODE_BINS[@]}"; do
    timed "$b v$K8S_VERSION" nice -n "$NICE" go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$work/out/bin/$b" "k8s.io/kubernetes/cmd/$b"
    "$work/out/bin/$b" --version >/dev/null
  done
  publish "$node_dir" "$work/out"
}

build_etcd() {
  local work; work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-etcd-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  local ver="v$ETCD_VERSION"
  cd "$work"
  go mod init hexclave.local/etcd-tools >/dev/null 2>&1
  local gomod
  gomod="$(go mod download -json "go.etcd.io/etcd/server/v3@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  go mod edit -go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")" -require="go.etcd.io/etcd/server/v3@$ver"
  local m
  for m in $(sed -n 's#^[[:space:]]*\(go\.etcd\.io/etcd/[a-z0-9/]*\) => \.\./.*#\1#p' "$gomod"); do
    go mod edit -replace="$m=$m@$ver"
  done
  go get "go.etcd.io/etcd/server/v3@$ver" >/dev/null
  mkdir -p "$work/out/bin"
  nice -n "$NICE" go build -trimpath -ldflags "-s -w" -o "$work/out/bin/etcd" go.etcd.io/etcd/server/v3
  "$work/out/bin/etcd" --version >/dev/null
  publish "$etcd_dir" "$work/out"
}

build_helm() {
  local work; work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-helm-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  local ver="v$HELM_VERSION"
  cd "$work"
  go mod init hexclave.local/helm-tools >/dev/null 2>&1
  local gomod
  gomod="$(go mod download -json "helm.sh/helm/v3@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  go mod edit -go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")" -require="helm.sh/helm/v3@$ver"
  go get "helm.sh/helm/v3/cmd/helm@$ver" >/dev/null
  mkdir -p "$work/out/bin"
  nice -n "$NICE" go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$ver" \
    -o "$work/out/bin/helm" helm.sh/helm/v3/cmd/helm
  "$work/out/bin/helm" version --short >/dev/null
  publish "$helm_dir" "$work/out"
}

for tool in "${wanted[@]}"; do
  case "$tool" in
    kubernetes)
      if [ -x "$k8s_dir/bin/kube-apiserver" ] && [ -x "$k8s_dir/bin/kubectl" ]; then
        log "kube-apiserver + kubectl v$K8S_VERSION cached in $k8s_dir"
      else
        log "building kube-apiserver + kubectl v$K8S_VERSION (several minutes on 2 cores)"
        timed "kube-apiserver + kubectl v$K8S_VERSION" build_kubernetes
      fi
      ;;
    etcd)
      if [ -x "$etcd_dir/bin/etcd" ]; then log "etcd v$ETCD_VERSION cached in $etcd_dir"; else
        log "building etcd v$ETCD_VERSION"
        timed "etcd v$ETCD_VERSION" build_etcd
      fi
      ;;
    helm)
      if [ -x "$helm_dir/bin/helm" ]; then log "helm v$HELM_VERSION cached in $helm_dir"; else
        log "building helm v$HELM_VERSION"
        timed "helm v$HELM_VERSION" build_helm
      fi
      ;;
    cluster)
      if node_cached; then log "kubelet and the control plane v$K8S_VERSION cached in $node_dir"; else
        log "building ${NODE_BINS[*]} v$K8S_VERSION (about 6 minutes on 2 cores)"
        timed "${NODE_BINS[*]} v$K8S_VERSION" build_cluster
      fi
      ;;
  esac
done

if [ "$print_env" = 1 ]; then
  echo "KUBE_APISERVER_BIN=$k8s_dir/bin/kube-apiserver"
  echo "KUBECTL_BIN=$k8s_dir/bin/kubectl"
  echo "ETCD_BIN=$etcd_dir/bin/etcd"
  echo "HELM_BIN=$helm_dir/bin/helm"
  if [[ " ${wanted[*]} " == *" cluster "* ]]; then
    echo "KUBELET_BIN=$node_dir/bin/kubelet"
    echo "KUBE_SCHEDULER_BIN=$node_dir/bin/kube-scheduler"
    echo "KUBE_CONTROLLER_MANAGER_BIN=$node_dir/bin/kube-controller-manager"
    echo "KUBE_PROXY_BIN=$node_dir/bin/kube-proxy"
  fi
fi
