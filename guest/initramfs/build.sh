#!/usr/bin/env bash
# Packs the guest initramfs: /init = the static hull-agent, plus the empty mount points it needs.
#   guest/initramfs/build.sh AGENT_BINARY OUT.cpio
# Uncompressed newc: the kernel unpacks it faster than it would decompress it (TCG especially).
set -euo pipefail
agent=$1 out=$2
[ -x "$agent" ] || { echo "error: agent binary $agent missing (build hull-agent first)" >&2; exit 1; }
file "$agent" 2>/dev/null | grep -q 'static' || { echo "error: $agent is not statically linked" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{proc,sys,dev,run,tmp}
install -m 0755 "$agent" "$tmp/init"
mkdir -p "$(dirname "$out")"
(cd "$tmp" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible) > "$out.tmp"
mv "$out.tmp" "$out"
