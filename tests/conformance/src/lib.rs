//! Engine conformance tests for hull: real container engines (podman, containerd + ctr,
//! dockerd, buildah) drive the runtime under test through their ordinary CLIs, and each test
//! checks what a user would see (output, exit codes, status).
//!
//! The runtime under test is `$HULL_TEST_RUNTIME` (e.g. `/usr/sbin/runc`) or else the
//! workspace's `target/debug/hull-runtime`:
//!
//! ```text
//! HULL_TEST_RUNTIME=/usr/sbin/runc cargo test -p hull-conformance -- --test-threads=2
//! ```
//!
//! Fixtures (private daemons, stores, the busybox image) live in `hull_testkit::engines` and
//! `hull_testkit::image`; this crate adds [`pty::Pty`] for interactive (`-it`) sessions.

pub mod pty;

/// Panics unless `haystack` contains `needle`, showing both.
#[track_caller]
pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}
