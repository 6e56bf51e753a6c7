#!/usr/bin/env bash
# Builds the static guest agent and packs the initramfs into DIR (default target/hull-guest),
# next to a link to the guest kernel. Used by setup (installing) and by the tests (fresh agent).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/hull-guest}
kernel=${HULL_KERNEL:-$(guest/kernel/build.sh | tail -n1)}
RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --profile agent \
  --target x86_64-unknown-linux-gnu -p hull-agent
mkdir -p "$out"
guest/initramfs/build.sh "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/agent/hull-agent" "$out/initramfs.cpio"
ln -sf "$kernel" "$out/vmlinux"
# Foreign architectures the setup enabled (HULL_ARCHES overrides): a user-mode initramfs each,
# and a guest of their own where hull builds one (system mode).
. guest/foreign/arches.sh
arches=${HULL_ARCHES-$(cat "${PREFIX:-/usr/local}/share/hull/arches" 2>/dev/null || true)}
rm -f "$out"/initramfs-user-*.cpio
: > "$out/arches"
for a in ${arches//,/ }; do
  guest/foreign/user-initramfs.sh "$out/initramfs.cpio" "$a" "$out/initramfs-user-$a.cpio"
  if has_system_mode "$a"; then
    if [ -x scripts/build-guest-arch.sh ]; then scripts/build-guest-arch.sh "$a" "$out/$a" >/dev/null; fi
  fi
  echo "$a" >> "$out/arches"
done
echo "$out"
