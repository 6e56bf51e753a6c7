# Sourced by the foreign-architecture scripts: names of an OCI architecture in the other
# worlds. deb_arch ARCH -> Debian's architecture; qemu_arch ARCH -> qemu-<name>-static.
# Supported: arm64, arm (arm/v7, Debian armhf), riscv64 (emulator only: Debian 12 has no
# riscv64 packages), ppc64le, s390x.
deb_arch() {
  case $1 in
    arm64) echo arm64 ;; arm) echo armhf ;; riscv64) echo riscv64 ;;
    ppc64le) echo ppc64el ;; s390x) echo s390x ;;
    *) echo "error: unknown architecture '$1' (known: arm64 arm riscv64 ppc64le s390x)" >&2; return 1 ;;
  esac
}
qemu_arch() {
  case $1 in
    arm64) echo aarch64 ;; arm) echo arm ;; riscv64) echo riscv64 ;;
    ppc64le) echo ppc64le ;; s390x) echo s390x ;;
    *) echo "error: unknown architecture '$1' (known: arm64 arm riscv64 ppc64le s390x)" >&2; return 1 ;;
  esac
}
# Architectures whose system mode (a kernel and agent of their own) hull can build.
has_system_mode() { [ "$1" = arm64 ]; }
foreign_cache() { echo "${HULL_CACHE_DIR:-/var/cache/hull}/foreign"; }
