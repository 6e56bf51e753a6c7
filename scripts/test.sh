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
cargo test -q --workspace -- --test-threads="${HULL_TEST_THREADS:-2}" "$@"
