#!/usr/bin/env bash
# Builds hull's guest kernel from Debian's linux-source-6.1 and the fragments in ./fragments.
#
#   guest/kernel/build.sh [OUT_DIR]
#
# tinyconfig + fragments/*.conf -> olddefconfig -> every CONFIG_ line of the fragments must
# survive in the final .config (the build fails otherwise) -> vmlinux (PVH-bootable ELF).
# The result is cached in ${HULL_CACHE_DIR:-/var/cache/hull}/kernel/<key>, where <key> hashes
# the source package version, the fragments and this script; a cache hit costs nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-}
src_tar=/usr/src/linux-source-6.1.tar.xz
[ -f "$src_tar" ] || { echo "error: $src_tar missing: apt-get install linux-source-6.1" >&2; exit 1; }
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( (echo "$version"; cat "$here"/fragments/*.conf "$here/build.sh") | sha256sum | cut -c1-16)
cache=${HULL_CACHE_DIR:-/var/cache/hull}/kernel/$key

if [ ! -f "$cache/vmlinux" ]; then
  work=$cache.build
  rm -rf "$work"; mkdir -p "$work"
  echo "kernel: building $key from linux-source-6.1 $version (10-25 min on 2 cores)" >&2
  tar -C "$work" -xf "$src_tar"
  ksrc=$(echo "$work"/linux-source-6.1)
  make -C "$ksrc" -s ARCH=x86_64 tinyconfig
  (cd "$ksrc" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m .config "$here"/fragments/*.conf >/dev/null)
  make -C "$ksrc" -s ARCH=x86_64 olddefconfig
  missing=0
  for line in $(grep -h '^CONFIG_' "$here"/fragments/*.conf); do
    if ! grep -qx "$line" "$ksrc/.config"; then
      echo "kernel: required ${line%%=*} missing from final .config (wanted $line)" >&2
      missing=1
    fi
  done
  [ "$missing" = 0 ] || { echo "kernel: config check failed; fix guest/kernel/fragments" >&2; exit 1; }
  make -C "$ksrc" -s ARCH=x86_64 -j"$(nproc)" vmlinux
  mkdir -p "$cache.tmp"
  cp "$ksrc/vmlinux" "$cache.tmp/vmlinux"
  cp "$ksrc/.config" "$cache.tmp/config"
  echo "$key" > "$cache.tmp/key"
  rm -rf "$cache"; mv "$cache.tmp" "$cache"
  rm -rf "$work"
fi
if [ -n "$out" ]; then
  mkdir -p "$out"
  install -m 0644 "$cache/vmlinux" "$out/vmlinux"
  install -m 0644 "$cache/config" "$out/kernel.config"
  install -m 0644 "$cache/key" "$out/kernel.key"
fi
echo "$cache/vmlinux"
