#!/usr/bin/env bash
# Installs the QEMUs the project is tested on, idempotently:
#   - QEMU 7.2 from this host's Debian bookworm (apt), with qemu-utils, zstd and
#     xorriso (the independent ISO reader the tests check our ISO writer with),
#     and its aarch64 system emulator with UEFI firmware (qemu-system-arm,
#     qemu-efi-aarch64) for the arm64 tests;
#   - QEMU 10 from Debian trixie into a private prefix, x86_64 and aarch64. Its
#     .debs are fetched with a separate apt configuration and state directory,
#     unpacked (never installed), and run through trixie's own dynamic loader
#     and libraries, so the host's libc is never upgraded. A prefix made before
#     the aarch64 half existed gets that half added (same QEMU version), not
#     rebuilt; each half has its own completion marker.
# Prints nothing but a summary when everything is already there.
#
# Usage: install-qemu.sh [--host-only] [--seed-tools]
#   --host-only   x86 QEMU 7.2 and the host tools only (what the main job uses)
#   --seed-tools  also the tools ../shared/seed-baseline/run-seed.sh needs on
#                 PATH (the bench's seed section): socat, nc, genisoimage, …
set -euo pipefail
host_only=0
seed_tools=0
for arg in "$@"; do
  case "$arg" in
    --host-only) host_only=1 ;;
    --seed-tools) seed_tools=1 ;;
    *) printf '[install-qemu] unknown argument: %s (expected --host-only, --seed-tools or nothing)\n' "$arg" >&2; exit 2 ;;
  esac
done

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
[ "$host_only" = 1 ] || host_packages+=(qemu-system-arm qemu-efi-aarch64)
# bench/seed.ts SEED_TOOLS names the same set.
[ "$seed_tools" = 0 ] || host_packages+=(socat curl netcat-openbsd lsof openssl genisoimage)
missing=()
for p in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing from the host's Debian: ${missing[*]}"
  [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

summary() {
  log "QEMU 7.2: $(qemu-system-x86_64 --version | head -1)"
  [ "$host_only" = 1 ] && return 0
  log "QEMU 7.2 aarch64: $(qemu-system-aarch64 --version | head -1)"
  log "QEMU 10:  $("$Q10/bin/qemu-system-x86_64" --version | head -1) ($Q10)"
  log "QEMU 10 aarch64: $("$Q10/bin/qemu-system-aarch64" --version | head -1)"
}

if [ "$host_only" = 1 ]; then
  summary
  exit 0
fi

x86_ok() { [ -f "$Q10/.complete" ] && "$Q10/bin/qemu-system-x86_64" --version >/dev/null 2>&1; }
arm_ok() { [ -f "$Q10/.complete-aarch64" ] && "$Q10/bin/qemu-system-aarch64" --version >/dev/null 2>&1; }
if x86_ok && arm_ok; then
  summary
  exit 0
fi

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
download() { apt-get "${apt_private[@]}" install -y -qq -d --no-install-recommends "$@" >/dev/null; }

write_wrapper() {
  local dir="$1" name="$2" extra="$3"
  cat > "$dir/$name" <<WRAP
#!/bin/sh
# QEMU 10 from Debian $SUITE, run with its own loader and libraries.
R="$Q10/root"
QEMU_MODULE_DIR="\$R/usr/lib/x86_64-linux-gnu/qemu" exec "\$R/usr/lib64/ld-linux-x86-64.so.2" \\
  --library-path "\$R/usr/lib/x86_64-linux-gnu:\$R/lib/x86_64-linux-gnu" \\
  "\$R/usr/bin/$name" $extra "\$@"
WRAP
  chmod 0755 "$dir/$name"
}
X86_L='-L "$R/usr/share/qemu" -L "$R/usr/share/seabios" -L "$R/usr/lib/ipxe/qemu"'
ARM_L='-L "$R/usr/share/qemu" -L "$R/usr/share/qemu-efi-aarch64" -L "$R/usr/share/AAVMF" -L "$R/usr/lib/ipxe/qemu"'

# Unpacks the downloaded .debs into $1 and points Debian's absolute links
# (/usr/share/qemu/bios.bin -> /usr/share/seabios/bios.bin) at $2, the
# root they will end up in.
unpack() {
  local into="$1" final="$2" deb link target
  mkdir -p "$into"
  for deb in "$work"/cache/archives/*.deb; do dpkg-deb -x "$deb" "$into"; done
  find "$into" -type l | while read -r link; do
    target="$(readlink "$link")"
    case "$target" in /*) ln -sfn "$final$target" "$link" ;; esac
  done
}

# What the engine's firmware search looks at first for a binary in
# <prefix>/bin (a QEMU install's own share/qemu/edk2-aarch64-code.fd).
link_firmware() {
  local prefix="$1" fd
  for fd in usr/share/qemu/edk2-aarch64-code.fd usr/share/qemu-efi-aarch64/QEMU_EFI.fd usr/share/AAVMF/AAVMF_CODE.fd; do
    if [ -f "$prefix/root/$fd" ]; then
      mkdir -p "$prefix/share/qemu"
      ln -sfn "$Q10/root/$fd" "$prefix/share/qemu/edk2-aarch64-code.fd"
      return 0
    fi
  done
  log "no aarch64 UEFI firmware in the $SUITE packages"; return 1
}

if x86_ok; then
  # Add the aarch64 half at the x86 half's exact QEMU version. Files the
  # prefix has are left alone (running x86 QEMUs keep working); the new ones
  # are recorded first, so an interrupted merge is redone, not trusted.
  ver="$(sed -n 's/.*(Debian \(.*\))$/\1/p' "$Q10/.complete")"
  log "adding QEMU 10 aarch64 ($ver) from Debian $SUITE to $Q10"
  if [ -n "$ver" ] && download "qemu-system-arm=$ver" qemu-efi-aarch64; then
    unpack "$work/arm" "$Q10/root"
    (cd "$work/arm" && find . ! -type d | LC_ALL=C sort) > "$work/arm.list"
    (cd "$Q10/root" && find . ! -type d | LC_ALL=C sort) > "$work/have.list"
    { LC_ALL=C comm -23 "$work/arm.list" "$work/have.list"
      [ ! -f "$Q10/.aarch64-files" ] || cat "$Q10/.aarch64-files"; } | LC_ALL=C sort -u > "$work/new.list"
    cp "$work/new.list" "$Q10/.aarch64-files"
    tar -C "$work/arm" -cf - --no-recursion -T "$work/new.list" | tar -C "$Q10/root" -xf -
    link_firmware "$Q10"
    write_wrapper "$Q10/bin" qemu-system-aarch64 "$ARM_L"
    "$Q10/bin/qemu-system-aarch64" --version | head -1 > "$Q10/.complete-aarch64"
    summary
    exit 0
  fi
  log "QEMU $ver is no longer in $SUITE: rebuilding the whole prefix"
  rm -rf "$work/cache/archives"/*.deb
fi

log "fetching QEMU 10 from Debian $SUITE into $Q10"
download qemu-system-x86 qemu-system-arm qemu-efi-aarch64 qemu-utils
stage="$work/prefix"
mkdir -p "$stage/bin"
unpack "$stage/root" "$stage/root"
link_firmware "$stage"
write_wrapper "$stage/bin" qemu-system-x86_64 "$X86_L"
write_wrapper "$stage/bin" qemu-system-aarch64 "$ARM_L"
write_wrapper "$stage/bin" qemu-img ''

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
"$Q10/bin/qemu-system-aarch64" --version | head -1 > "$Q10/.complete-aarch64"
summary
