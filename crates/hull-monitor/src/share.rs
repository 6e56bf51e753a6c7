//! The container's files as the guest sees them: one virtio-fs share.
//!
//! In the monitor's private mount namespace a small tmpfs is mounted on `<state>/share`, the
//! rootfs is bind-mounted at `share/rootfs` and each bind mount of the spec at `share/m/<index>`.
//! virtiofsd serves that tree; the guest agent mounts it and finds everything by those paths.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

use hull_oci::VmPlan;

use crate::sys::{self, ChildGuard};
use crate::MonitorError;

/// Mounts the staging tree for `plan` on `share_dir` (which must exist).
pub fn stage(plan: &VmPlan, share_dir: &Path) -> Result<(), MonitorError> {
    sys::mount_tmpfs(share_dir)?;
    for s in &plan.shares {
        let target = share_dir.join(&s.share_path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(MonitorError::sys(format!("mkdir {}", parent.display())))?;
        }
        if s.is_dir {
            std::fs::create_dir(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        }
        .map_err(MonitorError::sys(format!("create {}", target.display())))?;
        sys::bind_mount(&s.host_path, &target)?;
    }
    Ok(())
}

/// Starts virtiofsd serving `share_dir` on the already-bound `listener`.
pub fn spawn_virtiofsd(
    binary: &Path,
    share_dir: &Path,
    listener: &UnixListener,
    log: &Path,
) -> Result<ChildGuard, MonitorError> {
    let fd = listener.as_raw_fd();
    let log_file = std::fs::File::create(log)
        .map_err(MonitorError::sys(format!("create {}", log.display())))?;
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--fd={fd}"))
        .arg("--shared-dir")
        .arg(share_dir)
        .args([
            "--cache=auto",
            "--announce-submounts",
            "--inode-file-handles=never",
            "--sandbox=chroot",
        ])
        .args(["--log-level=error", "--thread-pool-size=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    sys::inherit_fd(&mut cmd, fd);
    sys::kill_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(MonitorError::sys(format!("start {}", binary.display())))?;
    Ok(ChildGuard::new("virtiofsd", child))
}
