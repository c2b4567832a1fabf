#!/bin/sh
# Runs as root inside the image's root filesystem once its packages are in
# (Dockerfile: a RUN step; build-image.sh: an mmdebstrap customize hook).
set -eu
# The non-root user the agent and the controller run as, in the kvm group.
# A /dev/kvm from the node keeps the node's group id: docs/kubernetes.md says
# how the Pod gets that group (agent.fsGroup).
getent group kvm >/dev/null || groupadd --system kvm
getent group 65532 >/dev/null || groupadd --gid 65532 hexclave
id -u hexclave >/dev/null 2>&1 ||
  useradd --uid 65532 --gid 65532 --groups kvm --home-dir /home/hexclave --create-home \
    --shell /usr/sbin/nologin hexclave
ln -sf /app/bin/hexclave-emulator-k8s.js /usr/local/bin/hexclave-emulator-k8s
ln -sf /app/bin/hexclave-emulator.js /usr/local/bin/hexclave-emulator
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/apt/* /var/log/dpkg.log
