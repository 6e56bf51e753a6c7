//! The container's files as the guest sees them: two virtio-fs shares, each served by its own
//! virtiofsd because each has its own cache policy.
//!
//! * rootfs (`SHARE_TAG`): a small tmpfs on `<state>/share` in the monitor's private mount
//!   namespace, with the rootfs bind-mounted at `share/rootfs`. Cached in the guest
//!   (`--cache=always` unless the bundle asks otherwise): exec of a binary from the rootfs then
//!   costs ~4 ms instead of ~65 ms under TCG, because `auto` drops a file's pages on every open.
//! * volumes (`VOLUME_TAG`, only when the spec has bind mounts): a tmpfs on `<state>/volumes`
//!   with each bind mount's source at `volumes/<mount index>`. `--cache=auto`: files shared with
//!   the host or other containers stay coherent (close-to-open).
//!
//! The guest agent mounts them and finds everything by those paths.
//!
//! virtiofsd runs as root (it serves files of every owner with their owners and modes) under
//! its own seccomp filter (`--seccomp=kill`, its default) and `--sandbox=namespace`: it forks
//! into new mount, PID and network namespaces where the staging tree is its `/`
//! (`pivot_root`), so no path, symlink or `..` it resolves can leave it. The staging tmpfs is a
//! shared mount in the monitor's (private) namespace, and virtiofsd's copy is its slave: a pod
//! member's rootfs or volumes, attached there later, still appear in virtiofsd's tree.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

use hull_oci::{FsCache, ShareTree, VmPlan};

use crate::sys::{self, ChildGuard};
use crate::MonitorError;

/// Creates `share_dir` and mounts the staging tree of `plan`'s `tree` on it.
pub fn stage(plan: &VmPlan, tree: ShareTree, share_dir: &Path) -> Result<(), MonitorError> {
    std::fs::create_dir(share_dir)
        .map_err(MonitorError::sys(format!("mkdir {}", share_dir.display())))?;
    sys::mount_tmpfs(share_dir)?;
    // Mounts made here later (pod members) propagate to virtiofsd's namespace.
    sys::make_shared(share_dir)?;
    for s in plan.tree(tree) {
        let target = share_dir.join(&s.share_path);
        mount_point(&target, s.is_dir)?;
        sys::bind_mount(&s.host_path, &target)?;
    }
    Ok(())
}

/// Creates `target` (with its parents) to mount a directory or a file on.
pub fn mount_point(target: &Path, is_dir: bool) -> Result<(), MonitorError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(MonitorError::sys(format!("mkdir {}", parent.display())))?;
    }
    if is_dir {
        std::fs::create_dir(target)
    } else {
        std::fs::File::create(target).map(drop)
    }
    .map_err(MonitorError::sys(format!("create {}", target.display())))
}

/// One running virtiofsd and where it logs.
pub struct Virtiofsd {
    pub child: ChildGuard,
    pub log: std::path::PathBuf,
}

/// Starts virtiofsd serving `share_dir` on the already-bound `listener`.
pub fn spawn_virtiofsd(
    binary: &Path,
    share_dir: &Path,
    cache: FsCache,
    listener: &UnixListener,
    log: &Path,
) -> Result<Virtiofsd, MonitorError> {
    let fd = listener.as_raw_fd();
    let log_file = std::fs::File::create(log)
        .map_err(MonitorError::sys(format!("create {}", log.display())))?;
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--fd={fd}"))
        .arg("--shared-dir")
        .arg(share_dir)
        .arg(format!("--cache={}", cache.as_str()))
        .args([
            "--announce-submounts",
            "--inode-file-handles=never",
            "--sandbox=namespace",
            "--seccomp=kill",
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
    Ok(Virtiofsd {
        child: ChildGuard::new("virtiofsd", child),
        log: log.to_path_buf(),
    })
}
