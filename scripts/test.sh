#!/usr/bin/env bash
# Runs hull's whole test suite: unit tests, VM integration tests and engine conformance tests.
# Needs the setup (scripts/setup.sh) done. Tests use this checkout's binaries and a freshly built
# agent initramfs (target/hull-guest), not the installed ones.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy -q --workspace --all-targets -- -D warnings
cargo build -q --workspace --bins
export HULL_GUEST_DIR=$PWD/$(scripts/build-guest.sh target/hull-guest)
export HULL_BIN_DIR=$PWD/target/debug
# VM templates: one template directory for the whole run (each test has its own state root; the
# template tests use their own directories), emptied first so the run builds its own.
export HULL_TEMPLATE_DIR=$PWD/target/hull-templates
rm -rf "$HULL_TEMPLATE_DIR"
threads=${HULL_TEST_THREADS:-2}
# Every suite with templates (the default): VMs are clones, shares are virtio-9p.
cargo test -q --workspace --no-fail-fast -- --test-threads="$threads" "$@"
# Foreign architectures the setup enabled (scripts/setup.sh --arch): their opt-in tests, named
# after the architecture (arm64_…, arm_v7_…), in every crate's `foreign` test target.
if [ $# -eq 0 ]; then
  filters=()
  for a in $(cat "$HULL_GUEST_DIR/arches"); do
    case $a in arm) filters+=(arm_v7_) ;; *) filters+=("${a}_") ;; esac
  done
  if [ ${#filters[@]} -gt 0 ]; then
    cargo test -q --workspace --test foreign --no-fail-fast -- --ignored \
      --test-threads="$threads" "${filters[@]}"
  fi
fi
# The cold-boot subset: the runtime's run and lifecycle suites with templates off (virtio-fs).
if [ $# -eq 0 ]; then
  HULL_VM_TEMPLATE=off cargo test -q -p hull-runtime --test run --test lifecycle -- \
    --test-threads="$threads"
fi
if [ $# -eq 0 ]; then cargo run -q -p hull-soak -- --cycles 20 --parallel 4; fi  # fault-injection soak (tests/soak)
