#!/usr/bin/env bash
# One-command setup of a Debian 12 machine for hull (idempotent; a second run takes seconds):
# apt packages, virtiofsd (crates.io, pinned), the guest kernel (cached), the static agent and
# initramfs, hull itself; installs binaries to /usr/local/bin and guest assets to
# /usr/local/share/hull.
#
#   scripts/setup.sh [--arch arm64,arm,...|none]
#
# --arch: foreign architectures to run (opt-in; remembered in $SHARE/arches, so a later run
# without --arch keeps them): the qemu-user emulator of each (user mode) and, for arm64, a
# guest kernel and agent of its own (system mode: ~10-20 min more the first time, ~150 MiB of
# cache). See README "Foreign architectures".
set -euo pipefail
cd "$(dirname "$0")/.."
VIRTIOFSD_VERSION=1.13.2
PREFIX=${PREFIX:-/usr/local}
SHARE=$PREFIX/share/hull
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
. guest/foreign/arches.sh

arches=$(cat "$SHARE/arches" 2>/dev/null || true)
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arches=${2:?--arch needs a list, e.g. arm64,arm}; shift 2 ;;
    --arch=*) arches=${1#--arch=}; shift ;;
    *) echo "usage: scripts/setup.sh [--arch arm64,arm,...|none]" >&2; exit 2 ;;
  esac
done
arches=${arches//,/ }; [ "$arches" = none ] && arches=""
for a in $arches; do deb_arch "$a" >/dev/null; done

apt_packages=(
  # VMs and the shared filesystem
  qemu-system-x86 libseccomp-dev libcap-ng-dev pkg-config passt
  # guest kernel build
  linux-source-6.1 bc bison flex libelf-dev libssl-dev cpio xz-utils file make gcc
  # test fixtures and real engines for the conformance tests
  busybox-static runc podman containerd docker.io buildah skopeo docker-registry util-linux containernetworking-plugins netavark aardvark-dns iproute2 protobuf-compiler curl
)
# Foreign architectures: Debian's architecture for their test images (busybox-static:<arch>),
# and for arm64's system mode QEMU, a cross compiler and Debian's Rust with arm64's std.
for a in $arches; do
  d=$(deb_arch "$a")
  case $d in
    arm64|armhf|ppc64el|s390x)
      if ! grep -qx "$d" <<<"$(dpkg --print-foreign-architectures)"; then
        $sudo dpkg --add-architecture "$d"; added_arch=1
      fi ;;
  esac
  if has_system_mode "$a"; then
    apt_packages+=(qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross rustc-web "libstd-rust-web-dev:$d")
  fi
done
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ -n "${added_arch:-}" ]; then
  echo "setup: installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # QEMU's packages move in lockstep: a qemu-utils of another release (some images carry one
  # from backports, which Breaks Debian's qemu-system-common) is aligned with qemu-system-x86.
  qemu_v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/{print $2}')
  utils_v=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  if [ -n "$utils_v" ] && [ -n "$qemu_v" ] && [ "$utils_v" != "$qemu_v" ] \
      && ! dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q "install ok installed"; then
    echo "setup: qemu-utils $utils_v does not match qemu-system-x86 $qemu_v: installing qemu-utils=$qemu_v"
    missing+=("qemu-utils=$qemu_v")
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "${missing[@]}" >/dev/null
fi

# Foreign kernels (system mode) build in the background meanwhile: the steps below leave cores
# idle in their serial phases (linking, LTO). Cached: a second run costs nothing.
foreign_kernels=()
for a in $arches; do has_system_mode "$a" && foreign_kernels+=("$a"); done
if [ ${#foreign_kernels[@]} -gt 0 ]; then
  klog=$(mktemp --suffix=.hull-kernel.log)
  ( for a in "${foreign_kernels[@]}"; do guest/kernel/build-arch.sh "$a"; done ) >"$klog" 2>&1 &
  kpid=$!
fi

if ! "$PREFIX/bin/virtiofsd" --version 2>/dev/null | grep -q "$VIRTIOFSD_VERSION"; then
  echo "setup: cargo install virtiofsd $VIRTIOFSD_VERSION (~5 min)"
  $sudo cargo install -q virtiofsd --locked --version "$VIRTIOFSD_VERSION" --root "$PREFIX"
fi

echo "setup: guest kernel"
kernel=$(guest/kernel/build.sh "$SHARE" | tail -n1)

if [ -n "$arches" ]; then
  echo "setup: foreign architectures: $arches (emulators, test images)"
  guest/foreign/fetch.sh $arches
fi

if [ -n "${kpid:-}" ]; then
  echo "setup: waiting for the kernel of ${foreign_kernels[*]}"
  wait "$kpid" || { cat "$klog" >&2; echo "setup: the ${foreign_kernels[*]} kernel build failed" >&2; exit 1; }
  rm -f "$klog"
fi

echo "setup: hull and the guest agent"
cargo build -q --release --workspace --bins
HULL_KERNEL=$kernel HULL_ARCHES="$arches" scripts/build-guest.sh target/hull-guest >/dev/null
$sudo install -d "$SHARE"
$sudo install -m 0644 target/hull-guest/initramfs.cpio "$SHARE/initramfs.cpio"
$sudo rm -rf "$SHARE"/initramfs-user-*.cpio
for a in $arches; do
  $sudo install -m 0644 "target/hull-guest/initramfs-user-$a.cpio" "$SHARE/"
  if has_system_mode "$a"; then
    $sudo install -d "$SHARE/$a"
    $sudo install -m 0644 "target/hull-guest/$a/Image" "target/hull-guest/$a/initramfs.cpio" "$SHARE/$a/"
  fi
done
echo "$arches" | $sudo tee "$SHARE/arches" >/dev/null
for b in hull hull-runtime hull-monitor; do
  $sudo install -m 0755 "target/release/$b" "$PREFIX/bin/$b"
done

# QEMU runs as this unprivileged user (README "What differs from runc": the VMM's jail).
if ! id hull >/dev/null 2>&1; then
  echo "setup: system user hull (QEMU runs as it)"
  $sudo useradd --system --no-create-home --shell /usr/sbin/nologin hull
fi
if getent group kvm >/dev/null && ! id -nG hull | grep -qw kvm; then
  $sudo usermod -aG kvm hull
fi

echo "setup: the demo image (hull-demo, from busybox-static) in hull's store"
demo=$(mktemp --suffix=.tar)
guest/demo/build.sh "$demo" >/dev/null
$sudo "$PREFIX/bin/hull" load -i "$demo"
rm -f "$demo"
echo "setup: done ($PREFIX/bin/hull, $PREFIX/bin/hull-runtime, guest assets in $SHARE)"
