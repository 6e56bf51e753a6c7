#!/usr/bin/env bash
# The initramfs of a user-mode VM for ARCH: the host-architecture initramfs BASE with a second
# newc archive appended (the kernel unpacks both) holding the static emulator
# /hull/qemu-user/qemu-<arch>-static and its binfmt_misc rule /hull/binfmt/qemu-<arch>, which
# the agent registers at boot with the F flag (the kernel keeps the emulator open; it never
# appears in the container's rootfs). Needs guest/foreign/fetch.sh ARCH first.
#   guest/foreign/user-initramfs.sh BASE.cpio ARCH OUT.cpio
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/arches.sh"
base=$1 arch=$2 out=$3
q=$(qemu_arch "$arch")
qu=$(foreign_cache)/qemu-user
emu=$qu/qemu-$q-static rule=$qu/qemu-$q.conf
[ -x "$emu" ] && [ -f "$rule" ] || { echo "error: $emu missing: run scripts/setup.sh --arch $arch" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/hull/qemu-user" "$tmp/hull/binfmt"
install -m 0755 "$emu" "$tmp/hull/qemu-user/qemu-$q-static"
# Debian's rule, pointed at our copy: :name:type:offset:magic:mask:interpreter:flags. Flags:
# F (open the emulator now), P (keep argv[0]: busybox applets), O (hand over an open fd).
awk -F: -v OFS=: -v interp="/hull/qemu-user/qemu-$q-static" '{ $7 = interp; $8 = "FPO"; print }' "$rule" \
  > "$tmp/hull/binfmt/qemu-$q"
(cd "$tmp" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible) > "$tmp/extra.cpio"
cat "$base" "$tmp/extra.cpio" > "$out.tmp"
mv "$out.tmp" "$out"
