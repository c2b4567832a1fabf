#!/usr/bin/env bash
# A one-node Kubernetes cluster on this machine, for the end-to-end tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
# (Debian's, with runc and the bridge CNI plugin), kubelet and kube-proxy,
# each with its log and pid file under one state dir. The Kubernetes binaries
# are built from the Go module proxy by install-apiserver.sh (cached by
# version); the sandbox (pause) image is built here from the Kubernetes
# module's pause.c and imported into containerd (nothing is pulled).
#
# Usage: cluster.sh up | down | status | prepare | env
#   prepare  install/build what `up` needs (idempotent, cached): Debian's
#            containerd, runc, CNI plugins, iptables, conntrack; the Kubernetes
#            binaries; the pause image
#   up       prepare, then start everything, waiting on each (etcd /health,
#            apiserver /readyz, controller-manager and scheduler /healthz,
#            containerd, node Ready, kube-proxy /healthz) with a deadline;
#            prints the admin kubeconfig's path. A cluster already up is reused.
#   down     stop it and remove what it made: Pods, processes, mounts, the CNI
#            bridge, the iptables chains (KUBE-*, CNI-*), cgroups, the state dir
#   status   exit 0 and print the kubeconfig's path when every part answers
#   env      KUBECONFIG=..., KUBECTL_BIN=..., HELM_BIN=..., CTR_ADDRESS=..., NODE_IP=...
#
# Its ports (29400-29408), paths (the state dir, a bridge named hxcni0, pod
# network 10.246.0.0/24, services 10.97.0.0/24) are its own: the API-server
# tests of test/support/controller-apiserver.ts use 2786x-2788x and temp dirs.
# Needs root (containerd, the kubelet, iptables). Environment:
#   HEXCLAVE_CLUSTER_DIR  the state dir (default /var/tmp/hexclave-cluster)
#   HEXCLAVE_NODE_IP      the node's address (default: the source address of the default route)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
STATE="${HEXCLAVE_CLUSTER_DIR:-/var/tmp/hexclave-cluster}"
TOOLS_DIR="${HEXCLAVE_TOOLS_DIR:-$HOME/.cache/hexclave-emulator/tools}"
K8S_MODULE_VERSION="v$(sed -n 's/^K8S_VERSION="\${K8S_VERSION:-\([0-9.]*\)}"$/\1/p' "$HERE/install-apiserver.sh")"
PORT_BASE=29400
ETCD_PORT=$PORT_BASE
ETCD_PEER_PORT=$((PORT_BASE + 1))
APISERVER_PORT=$((PORT_BASE + 2))
KUBELET_PORT=$((PORT_BASE + 3))
KUBELET_HEALTHZ_PORT=$((PORT_BASE + 4))
SCHEDULER_PORT=$((PORT_BASE + 5))
KCM_PORT=$((PORT_BASE + 6))
PROXY_METRICS_PORT=$((PORT_BASE + 7))
PROXY_HEALTHZ_PORT=$((PORT_BASE + 8))
POD_CIDR=10.246.0.0/24
SERVICE_CIDR=10.97.0.0/24
SERVICE_IP=10.97.0.1
BRIDGE=hxcni0
NODE_NAME=hexclave-node
PAUSE_IMAGE=hexclave.local/pause:3.10.1
CNI_NAME=hexclave-pods

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

node_ip() {
  if [ -n "${HEXCLAVE_NODE_IP:-}" ]; then echo "$HEXCLAVE_NODE_IP"; return; fi
  local ip
  ip="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)"
  [ -n "$ip" ] || ip="$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)"
  [ -n "$ip" ] || die "no non-loopback IPv4 address for the node; set HEXCLAVE_NODE_IP"
  echo "$ip"
}

tool_env() {
  bash "$HERE/install-apiserver.sh" --env --cached-only kubernetes etcd helm cluster
}

# ---------------------------------------------------------------- prepare

DEB_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack openssl gcc libc6-dev)

install_debs() {
  local missing=() p
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing from Debian: ${missing[*]}"
  [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || apt-get update -qq
  # policy-rc.d: no init script starts a system containerd (there is no systemd here anyway).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The sandbox image: pause.c from the k8s.io/kubernetes module, static, one layer.
pause_tar() {
  local src
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_MODULE_VERSION/build/pause/linux/pause.c"
  [ -f "$src" ] || GOFLAGS=-mod=mod go mod download "k8s.io/kubernetes@$K8S_MODULE_VERSION" >/dev/null 2>&1 || true
  [ -f "$src" ] || die "no pause.c at $src"
  local key
  key="$( (cat "$src"; gcc --version | head -1; echo "$PAUSE_IMAGE"; cat "$HERE/image-lib.sh") | sha256sum | cut -c1-16)"
  local out="$TOOLS_DIR/pause/$key/pause.tar"
  if [ ! -f "$out" ]; then
    local work; work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-pause-XXXXXX")"
    mkdir -p "$work/root"
    gcc -Os -Wall -static -DVERSION=v3.10.1-hexclave -o "$work/root/pause" "$src"
    strip "$work/root/pause" 2>/dev/null || true
    tar -C "$work/root" --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" pause
    # shellcheck source=scripts/k8s/image-lib.sh
    . "$HERE/image-lib.sh"
    docker_archive "$work/pause.tar" "$PAUSE_IMAGE" '{"Entrypoint":["/pause"],"User":"65535:65535"}' "$work/layer.tar"
    mkdir -p "$(dirname "$out")"
    mv "$work/pause.tar" "$out.tmp" && mv "$out.tmp" "$out"
    rm -rf "$work"
    log "pause image built: $out"
  fi
  echo "$out"
}

prepare() {
  [ "$(id -u)" = 0 ] || die "needs root (containerd, kubelet, iptables)"
  install_debs
  bash "$HERE/install-apiserver.sh" kubernetes etcd helm cluster
  pause_tar >/dev/null
}

# ---------------------------------------------------------------- processes

pidfile() { echo "$STATE/run/$1.pid"; }
alive() {
  local f; f="$(pidfile "$1")"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# start NAME CMD...: in its own session, output to $STATE/logs/NAME.log.
start() {
  local name="$1"; shift
  if alive "$name"; then return 0; fi
  # 9>&-: the lock's descriptor stays with cluster.sh, not with what outlives it.
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile "$name")"
}

# stop_proc NAME...: SIGTERM to each at once, SIGKILL to what is left after 10 s.
stop_proc() {
  local name f pids=() pid i
  for name in "$@"; do
    f="$(pidfile "$name")"
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$f"
  done
  for pid in "${pids[@]}"; do
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# wait_for WHAT SECONDS PROCESS CHECK...: re-runs CHECK until it succeeds; fails
# at the deadline or when PROCESS died, with the tail of its log.
wait_for() {
  local what="$1" secs="$2" proc="$3"; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$proc" ] && ! alive "$proc"; then
      tail -n 30 "$STATE/logs/$proc.log" >&2 || true
      die "$what: $proc exited (log: $STATE/logs/$proc.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ -z "$proc" ] || tail -n 30 "$STATE/logs/$proc.log" >&2 || true
      die "$what: not within ${secs} s${proc:+ (log: $STATE/logs/$proc.log)}"
    fi
    sleep 0.5
  done
  log "$what ($((SECONDS - t_up)) s)"
}

# ---------------------------------------------------------------- up

certs() {
  local d="$STATE/pki" ip="$1"
  mkdir -p "$d"
  [ -f "$d/admin.crt" ] && return 0
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj /CN=hexclave-cluster-ca -days 7 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver \
      -addext "subjectAltName=IP:127.0.0.1,IP:$ip,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 7 -copy_extensions copyall 2>/dev/null
    # One client identity for the admin, the control plane and the node: a test bed, not a model.
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 7 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr
  )
}

kubeconfig() {
  local ip="$1" d="$STATE/pki"
  cat >"$STATE/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: hexclave
    cluster:
      server: https://$ip:$APISERVER_PORT
      certificate-authority: $d/ca.crt
users:
  - name: admin
    user:
      client-certificate: $d/admin.crt
      client-key: $d/admin.key
contexts:
  - name: hexclave
    context: { cluster: hexclave, user: admin }
current-context: hexclave
EOF
}

containerd_config() {
  local c="$STATE/containerd"
  mkdir -p "$c" "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE here: the sandbox's oom_score_adj (-998) cannot be set,
  # and runc then fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  cat >"$STATE/cni/net.d/10-$CNI_NAME.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
}

kubelet_config() {
  local ip="$1" k="$STATE/kubelet"
  mkdir -p "$k/root" "$k/pod-logs" "$k/certs"
  cat >"$k/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
podLogsDir: $k/pod-logs
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: false }
  x509: { clientCAFile: $STATE/pki/ca.crt }
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
maxPods: 30
evictionHard:
  memory.available: 200Mi
  nodefs.available: 2%
  imagefs.available: 2%
  nodefs.inodesFree: 2%
imageGCHighThresholdPercent: 98
imageGCLowThresholdPercent: 95
rotateCertificates: false
serverTLSBootstrap: false
EOF
}

up() {
  t_up=$SECONDS
  if status >/dev/null 2>&1; then
    log "already up"
    echo "$STATE/admin.kubeconfig"
    return 0
  fi
  prepare
  local ip; ip="$(node_ip)"
  eval "$(tool_env)"
  local pause; pause="$(pause_tar)"
  mkdir -p "$STATE/run" "$STATE/logs" "$STATE/etcd"
  echo "$ip" >"$STATE/node-ip"
  [ -f "$STATE/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward >"$STATE/ip_forward.orig"
  certs "$ip"
  kubeconfig "$ip"
  local kc="$STATE/admin.kubeconfig" pki="$STATE/pki"
  local curl_admin=(curl -fsS --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")

  start etcd "$ETCD_BIN" --name=hexclave --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="hexclave=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level=warn --listen-metrics-urls=
  wait_for "etcd /health" 60 etcd curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  start kube-apiserver "$KUBE_APISERVER_BIN" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$ip" --advertise-address="$ip" --secure-port="$APISERVER_PORT" \
    --cert-dir="$pki/apiserver-generated" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" --kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key" \
    --kubelet-preferred-address-types=InternalIP \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 180 kube-apiserver \
    bash -c "[ \"\$(${curl_admin[*]} https://$ip:$APISERVER_PORT/readyz)\" = ok ]"

  start kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$pki/kcm-generated" --leader-elect=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=false --service-cluster-ip-range="$SERVICE_CIDR" \
    --controllers='*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' --profiling=false --v=1
  start kube-scheduler "$KUBE_SCHEDULER_BIN" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$pki/scheduler-generated" \
    --leader-elect=false --profiling=false --v=1

  containerd_config
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for "containerd" 60 containerd ctr --address "$STATE/containerd/containerd.sock" version
  ctr --address "$STATE/containerd/containerd.sock" -n k8s.io images import "$pause" >/dev/null
  log "pause image imported"

  kubelet_config "$ip"
  start kubelet "$KUBELET_BIN" --config="$STATE/kubelet/config.yaml" --kubeconfig="$kc" \
    --root-dir="$STATE/kubelet/root" --cert-dir="$STATE/kubelet/certs" \
    --hostname-override="$NODE_NAME" --node-ip="$ip" --v=1
  start kube-proxy "$KUBE_PROXY_BIN" --kubeconfig="$kc" --hostname-override="$NODE_NAME" \
    --proxy-mode=iptables --cluster-cidr="$POD_CIDR" \
    --metrics-bind-address="127.0.0.1:$PROXY_METRICS_PORT" --healthz-bind-address="127.0.0.1:$PROXY_HEALTHZ_PORT" \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
    --iptables-localhost-nodeports=false --v=1

  wait_for "kube-controller-manager /healthz" 60 kube-controller-manager \
    curl -fsSk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for "kube-scheduler /healthz" 60 kube-scheduler curl -fsSk --max-time 2 "https://127.0.0.1:$SCHEDULER_PORT/healthz"
  wait_for "kubelet /healthz" 60 kubelet curl -fsS --max-time 2 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  wait_for "node $NODE_NAME Ready" 120 kubelet \
    "$KUBECTL_BIN" --kubeconfig="$kc" wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  wait_for "kube-proxy /healthz" 60 kube-proxy curl -fsS --max-time 2 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
  # The default ServiceAccount (the controller manager's) is what a namespace needs before Pods.
  wait_for "ServiceAccount default/default" 60 kube-controller-manager \
    "$KUBECTL_BIN" --kubeconfig="$kc" get serviceaccount default -n default
  log "up in $((SECONDS - t_up)) s; node $NODE_NAME at $ip"
  echo "$kc"
}

# ---------------------------------------------------------------- status

status() {
  [ -f "$STATE/admin.kubeconfig" ] || { echo "down"; return 1; }
  local p bad=0
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    if alive "$p"; then printf '%-24s running (pid %s)\n' "$p" "$(cat "$(pidfile "$p")")"; else
      printf '%-24s not running\n' "$p"; bad=1
    fi
  done
  [ "$bad" = 0 ] || return 1
  eval "$(tool_env)"
  "$KUBECTL_BIN" --kubeconfig="$STATE/admin.kubeconfig" get --raw=/readyz >/dev/null 2>&1 || { echo "apiserver not ready"; return 1; }
  [ "$("$KUBECTL_BIN" --kubeconfig="$STATE/admin.kubeconfig" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] || { echo "node not Ready"; return 1; }
  echo "$STATE/admin.kubeconfig"
}

# ---------------------------------------------------------------- down

ipt_cleanup() {
  local bin table chain
  for bin in iptables ip6tables; do
    command -v "$bin" >/dev/null || continue
    for table in nat filter mangle; do
      "$bin-save" -t "$table" >/dev/null 2>&1 || continue
      # Rules in the built-in chains that jump to ours, then our chains.
      { "$bin-save" -t "$table" 2>/dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' || true; } | sed 's/^-A /-D /' |
        while read -r rule; do eval "$bin -t $table $rule" 2>/dev/null || true; done
      for chain in $("$bin-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
        "$bin" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$bin-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
        "$bin" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

down() {
  local t0=$SECONDS
  [ -d "$STATE" ] || { log "nothing to do ($STATE does not exist)"; return 0; }
  local kc="$STATE/admin.kubeconfig" sock="$STATE/containerd/containerd.sock"
  eval "$(tool_env 2>/dev/null)" || true
  # Pods first, while the kubelet runs: their sandboxes' CNI teardown removes veths and rules.
  if alive kube-apiserver && alive kubelet && [ -n "${KUBECTL_BIN:-}" ]; then
    "$KUBECTL_BIN" --kubeconfig="$kc" delete pods --all -A --grace-period=10 --timeout=90s >/dev/null 2>&1 || true
  fi
  stop_proc kube-proxy kubelet
  [ -z "${KUBE_PROXY_BIN:-}" ] || "$KUBE_PROXY_BIN" --cleanup >/dev/null 2>&1 || true
  if alive containerd; then
    local c t
    for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    done
    for t in $(seq 1 50); do
      [ -z "$(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null | head -1)" ] && break
      for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
        ctr --address "$sock" -n k8s.io tasks delete "$c" >/dev/null 2>&1 || true
      done
      sleep 0.2
    done
  fi
  stop_proc containerd
  # Shims of this containerd (their -address names our socket) and anything left in their sessions.
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  stop_proc kube-scheduler kube-controller-manager kube-apiserver
  stop_proc etcd
  # Mounts under the state dir (overlay rootfs, Secret tmpfs, netns), deepest first.
  local m
  for m in $(awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" || true
  ipt_cleanup
  # The kubelet's pod cgroups (cgroupfs driver: /kubepods in each v1 hierarchy).
  local d
  for d in /sys/fs/cgroup/*/kubepods; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  [ ! -f "$STATE/ip_forward.orig" ] || cat "$STATE/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward || true
  rm -rf "$STATE"
  log "down in $((SECONDS - t0)) s"
}

env_cmd() {
  eval "$(tool_env)"
  echo "KUBECONFIG=$STATE/admin.kubeconfig"
  echo "KUBECTL_BIN=$KUBECTL_BIN"
  echo "HELM_BIN=$HELM_BIN"
  echo "CTR_ADDRESS=$STATE/containerd/containerd.sock"
  echo "NODE_IP=$(cat "$STATE/node-ip" 2>/dev/null || node_ip)"
  echo "NODE_NAME=$NODE_NAME"
  echo "STATE_DIR=$STATE"
}

# One up or down at a time (two test files, or a test and a person).
lock() {
  mkdir -p "$(dirname "$STATE")"
  exec 9>"$STATE.lock"
  flock -w 900 9 || die "another cluster.sh up/down holds $STATE.lock"
}

case "${1:-}" in
  up) lock; up ;;
  down) lock; down; rm -f "$STATE.lock" ;;
  status) status ;;
  prepare) prepare ;;
  env) env_cmd ;;
  *) sed -n '2,28p' "$0" >&2; exit 2 ;;
esac
