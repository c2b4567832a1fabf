#!/usr/bin/env bash
# Builds the test guest: a small qcow2 that honours the guest contract, made
# only from Debian packages (kernel, busybox, qemu-guest-agent, a bootloader).
#
#   amd64: MBR (syslinux) | p1 FAT: kernel, initramfs, syslinux.cfg
#                         | p2 ext4 "GUESTDATA": written at every boot
#   arm64: GPT (UEFI)     | p1 FAT ESP: EFI/BOOT/BOOTAA64.EFI (GRUB with its
#                         |   grub.cfg built in), kernel, initramfs
#                         | p2 ext4 "GUESTDATA": written at every boot
#   initramfs: busybox init + httpd stand-ins for the stack's services,
#              qemu-ga with its libraries, virtio/9p/ext4/isofs modules.
# The arm64 guest is built from Debian's arm64 packages (apt-get download
# PKG:arm64, unpacked, never installed); the host only runs grub-mkstandalone.
#
# Cached by a hash of its inputs (this recipe and the package versions):
# a second run prints the cached path and does nothing else.
#   --print-path        print the image path (building it if needed)
#   --arch arm64        the arm64 guest (stack-emulator-arm64.qcow2) for the
#                       virt machine and UEFI; default amd64
#   --flavour contract  the guest contract and nothing more: no /sbin/hwclock
#                       (qemu-ga cannot set the clock), no date, and a
#                       mount-host-fs without the --path extension
#                       (flavours/contract/ overlays the rootfs)
set -euo pipefail

print_path=0; FLAVOUR=full; ARCH=amd64
while [ "$#" -gt 0 ]; do
  case "$1" in
    --print-path) print_path=1 ;;
    --flavour) shift; FLAVOUR="${1:-}" ;;
    --arch) shift; ARCH="${1:-}" ;;
    *) printf '[test-guest] unknown argument: %s\n' "$1" >&2; exit 2 ;;
  esac
  shift
done
case "$FLAVOUR" in
  full | contract) ;;
  *) printf '[test-guest] unknown flavour %s: use full or contract\n' "$FLAVOUR" >&2; exit 2 ;;
esac
case "$ARCH" in
  amd64 | arm64) ;;
  *) printf '[test-guest] unknown arch %s: use amd64 or arm64\n' "$ARCH" >&2; exit 2 ;;
esac

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${HEXCLAVE_GUEST_CACHE:-$HOME/.cache/hexclave-emulator/guest}"
log() { printf '[test-guest] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_lists() { ls /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial; }
tools=(mtools dosfstools e2fsprogs fdisk cpio zstd qemu-utils syslinux kmod
  libglib2.0-0 libudev1 libnuma1 liburing2 libpcre2-8-0)
# arm64: grub-mkstandalone (it builds for any target from that target's
# modules) and readelf, in place of ldd for foreign binaries.
[ "$ARCH" = amd64 ] || tools+=(grub-common binutils)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing build tools: ${missing[*]}"
  [ -n "$(apt_lists)" ] || as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Every apt-cache run parses all package lists: few runs, and for amd64 only
# the host's architecture's lists.
if [ "$ARCH" = amd64 ]; then
  apt_arch=(-o "APT::Architectures=$(dpkg --print-architecture)")
  PKGS=(linux-image-amd64 busybox-static qemu-guest-agent syslinux-common)
  kmeta=linux-image-amd64
else
  apt_arch=()
  # The arm64 package lists, once (dpkg --add-architecture is idempotent).
  if ! dpkg --print-foreign-architectures | grep -qx arm64 || ! apt_lists | grep -q '_binary-arm64_Packages'; then
    log "adding the arm64 architecture to apt (package lists only; nothing arm64 is installed)"
    as_root dpkg --add-architecture arm64
    as_root apt-get update -qq
  fi
  # qemu-ga's run-time closure (libc, glib and the rest), from its Depends.
  mapfile -t ga_closure < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances --no-pre-depends qemu-guest-agent:arm64 | grep -v '^ ' | LC_ALL=C sort -u)
  PKGS=(linux-image-arm64:arm64 busybox-static:arm64 grub-efi-arm64-bin:arm64 "${ga_closure[@]}")
  kmeta=linux-image-arm64:arm64
fi
# PKG=CANDIDATE, one a line, in PKGS order.
versions="$(apt-cache "${apt_arch[@]}" policy "${PKGS[@]}" | awk -v want="${PKGS[*]}" '
  /^[^ ].*:$/ { p = substr($0, 1, length($0) - 1) }
  /^  Candidate: / { c[p] = $2 }
  END { n = split(want, w, " "); for (i = 1; i <= n; i++) printf "%s=%s%s", w[i], c[w[i]], (i < n ? "\n" : "") }')"
kpkg="$(apt-cache "${apt_arch[@]}" depends "$kmeta" | sed -n 's/ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -1)"
recipe_hash="$( {
  printf '%s\n%s\n' "$versions" "$kpkg"
  [ "$ARCH" = amd64 ] || printf 'arch=%s\n' "$ARCH"
  cd "$HERE" && find . -type f ! -name '*.md' | LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -c1-16)"
[ "$FLAVOUR" = full ] || recipe_hash="$recipe_hash-$FLAVOUR"
OUT_DIR="$CACHE/$recipe_hash"
IMAGE="$OUT_DIR/stack-emulator-$ARCH.qcow2"

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
log "building $ARCH ($recipe_hash) with $kpkg"
if [ "$ARCH" = amd64 ]; then
  fetch=("$kpkg" busybox-static qemu-guest-agent syslinux-common)
else
  fetch=("$kpkg" busybox-static:arm64 grub-efi-arm64-bin:arm64 "${ga_closure[@]}")
fi
apt-get download "${fetch[@]}" >/dev/null 2>&1 \
  || { log "apt-get download failed; run apt-get update"; exit 1; }
mkdir -p pkg
for deb in ./*.deb; do dpkg-deb -x "$deb" pkg; done
KVER="$(ls pkg/lib/modules)"
depmod -b pkg "$KVER"

# --- initramfs -------------------------------------------------------------
R="$work/initramfs"
if [ "$ARCH" = amd64 ]; then MULTIARCH=x86_64-linux-gnu; else MULTIARCH=aarch64-linux-gnu; fi
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,lib/$MULTIARCH,etc,proc,sys,dev,run,tmp,data,host,www,var}
[ "$ARCH" != amd64 ] || mkdir -p "$R/lib64"
ln -s /run "$R/var/run"
cp pkg/bin/busybox "$R/bin/busybox"
if [ "$ARCH" = amd64 ]; then
  applets="$("$R/bin/busybox" --list-full)"
else
  # A foreign busybox cannot run here to list its applets; the same
  # version's native build (Debian builds both from one config) can.
  bb_native="$(apt-cache policy busybox-static:"$(dpkg --print-architecture)" | sed -n 's/ *Candidate: //p')"
  bb_arm64="$(sed -n 's/^busybox-static:arm64=//p' <<< "$versions")"
  [ "${bb_native%+b*}" = "${bb_arm64%+b*}" ] \
    || { log "busybox-static is $bb_native here but $bb_arm64 for arm64: cannot list the applets"; exit 1; }
  mkdir native && (cd native && apt-get download busybox-static >/dev/null 2>&1 && dpkg-deb -x ./*.deb .) \
    || { log "apt-get download busybox-static failed"; exit 1; }
  applets="$(native/bin/busybox --list-full)"
fi
for applet in $applets; do
  [ -e "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done
ln -sf /bin/busybox "$R/init"
cp -a "$HERE/rootfs/." "$R/"
if [ "$FLAVOUR" != full ]; then
  cp -a "$HERE/flavours/$FLAVOUR/." "$R/"
  rm -f "$R/REMOVE"
  grep -v '^#' "$HERE/flavours/$FLAVOUR/REMOVE" | while read -r p; do [ -z "$p" ] || rm -f "$R$p"; done
fi

cp pkg/usr/sbin/qemu-ga "$R/usr/sbin/qemu-ga"
if [ "$ARCH" = amd64 ]; then
  # qemu-ga and the libraries it links (the host runs the same Debian release).
  ldd pkg/usr/sbin/qemu-ga | awk '/=> \//{print $3} /^\t\/lib64/{print $1}' | while read -r lib; do
    case "$lib" in
      /lib64/*) cp -L "$lib" "$R/lib64/" ;;
      *) cp -L "$lib" "$R/lib/$MULTIARCH/" ;;
    esac
  done
else
  # No ldd for a foreign binary: follow DT_NEEDED through the unpacked
  # packages. A path inside pkg/, with absolute links resolved inside pkg/.
  in_pkg() {
    local p="$1" t n=0
    while [ -L "pkg$p" ] && [ "$n" -lt 10 ]; do
      t="$(readlink "pkg$p")"
      case "$t" in /*) p="$t" ;; *) p="$(dirname "$p")/$t" ;; esac
      n=$((n + 1))
    done
    [ -e "pkg$p" ] && echo "pkg$p"
  }
  find_lib() {
    local d f
    for d in /lib/$MULTIARCH /usr/lib/$MULTIARCH /lib /usr/lib; do
      f="$(in_pkg "$d/$1")" && { echo "$f"; return 0; }
    done
    return 1
  }
  needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
  interp="$(readelf -l pkg/usr/sbin/qemu-ga | sed -n 's/.*interpreter: \(.*\)\]/\1/p')"
  [ "$interp" = /lib/ld-linux-aarch64.so.1 ] || { log "unexpected qemu-ga interpreter: $interp"; exit 1; }
  cp -L "$(in_pkg "$interp")" "$R$interp"
  todo=($(needed pkg/usr/sbin/qemu-ga)); seen=" "
  while [ "${#todo[@]}" -gt 0 ]; do
    lib="${todo[0]}"; todo=("${todo[@]:1}")
    case "$seen" in *" $lib "*) continue ;; esac
    seen="$seen$lib "
    [ "$lib" != "$(basename "$interp")" ] || continue
    f="$(find_lib "$lib")" || { log "qemu-ga needs $lib, which its Depends do not provide"; exit 1; }
    cp -L "$f" "$R/lib/$MULTIARCH/$lib"
    todo+=($(needed "$f"))
  done
fi

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
if [ "$ARCH" = amd64 ]; then
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
else
  # UEFI finds EFI/BOOT/BOOTAA64.EFI on the ESP by itself (no boot entries:
  # the engine gives no writable vars store). GRUB finds its partition by label.
  cat > grub.cfg <<CFG
set timeout=0
search --no-floppy --label GUESTBOOT --set=root
linux /vmlinuz console=ttyAMA0 quiet loglevel=3 rdinit=/init random.trust_cpu=on mitigations=off
initrd /initrd.img
boot
CFG
  grub-mkstandalone -O arm64-efi -d pkg/usr/lib/grub/arm64-efi -o BOOTAA64.EFI \
    --modules="part_gpt fat search search_label linux" --install-modules="part_gpt fat search search_label linux normal" \
    --locales= --fonts= --themes= "boot/grub/grub.cfg=grub.cfg"
  # The arm64 kernel is an uncompressed Image (~33 MB).
  boot_mib=64; data_mib=48; total_mib=$((1 + boot_mib + data_mib + 1))
  mkfs.fat -C -n GUESTBOOT boot.img $((boot_mib * 1024)) >/dev/null
  mmd -i boot.img ::/EFI ::/EFI/BOOT
  mcopy -i boot.img BOOTAA64.EFI ::/EFI/BOOT/
  mcopy -i boot.img vmlinuz initrd.img ::/
fi
mke2fs -q -t ext4 -L GUESTDATA -O ^has_journal,^metadata_csum -E root_owner=0:0 data.img "${data_mib}M" >&2
# ^has_journal keeps e2fsck's verdict about the capture layer meaningful: a
# write lost across capture/resume shows up as an inconsistency, not a replay.
truncate -s "${total_mib}M" disk.raw
if [ "$ARCH" = amd64 ]; then
  printf 'label: dos\nstart=2048, size=%d, type=c, bootable\nstart=%d, type=83\n' \
    $((boot_mib * 2048)) $(((1 + boot_mib) * 2048)) | sfdisk -q disk.raw
  dd if=pkg/usr/lib/syslinux/mbr/mbr.bin of=disk.raw bs=440 count=1 conv=notrunc status=none
else
  # The last MiB holds GPT's backup header.
  printf 'label: gpt\nstart=2048, size=%d, type=U, name=esp\nstart=%d, size=%d, type=L, name=data\n' \
    $((boot_mib * 2048)) $(((1 + boot_mib) * 2048)) $((data_mib * 2048)) | sfdisk -q disk.raw
fi
dd if=boot.img of=disk.raw bs=1M seek=1 conv=notrunc status=none
dd if=data.img of=disk.raw bs=1M seek=$((1 + boot_mib)) conv=notrunc status=none

mkdir -p "$OUT_DIR.tmp"
qemu-img convert -c -f raw -O qcow2 disk.raw "$OUT_DIR.tmp/stack-emulator-$ARCH.qcow2"
{ printf 'recipe=%s\nkernel=%s\n%s\n' "$recipe_hash" "$KVER" "$versions"; } > "$OUT_DIR.tmp/manifest.txt"
touch "$OUT_DIR.tmp/.complete"
rm -rf "$OUT_DIR"
mv "$OUT_DIR.tmp" "$OUT_DIR"
if [ "$FLAVOUR" = full ]; then
  if [ "$ARCH" = amd64 ]; then ln -sfn "$recipe_hash" "$CACHE/latest"; else ln -sfn "$recipe_hash" "$CACHE/latest-$ARCH"; fi
fi
log "built $IMAGE ($(du -h "$IMAGE" | cut -f1)) in $((SECONDS - started)) s"
[ "$print_path" = 1 ] && echo "$IMAGE"
exit 0
