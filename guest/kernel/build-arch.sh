#!/usr/bin/env bash
# Builds hull's guest kernel for a foreign architecture ("system mode": the container's image is
# for ARCH, the VM is `qemu-system-<arch>` under TCG) from Debian's linux-source-6.1.
#
#   guest/kernel/build-arch.sh ARCH [OUT_DIR]        ARCH: arm64
#
# tinyconfig + the arch-neutral fragments of ./fragments (listed per ARCH below) + arch/ARCH/*.conf
# -> olddefconfig -> every CONFIG_ line of those fragments must survive in the final .config
# (the build fails otherwise) -> the uncompressed kernel image (arm64: `Image`, booted with
# -kernel). The result is cached in ${HULL_CACHE_DIR:-/var/cache/hull}/kernel-ARCH/<key>, where
# <key> hashes the source package version, the cross compiler's version, the fragments and this
# script; a cache hit costs nothing. The image's path is the last line on stdout.
#
# Adding an architecture (riscv64: ARCH=riscv, riscv64-linux-gnu-, arch/riscv/boot/Image) is one
# more case below and a guest/kernel/arch/<ARCH>/ directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
arch=${1:?usage: build-arch.sh ARCH [OUT_DIR]}
out=${2:-}
case "$arch" in
  arm64)
    karch=arm64 cross=aarch64-linux-gnu- target=Image image=arch/arm64/boot/Image
    # base.conf and virtio.conf hold x86-only symbols (8250, ACPI, PCI): their neutral lines are
    # in arch/arm64/; paravirt.conf is x86 (PVH, KVM guest).
    shared="container fs net lean"
    ;;
  *) echo "error: unsupported ARCH '$arch' (supported: arm64)" >&2; exit 2 ;;
esac
src_tar=/usr/src/linux-source-6.1.tar.xz
[ -f "$src_tar" ] || { echo "error: $src_tar missing: apt-get install linux-source-6.1" >&2; exit 1; }
command -v "${cross}gcc" >/dev/null || { echo "error: ${cross}gcc missing: apt-get install gcc-${cross%-}" >&2; exit 1; }
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
fragments=()
for f in $shared; do fragments+=("$here/fragments/$f.conf"); done
fragments+=("$here"/arch/"$arch"/*.conf)
key=$( (echo "$arch $version"; "${cross}gcc" --version | head -n1; cat "${fragments[@]}" "$here/build-arch.sh") \
  | sha256sum | cut -c1-16)
cache=${HULL_CACHE_DIR:-/var/cache/hull}/kernel-$arch/$key
name=$(basename "$image")

if [ ! -f "$cache/$name" ]; then
  work=$cache.build
  rm -rf "$work"; mkdir -p "$work"
  echo "kernel: building $arch $key from linux-source-6.1 $version (~10 min on 2 cores)" >&2
  tar -C "$work" -xf "$src_tar"
  ksrc=$(echo "$work"/linux-source-6.1)
  kmake() { make -C "$ksrc" -s ARCH="$karch" CROSS_COMPILE="$cross" "$@"; }
  kmake tinyconfig
  (cd "$ksrc" && ARCH=$karch scripts/kconfig/merge_config.sh -m .config "${fragments[@]}" >/dev/null)
  kmake olddefconfig
  missing=0
  for line in $(grep -h '^CONFIG_' "${fragments[@]}"); do
    if ! grep -qx "$line" "$ksrc/.config"; then
      echo "kernel: required ${line%%=*} missing from final .config (wanted $line)" >&2
      missing=1
    fi
  done
  [ "$missing" = 0 ] || { echo "kernel: config check failed; fix guest/kernel/arch/$arch" >&2; exit 1; }
  kmake -j"$(nproc)" "$target"
  mkdir -p "$cache.tmp"
  cp "$ksrc/$image" "$cache.tmp/$name"
  cp "$ksrc/.config" "$cache.tmp/config"
  echo "$key" > "$cache.tmp/key"
  rm -rf "$cache"; mv "$cache.tmp" "$cache"
  rm -rf "$work"
fi
if [ -n "$out" ]; then
  mkdir -p "$out"
  install -m 0644 "$cache/$name" "$out/$name"
  install -m 0644 "$cache/config" "$out/kernel.config"
  install -m 0644 "$cache/key" "$out/kernel.key"
fi
echo "$cache/$name"
