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
guest/initramfs/build.sh target/x86_64-unknown-linux-gnu/agent/hull-agent "$out/initramfs.cpio"
ln -sf "$kernel" "$out/vmlinux"
echo "$out"
