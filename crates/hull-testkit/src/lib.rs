//! Test fixtures shared by hull's integration and conformance tests: busybox root filesystems
//! and bundles built at test time from Debian's `busybox-static`, paths of the binaries under
//! test, and waiting on conditions with deadlines (never fixed sleeps).
//!
//! A fixture that cannot be built because something is not installed panics with what to
//! install: a test that cannot run its real part fails, it never passes silently.

pub mod bundle;
pub mod command;
pub mod cri;
pub mod engines;
pub mod image;
pub mod net;
pub mod wait;

use std::path::PathBuf;

/// Root of the cargo workspace.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The files of `fuzz/corpus/<target>` (the fuzz targets' kept corpus, replayed as regression
/// tests), sorted by path. Panics, naming the directory, when it is missing or empty: a replay
/// of nothing must not pass.
pub fn fuzz_corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = workspace_root().join("fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} missing: {e}", dir.display()));
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, b)
        })
        .collect();
    assert!(!files.is_empty(), "fuzz corpus {} is empty", dir.display());
    files.sort();
    files
}

/// Path of a hull binary under test: `$HULL_BIN_DIR/<name>` if set, else the workspace's
/// `target/debug/<name>` (cargo builds it before integration tests of the crate that owns it).
pub fn hull_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("HULL_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace` first (or set HULL_BIN_DIR)",
        p.display()
    );
    p
}

/// Panics with an install hint if `program` is not on PATH.
pub fn require_program(program: &str, install_hint: &str) -> PathBuf {
    which(program).unwrap_or_else(|| panic!("`{program}` is not installed: {install_hint}"))
}

/// Looks a program up on PATH (plus ~/.cargo/bin and /usr/sbin).
pub fn which(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/sbin".into());
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `MemTotal` of a `/proc/meminfo` text, in MiB (panics naming the text if there is none).
#[track_caller]
pub fn mem_total_mib(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib / 1024)
        .unwrap_or_else(|| panic!("no MemTotal in {meminfo}"))
}

/// The directories of cgroup `rel` (relative to a hierarchy's root) in the host's cgroup
/// hierarchies that have it (v1 controllers under /sys/fs/cgroup, or the v2 root).
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let root = std::path::Path::new("/sys/fs/cgroup");
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .chain(std::iter::once(root.to_path_buf()))
        .map(|h| h.join(rel))
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}
