#!/usr/bin/env bash
# Builds the test guest: a small qcow2 that honours the guest contract, made
# only from Debian packages (kernel, busybox, qemu-guest-agent, syslinux).
#
#   disk:  MBR (syslinux) | p1 FAT: kernel, initramfs, syslinux.cfg
#                         | p2 ext4 "GUESTDATA": written at every boot
#   initramfs: busybox init + httpd stand-ins for the stack's services,
#              qemu-ga with its libraries, virtio/9p/ext4/isofs modules.
#
# Cached by a hash of its inputs (this recipe and the package versions):
# a second run prints the cached path and does nothing else.
#   --print-path        print the image path (building it if needed)
#   --flavour contract  the guest contract and nothing more: no /sbin/hwclock
#                       (qemu-ga cannot set the clock), no date, and a
#                       mount-host-fs without the --path extension
#                       (flavours/contract/ overlays the rootfs)
set -euo pipefail

print_path=0; FLAVOUR=full
while [ "$#" -gt 0 ]; do
  case "$1" in
    --print-path) print_path=1 ;;
    --flavour) shift; FLAVOUR="${1:-}" ;;
    *) printf '[test-guest] unknown argument: %s\n' "$1" >&2; exit 2 ;;
  esac
  shift
done
case "$FLAVOUR" in
  full | contract) ;;
  *) printf '[test-guest] unknown flavour %s: use full or contract\n' "$FLAVOUR" >&2; exit 2 ;;
esac

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${HEXCLAVE_GUEST_CACHE:-$HOME/.cache/hexclave-emulator/guest}"
PKGS=(linux-image-amd64 busybox-static qemu-guest-agent syslinux-common)
log() { printf '[test-guest] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
tools=(mtools dosfstools e2fsprogs fdisk cpio zstd qemu-utils syslinux kmod
  libglib2.0-0 libudev1 libnuma1 liburing2 libpcre2-8-0)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing build tools: ${missing[*]}"
  [ -n "$(ls /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ] || as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

versions="$(for p in "${PKGS[@]}"; do printf '%s=%s\n' "$p" "$(apt-cache policy "$p" | sed -n 's/ *Candidate: //p')"; done)"
kpkg="$(apt-cache depends linux-image-amd64 | sed -n 's/ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -1)"
recipe_hash="$( { printf '%s\n%s\n' "$versions" "$kpkg"; cd "$HERE" && find . -type f ! -name '*.md' | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)"
[ "$FLAVOUR" = full ] || recipe_hash="$recipe_hash-$FLAVOUR"
OUT_DIR="$CACHE/$recipe_hash"
IMAGE="$OUT_DIR/stack-emulator-amd64.qcow2"

if [ -f "$OUT_DIR/.complete" ]; then
  [ "$print_path" = 1 ] && echo "$IMAGE" || log "cached: $IMAGE"
  exit 0
fi
# One build at a time (test files, benchmarks and CI may ask together).
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if [ -f "$OUT_DIR/.complete" ]; then
  [ "$print_path" = 1 ] && echo "$IMAGE" || log "cached: $IMAGE"
  exit 0
fi

started=$SECONDS
work="$(mktemp -d "${TMPDIR:-/tmp}/hexclave-guest-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
log "building ($recipe_hash) with $kpkg"
apt-get download "$kpkg" busybox-static qemu-guest-agent syslinux-common >/dev/null 2>&1 \
  || { log "apt-get download failed; run apt-get update"; exit 1; }
mkdir -p pkg
for deb in ./*.deb; do dpkg-deb -x "$deb" pkg; done
KVER="$(ls pkg/lib/modules)"
depmod -b pkg "$KVER"

# --- initramfs -------------------------------------------------------------
R="$work/initramfs"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,lib64,lib/x86_64-linux-gnu,etc,proc,sys,dev,run,tmp,data,host,www,var}
ln -s /run "$R/var/run"
cp pkg/bin/busybox "$R/bin/busybox"
for applet in $("$R/bin/busybox" --list-full); do
  [ -e "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done
ln -sf /bin/busybox "$R/init"
cp -a "$HERE/rootfs/." "$R/"
if [ "$FLAVOUR" != full ]; then
  cp -a "$HERE/flavours/$FLAVOUR/." "$R/"
  rm -f "$R/REMOVE"
  grep -v '^#' "$HERE/flavours/$FLAVOUR/REMOVE" | while read -r p; do [ -z "$p" ] || rm -f "$R$p"; done
fi

# qemu-ga and the libraries it links (the host runs the same Debian release).
cp pkg/usr/sbin/qemu-ga "$R/usr/sbin/qemu-ga"
ldd pkg/usr/sbin/qemu-ga | awk '/=> \//{print $3} /^\t\/lib64/{print $1}' | while read -r lib; do
  case "$lib" in
    /lib64/*) cp -L "$lib" "$R/lib64/" ;;
    *) cp -L "$lib" "$R/lib/x86_64-linux-gnu/" ;;
  esac
done

# Kernel modules, dependencies first.
wanted="virtio_pci virtio_blk virtio_net virtio_console virtio-rng isofs nls_utf8 crc32c_generic ext4 9pnet_virtio 9p"
MOD="pkg/lib/modules/$KVER"
order=()
add_mod() {
  local path dep
  path="$(grep -E "(^|/)$1\.ko:" "$MOD/modules.dep" | head -1 | cut -d: -f1 || true)"
  if [ -z "$path" ]; then
    grep -qE "(^|/)$1\.ko$" "$MOD/modules.builtin" && return 0
    log "module $1 not found"; exit 1
  fi
  for dep in $(grep -E "^$path:" "$MOD/modules.dep" | cut -d: -f2); do
    add_mod "$(basename "$dep" .ko)"
  done
  for m in "${order[@]:-}"; do [ "$m" = "$path" ] && return 0; done
  order+=("$path")
}
for m in $wanted; do add_mod "$m"; done
: > "$R/etc/modules.order"
for path in "${order[@]}"; do
  mkdir -p "$R/lib/modules/$(dirname "$path")"
  cp "$MOD/$path" "$R/lib/modules/$path"
  echo "$path" >> "$R/etc/modules.order"
done

# Stand-in web roots: each answers the contract's health request with 200.
mkdir -p "$R/www/dashboard/handler" "$R/www/backend/internal" "$R/www/minio/minio/health" \
  "$R/www/inbucket" "$R/www/mock-oauth"
echo ok > "$R/www/dashboard/handler/sign-in"
echo ok > "$R/www/dashboard/index.html"
echo '{"status":"ok","db":true}' > "$R/www/backend/health"
echo ok > "$R/www/minio/minio/health/live"
echo '<html>inbucket stand-in</html>' > "$R/www/inbucket/index.html"
echo '{"issuer":"mock-oauth stand-in"}' > "$R/www/mock-oauth/index.html"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"

(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | zstd -q -19 -T0 > initrd.img

# --- disk ------------------------------------------------------------------
cp pkg/boot/vmlinuz-"$KVER" vmlinuz
cat > syslinux.cfg <<CFG
DEFAULT guest
PROMPT 0
TIMEOUT 0
LABEL guest
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0,115200 quiet loglevel=3 rdinit=/init random.trust_cpu=on tsc=reliable mitigations=off
CFG
boot_mib=32; data_mib=48; total_mib=$((1 + boot_mib + data_mib))
mkfs.fat -C -n GUESTBOOT boot.img $((boot_mib * 1024)) >/dev/null
mcopy -i boot.img vmlinuz initrd.img syslinux.cfg ::/
syslinux --install boot.img
mke2fs -q -t ext4 -L GUESTDATA -O ^has_journal,^metadata_csum -E root_owner=0:0 data.img "${data_mib}M"
# ^has_journal keeps e2fsck's verdict about the capture layer meaningful: a
# write lost across capture/resume shows up as an inconsistency, not a replay.
truncate -s "${total_mib}M" disk.raw
printf 'label: dos\nstart=2048, size=%d, type=c, bootable\nstart=%d, type=83\n' \
  $((boot_mib * 2048)) $(((1 + boot_mib) * 2048)) | sfdisk -q disk.raw
dd if=pkg/usr/lib/syslinux/mbr/mbr.bin of=disk.raw bs=440 count=1 conv=notrunc status=none
dd if=boot.img of=disk.raw bs=1M seek=1 conv=notrunc status=none
dd if=data.img of=disk.raw bs=1M seek=$((1 + boot_mib)) conv=notrunc status=none

mkdir -p "$OUT_DIR.tmp"
qemu-img convert -c -f raw -O qcow2 disk.raw "$OUT_DIR.tmp/stack-emulator-amd64.qcow2"
{ printf 'recipe=%s\nkernel=%s\n%s\n' "$recipe_hash" "$KVER" "$versions"; } > "$OUT_DIR.tmp/manifest.txt"
touch "$OUT_DIR.tmp/.complete"
rm -rf "$OUT_DIR"
mv "$OUT_DIR.tmp" "$OUT_DIR"
[ "$FLAVOUR" != full ] || ln -sfn "$recipe_hash" "$CACHE/latest"
log "built $IMAGE ($(du -h "$IMAGE" | cut -f1)) in $((SECONDS - started)) s"
[ "$print_path" = 1 ] && echo "$IMAGE"
exit 0
