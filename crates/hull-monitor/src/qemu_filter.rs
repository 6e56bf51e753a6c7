//! The seccomp filter a template clone's QEMU runs under: hole punching is a no-op.
//!
//! A clone maps its template's memory file private (copy-on-write). When the guest gives pages
//! back (balloon inflation, free page reporting), QEMU 7.2's `ram_block_discard_range` first
//! punches a hole into the RAM block's file (`fallocate(PUNCH_HOLE)`), even for a private
//! mapping, and then drops the pages (`madvise(DONTNEED)`). The hole would zero those pages in
//! the template that every clone maps; the `madvise` alone is what a private mapping needs:
//! the clone's copies are freed and the range falls back to the template's (shared) pages.
//!
//! So the clone's QEMU gets a filter under which `fallocate` with `FALLOC_FL_PUNCH_HOLE`
//! returns 0 without running; everything else is allowed. Nothing else in a clone's QEMU
//! punches holes: its devices are virtio-serial, 9p (no fallocate in 9P2000.L), virtio-net and
//! the balloon, and it has no block device. (QEMU 8.2 stopped punching holes into private
//! file mappings; with it this filter changes nothing.)

use std::collections::BTreeMap;
use std::process::Command;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::MonitorError;

/// The BPF program: `fallocate(_, mode & PUNCH_HOLE, ...)` → 0, the rest → allowed.
fn punch_hole_is_a_noop() -> Result<BpfProgram, MonitorError> {
    let err = |e: seccompiler::BackendError| MonitorError::Sys {
        what: "build the seccomp filter for a template clone's QEMU".into(),
        source: std::io::Error::other(e.to_string()),
    };
    let punch = libc::FALLOC_FL_PUNCH_HOLE as u64;
    let mode_punches = SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(punch),
        punch,
    )
    .map_err(err)?;
    let rules = BTreeMap::from([(
        libc::SYS_fallocate,
        vec![SeccompRule::new(vec![mode_punches]).map_err(err)?],
    )]);
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(err)?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(0), arch)
        .map_err(err)?;
    BpfProgram::try_from(filter).map_err(|e| MonitorError::Sys {
        what: "compile the seccomp filter for a template clone's QEMU".into(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Makes `cmd` (a clone's QEMU) run under [`punch_hole_is_a_noop`].
pub fn keep_template_file(cmd: &mut Command) -> Result<(), MonitorError> {
    use std::os::unix::process::CommandExt;
    let program = punch_hole_is_a_noop()?;
    // SAFETY: the closure runs in the child between fork and exec. `apply_filter` only calls
    // prctl(PR_SET_NO_NEW_PRIVS) and seccomp(2) on the program built above in the parent (no
    // allocation, no lock), both async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            seccompiler::apply_filter(&program).map_err(|e| std::io::Error::other(e.to_string()))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs util-linux's fallocate(1) on `path`: punch the first page, then extend by a page.
    fn punch_then_extend(path: &std::path::Path, filtered: bool) -> Vec<u8> {
        std::fs::write(path, vec![0xa5u8; 8192]).unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(r#"fallocate --punch-hole --offset 0 --length 4096 "$0" && fallocate --length 12288 "$0""#)
            .arg(path);
        if filtered {
            keep_template_file(&mut cmd).unwrap();
        }
        assert!(cmd.status().unwrap().success());
        std::fs::read(path).unwrap()
    }

    #[test]
    fn under_the_filter_a_punched_file_keeps_its_data_and_plain_fallocate_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let plain = punch_then_extend(&path, false);
        assert!(
            plain[..4096].iter().all(|b| *b == 0),
            "punching works unfiltered"
        );
        let filtered = punch_then_extend(&path, true);
        assert_eq!(filtered.len(), 12288, "the plain fallocate ran");
        assert!(
            filtered[..8192].iter().all(|b| *b == 0xa5),
            "a hole was punched"
        );
    }
}
