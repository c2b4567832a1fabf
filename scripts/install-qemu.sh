#!/usr/bin/env bash
# Installs the two QEMUs the project is tested on, idempotently:
#   - QEMU 7.2 from this host's Debian bookworm (apt), with qemu-utils, zstd and
#     xorriso (the independent ISO reader the tests check our ISO writer with);
#   - QEMU 10 from Debian trixie into a private prefix. Its .debs are fetched
#     with a separate apt configuration and state directory, unpacked (never
#     installed), and run through trixie's own dynamic loader and libraries, so
#     the host's libc is never upgraded.
# Prints nothing but a summary when everything is already there.
#
# Usage: install-qemu.sh [--host-only]
#   --host-only   QEMU 7.2 and the host tools only (what the main job uses)
set -euo pipefail
host_only=0
case "${1:-}" in
  --host-only) host_only=1 ;;
  "") ;;
  *) printf '[install-qemu] unknown argument: %s (expected --host-only or nothing)\n' "$1" >&2; exit 2 ;;
esac

TOOLS_DIR="${HEXCLAVE_TOOLS_DIR:-$HOME/.cache/hexclave-emulator/tools}"
Q10="$TOOLS_DIR/qemu-10"
SUITE="${QEMU10_SUITE:-trixie}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '[install-qemu] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

host_packages=(qemu-system-x86 qemu-utils zstd xorriso)
missing=()
for p in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing from the host's Debian: ${missing[*]}"
  [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$host_only" = 1 ]; then
  log "QEMU 7.2: $(qemu-system-x86_64 --version | head -1)"
  exit 0
fi

if [ -f "$Q10/.complete" ] && "$Q10/bin/qemu-system-x86_64" --version >/dev/null 2>&1; then
  log "QEMU 7.2: $(qemu-system-x86_64 --version | head -1)"
  log "QEMU 10:  $("$Q10/bin/qemu-system-x86_64" --version | head -1) ($Q10)"
  exit 0
fi

log "fetching QEMU 10 from Debian $SUITE into $Q10"
work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-qemu10-XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/etc/sources.list.d" "$work/etc/preferences.d" "$work/state/lists/partial" \
  "$work/cache/archives/partial"
: > "$work/state/status"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' "$MIRROR" "$SUITE" \
  > "$work/etc/sources.list"
# An empty dpkg status makes apt resolve the whole dependency closure (libc
# included) from trixie alone; nothing of the host's is assumed.
apt_private=(
  -o "Dir::Etc=$work/etc" -o "Dir::Etc::SourceList=$work/etc/sources.list"
  -o "Dir::Etc::SourceParts=$work/etc/sources.list.d" -o "Dir::Etc::Preferences=$work/etc/preferences"
  -o "Dir::Etc::PreferencesParts=$work/etc/preferences.d"
  -o "Dir::State=$work/state" -o "Dir::State::status=$work/state/status"
  -o "Dir::Cache=$work/cache" -o "APT::Architecture=amd64" -o "Debug::NoLocking=1"
  -o "APT::Get::AllowUnauthenticated=false"
)
apt-get "${apt_private[@]}" update -qq
apt-get "${apt_private[@]}" install -y -qq -d --no-install-recommends qemu-system-x86 qemu-utils >/dev/null

stage="$work/prefix"
mkdir -p "$stage/root" "$stage/bin"
for deb in "$work"/cache/archives/*.deb; do dpkg-deb -x "$deb" "$stage/root"; done
# Debian links firmware with absolute paths (/usr/share/qemu/bios.bin ->
# /usr/share/seabios/bios.bin); point them inside the prefix instead.
find "$stage/root" -type l | while read -r link; do
  target="$(readlink "$link")"
  case "$target" in
    /*) ln -sfn "$stage/root$target" "$link" ;;
  esac
done

write_wrapper() {
  local name="$1" extra="$2"
  cat > "$stage/bin/$name" <<WRAP
#!/bin/sh
# QEMU 10 from Debian $SUITE, run with its own loader and libraries.
R="$Q10/root"
QEMU_MODULE_DIR="\$R/usr/lib/x86_64-linux-gnu/qemu" exec "\$R/usr/lib64/ld-linux-x86-64.so.2" \\
  --library-path "\$R/usr/lib/x86_64-linux-gnu:\$R/lib/x86_64-linux-gnu" \\
  "\$R/usr/bin/$name" $extra "\$@"
WRAP
  chmod 0755 "$stage/bin/$name"
}
write_wrapper qemu-system-x86_64 '-L "$R/usr/share/qemu" -L "$R/usr/share/seabios" -L "$R/usr/lib/ipxe/qemu"'
write_wrapper qemu-img ''

# The symlinks and wrappers name the final prefix, so publish by rename.
find "$stage/root" -type l | while read -r link; do
  target="$(readlink "$link")"
  case "$target" in "$stage"/*) ln -sfn "$Q10${target#"$stage"}" "$link" ;; esac
done
rm -rf "$Q10.old"
[ -e "$Q10" ] && mv "$Q10" "$Q10.old"
mkdir -p "$TOOLS_DIR"
mv "$stage" "$Q10"
rm -rf "$Q10.old"
"$Q10/bin/qemu-system-x86_64" --version | head -1 > "$Q10/.complete"
log "QEMU 7.2: $(qemu-system-x86_64 --version | head -1)"
log "QEMU 10:  $(cat "$Q10/.complete") ($Q10)"
