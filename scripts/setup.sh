#!/usr/bin/env bash
# One-command setup of a Debian 12 machine for hull (idempotent; a second run takes seconds):
# apt packages, virtiofsd (crates.io, pinned), the guest kernel (cached), the static agent and
# initramfs, hull itself; installs binaries to /usr/local/bin and guest assets to
# /usr/local/share/hull.
set -euo pipefail
cd "$(dirname "$0")/.."
VIRTIOFSD_VERSION=1.13.2
PREFIX=${PREFIX:-/usr/local}
SHARE=$PREFIX/share/hull
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo

apt_packages=(
  # VMs and the shared filesystem
  qemu-system-x86 libseccomp-dev libcap-ng-dev pkg-config passt
  # guest kernel build
  linux-source-6.1 bc bison flex libelf-dev libssl-dev cpio xz-utils file make gcc
  # test fixtures and real engines for the conformance tests
  busybox-static runc podman containerd docker.io buildah skopeo docker-registry util-linux containernetworking-plugins netavark aardvark-dns iproute2 protobuf-compiler curl
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! "$PREFIX/bin/virtiofsd" --version 2>/dev/null | grep -q "$VIRTIOFSD_VERSION"; then
  echo "setup: cargo install virtiofsd $VIRTIOFSD_VERSION (~5 min)"
  $sudo cargo install -q virtiofsd --locked --version "$VIRTIOFSD_VERSION" --root "$PREFIX"
fi

echo "setup: guest kernel"
kernel=$(guest/kernel/build.sh "$SHARE" | tail -n1)

echo "setup: hull and the guest agent"
cargo build -q --release --workspace --bins
HULL_KERNEL=$kernel scripts/build-guest.sh target/hull-guest >/dev/null
$sudo install -d "$SHARE"
$sudo install -m 0644 target/hull-guest/initramfs.cpio "$SHARE/initramfs.cpio"
for b in hull hull-runtime hull-monitor; do
  $sudo install -m 0755 "target/release/$b" "$PREFIX/bin/$b"
done

echo "setup: the demo image (hull-demo, from busybox-static) in hull's store"
demo=$(mktemp --suffix=.tar)
guest/demo/build.sh "$demo" >/dev/null
$sudo "$PREFIX/bin/hull" load -i "$demo"
rm -f "$demo"
echo "setup: done ($PREFIX/bin/hull, $PREFIX/bin/hull-runtime, guest assets in $SHARE)"
