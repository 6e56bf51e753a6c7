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

/// The path of the namespace of type `kind` in a captured config.json (None: a new one).
pub fn namespace_path(config: &serde_json::Value, kind: &str) -> Option<String> {
    config["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|ns| ns["type"] == kind)?["path"]
        .as_str()
        .map(str::to_owned)
}

/// Panics unless `haystack` contains `needle`, showing both.
#[track_caller]
pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

/// What `podman top` / `docker top` show for a container whose process is `cmd`.
///
/// Under runc that is the process itself. Under hull the container's processes run in the VM;
/// on the host the container is represented by its monitor (the pid-file PID, the first PID of
/// `hull-runtime ps`), whose command line names the container: `hull-monitor container … --id ID`.
pub fn top_marker(cmd: &str) -> String {
    let rt = hull_testkit::engines::runtime_under_test();
    let is_hull = rt
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("hull"));
    if is_hull {
        "hull-monitor container".to_string()
    } else {
        cmd.to_string()
    }
}
