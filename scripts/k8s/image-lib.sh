# Sourced by cluster.sh and build-image.sh: packs container images without a
# Docker daemon or a registry.
#
# docker_archive OUT NAME CONFIG_JSON LAYER.tar...
#   writes OUT, a `docker save` archive (manifest.json, the image config, one
#   uncompressed layer per tar, in order) that `ctr images import` reads.
#   CONFIG_JSON is the image's "config" object (Entrypoint, Env, User, ...).
docker_archive() {
  local out="$1" name="$2" config="$3"; shift 3
  local dir; dir="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-archive-XXXXXX")"
  local layers=() diff_ids=() l sha
  for l in "$@"; do
    sha="$(sha256sum "$l" | cut -d' ' -f1)"
    mkdir -p "$dir/$sha"
    ln "$l" "$dir/$sha/layer.tar" 2>/dev/null || cp "$l" "$dir/$sha/layer.tar"
    layers+=("\"$sha/layer.tar\"")
    diff_ids+=("\"sha256:$sha\"")
  done
  local arch; arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
  local joined_ids joined_layers
  joined_ids="$(IFS=,; echo "${diff_ids[*]}")"
  joined_layers="$(IFS=,; echo "${layers[*]}")"
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$arch" "$config" "$joined_ids" >"$dir/config.json"
  local cfg; cfg="$(sha256sum "$dir/config.json" | cut -d' ' -f1)"
  mv "$dir/config.json" "$dir/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]' "$cfg" "$name" "$joined_layers" >"$dir/manifest.json"
  tar -C "$dir" --owner=0 --group=0 --numeric-owner -cf "$out" .
  rm -rf "$dir"
}
