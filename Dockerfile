# syntax=docker/dockerfile:1
# The image of the controller and of every Emulator's agent Pod: Node, QEMU
# and its tools (images/agent/packages.txt), the built engine, controller and
# agent, and a non-root user (65532) in the kvm group.
#   docker build -t ghcr.io/hexclave/emulator-action:0.1.0 .
# (the chart's default image: image.repository, tag = the chart's appVersion).
# scripts/k8s/build-image.sh builds the same image without Docker for the
# test cluster; test/unit/image-parity.test.ts keeps the two in step
# (images/agent/image.env, packages.txt, files.txt).
ARG NODE_VERSION=24.21.0
ARG DEBIAN_SUITE=bookworm

FROM node:${NODE_VERSION}-${DEBIAN_SUITE}-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:${NODE_VERSION}-${DEBIAN_SUITE}-slim AS node

FROM debian:${DEBIAN_SUITE}-slim
ARG TARGETARCH
COPY images/agent/ /tmp/agent-image/
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    $(sh /tmp/agent-image/packages.sh "${TARGETARCH:-$(dpkg --print-architecture)}") \
  && sh /tmp/agent-image/setup.sh \
  && rm -rf /tmp/agent-image
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=build /src/package.json /app/package.json
COPY --from=build /src/lib /app/lib
COPY bin /app/bin
COPY --from=build /src/node_modules /app/node_modules
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_ENV=production
WORKDIR /app
USER 65532:65532
CMD ["hexclave-emulator-k8s", "controller"]
