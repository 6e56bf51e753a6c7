#!/usr/bin/env bash
# Builds the guest of a foreign architecture ("system mode": a VM of that architecture under
# TCG) into OUT_DIR: the static hull-agent cross-built for it, packed as OUT_DIR/initramfs.cpio,
# next to a link to that architecture's kernel image (guest/kernel/build-arch.sh, cached).
#
#   scripts/build-guest-arch.sh ARCH [OUT_DIR]        ARCH: arm64; OUT_DIR: target/hull-guest-ARCH
#
# The agent is built with Debian's rustc (HULL_CROSS_RUSTC, default /usr/bin/rustc: package
# rustc-web, whose libstd-rust-web-dev:<arch> holds the target's std; rustup's toolchain here
# has none) and linked by the cross gcc (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross).
# HULL_KERNEL_<ARCH> (e.g. HULL_KERNEL_ARM64) names a kernel image instead of building one.
# Prints OUT_DIR last.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: build-guest-arch.sh ARCH [OUT_DIR]}
out=${2:-target/hull-guest-$arch}
case "$arch" in
  arm64) triple=aarch64-unknown-linux-gnu cross=aarch64-linux-gnu- image=Image machine='ARM aarch64' ;;
  *) echo "error: unsupported ARCH '$arch' (supported: arm64)" >&2; exit 2 ;;
esac
rustc=${HULL_CROSS_RUSTC:-/usr/bin/rustc}
[ -x "$rustc" ] || { echo "error: $rustc missing: apt-get install rustc-web" >&2; exit 1; }
sysroot=$("$rustc" --print sysroot)
[ -d "$sysroot/lib/rustlib/$triple/lib" ] || {
  echo "error: $rustc has no std for $triple ($sysroot/lib/rustlib/$triple):" \
    "dpkg --add-architecture ${arch}; apt-get install libstd-rust-web-dev:${arch}" >&2
  exit 1
}
command -v "${cross}gcc" >/dev/null || { echo "error: ${cross}gcc missing: apt-get install gcc-${cross%-} libc6-dev-${arch}-cross" >&2; exit 1; }

kvar=HULL_KERNEL_${arch^^}
kernel=${!kvar:-$(guest/kernel/build-arch.sh "$arch" | tail -n1)}

linker_var=CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_LINKER
# Thin LTO in parallel codegen units (the host agent's profile has fat LTO in one unit): the
# cross build is on the setup's critical path, a few hundred KiB more agent cost nothing.
env RUSTC="$rustc" "$linker_var=${cross}gcc" RUSTFLAGS='-C target-feature=+crt-static' \
  CARGO_PROFILE_AGENT_LTO=thin CARGO_PROFILE_AGENT_CODEGEN_UNITS=16 \
  cargo build -q --profile agent --target "$triple" -p hull-agent
agent=${CARGO_TARGET_DIR:-target}/$triple/agent/hull-agent
desc=$(file -b "$agent")
case "$desc" in
  *"$machine"*"statically linked"*) ;;
  *) echo "error: $agent is not a static $machine executable: $desc" >&2; exit 1 ;;
esac
mkdir -p "$out"
guest/initramfs/build.sh "$agent" "$out/initramfs.cpio"
ln -sf "$(realpath "$kernel")" "$out/$image"
echo "$out"
