#!/usr/bin/env bash
# Fetches what foreign architectures need, from Debian's archive, into the cache
# (${HULL_CACHE_DIR:-/var/cache/hull}/foreign): the static qemu-user emulators and their
# binfmt_misc rules (from the qemu-user-static package, downloaded and unpacked, never
# installed: installing it would register the emulators in the host's binfmt_misc), and each
# architecture's busybox-static (the tests' images). Idempotent.
#   guest/foreign/fetch.sh ARCH...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/arches.sh"
cache=$(foreign_cache)
mkdir -p "$cache"
version=$(apt-cache policy qemu-user-static | awk '/Candidate:/ {print $2}')
[ -n "$version" ] && [ "$version" != "(none)" ] || { echo "error: apt knows no qemu-user-static (apt-get update?)" >&2; exit 1; }
qu=$cache/qemu-user-$(echo "$version" | tr ':+~' '___')
if [ ! -d "$qu" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  chmod 0777 "$tmp" # apt's download sandbox user writes there
  (cd "$tmp" && apt-get download -q=2 "qemu-user-static=$version")
  dpkg-deb -x "$tmp"/qemu-user-static_*.deb "$tmp/x"
  mkdir -p "$qu.tmp"
  cp -a "$tmp/x/usr/bin/." "$qu.tmp/"
  cp -a "$tmp/x/usr/lib/binfmt.d/." "$qu.tmp/"
  rm -rf "$qu"; mv "$qu.tmp" "$qu"
fi
ln -sfn "$(basename "$qu")" "$cache/qemu-user"
for arch in "$@"; do
  q=$(qemu_arch "$arch"); d=$(deb_arch "$arch")
  [ -x "$cache/qemu-user/qemu-$q-static" ] || { echo "error: qemu-user-static $version has no qemu-$q-static" >&2; exit 1; }
  mkdir -p "$cache/$arch"
  if [ ! -x "$cache/$arch/busybox" ]; then
    if ! grep -qx "$d" <<<"$(dpkg --print-foreign-architectures)"; then
      echo "note: busybox-static:$d (test images) needs Debian's $d architecture; skipped" >&2
      continue
    fi
    tmp=$(mktemp -d); chmod 0777 "$tmp"
    if (cd "$tmp" && apt-get download -q=2 "busybox-static:$d" 2>/dev/null); then
      dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
      install -m 0755 "$tmp/x/bin/busybox" "$cache/$arch/busybox"
    else
      echo "note: Debian has no busybox-static:$d; no test image for $arch" >&2
    fi
    rm -rf "$tmp"
  fi
done
