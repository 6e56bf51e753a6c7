//! The header: where and with what the figures were measured.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::procs;

#[derive(Debug, Clone)]
pub struct Header {
    pub date: String,
    pub checkout: String,
    pub accel: String,
    pub qemu: String,
    pub kernel_key: String,
    pub cpu: String,
    pub cores: usize,
    pub host_kernel: String,
    pub runtime: PathBuf,
    pub guest_dir: PathBuf,
    pub tb_size_mib: String,
    /// /proc/loadavg (1 min) when the harness started.
    pub load_at_start: String,
    /// QEMU processes on the host that are not the harness's when it started: shared pages
    /// (QEMU binary, libraries) are split with them in PSS, and they compete for the CPUs.
    pub other_qemus: usize,
    /// Where the harness's state roots (and so the templates' RAM files) are.
    pub state_parent: PathBuf,
    pub state_tmpfs: bool,
}

impl Header {
    pub fn json(&self) -> Value {
        json!({
            "date": self.date,
            "checkout": self.checkout,
            "accel": self.accel,
            "qemu": self.qemu,
            "kernel_key": self.kernel_key,
            "cpu": self.cpu,
            "cores": self.cores,
            "host_kernel": self.host_kernel,
            "runtime": self.runtime,
            "guest_dir": self.guest_dir,
            "tcg_tb_size_mib": self.tb_size_mib,
            "load_at_start": self.load_at_start,
            "other_qemus": self.other_qemus,
            "state_roots_in": self.state_parent,
            "state_roots_on_tmpfs": self.state_tmpfs,
        })
    }
}

/// `HULL_GUEST_DIR`, else the installed guest directory (as the monitor resolves it).
pub fn guest_dir() -> PathBuf {
    std::env::var_os("HULL_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/share/hull"))
}

/// `kernel.key` of the guest directory, else the `key` of the kernel cache entry that
/// `vmlinux` links to (`scripts/build-guest.sh` links it there).
pub fn kernel_key(dir: &Path) -> String {
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    read(dir.join("kernel.key"))
        .or_else(|| {
            let real = std::fs::canonicalize(dir.join("vmlinux")).ok()?;
            read(real.parent()?.join("key"))
        })
        .unwrap_or_else(|| "?".into())
}

pub fn qemu_version(exe: &Path) -> String {
    procs::output(
        "qemu --version",
        Command::new(exe).arg("--version"),
        Duration::from_secs(20),
    )
    .ok()
    .and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .map(|l| l.trim_start_matches("QEMU emulator version ").to_string())
    })
    .unwrap_or_else(|| "?".into())
}

/// `git describe`-like revision of the checkout the harness was built from ("+dirty" if it
/// has local changes), "?" outside a git checkout.
pub fn checkout_rev(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        procs::output(
            "git",
            Command::new("git").arg("-C").arg(workspace).args(args),
            Duration::from_secs(20),
        )
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{rev}+dirty"),
            _ => rev,
        },
        None => "?".into(),
    }
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// QEMU processes running now.
pub fn qemu_processes() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&p| procs::comm(p).starts_with("qemu-system"))
                .count()
        })
        .unwrap_or(0)
}

pub fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Now as RFC 3339 UTC.
pub fn now_utc() -> String {
    hull_state::now_rfc3339()
}
