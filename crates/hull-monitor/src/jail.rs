//! The user QEMU runs as: a dedicated system user (`hull`, created by `scripts/setup.sh`), not
//! root, when it exists.
//!
//! QEMU's own `-runas` cannot be used: it drops privileges at the end of QEMU's initialization,
//! after `-sandbox elevateprivileges=deny` is in force, so its `setuid` is a killed system call.
//! The monitor therefore starts QEMU as that user (as libvirt does): between fork and exec the
//! child takes the user's uid, gid and groups (`kvm`, for `/dev/kvm`), and QEMU never runs as
//! root at all. What QEMU opens by path (sockets it connects to, the console log, its working
//! directory) is handed to the user by [`give`] / [`let_in`]; descriptors (taps, a clone's
//! device state) are inherited.
//!
//! * One uid per VM: QEMU runs as `VM_UID_BASE` + the monitor's PID (unique among running
//!   monitors; no passwd entry needed) with the `hull` user's group and supplementary groups.
//!   QEMU stays *dumpable* (an exec that leaves it non-dumpable is a set-id exec, which also
//!   clears the PDEATHSIG that ends QEMU with its monitor), but no other VM's QEMU has its uid,
//!   so none can ptrace it or read its `/proc/<pid>/mem` (that takes `CAP_SYS_PTRACE`, which no
//!   QEMU has). `HULL_VMM_UID_BASE=0` runs every QEMU as the `hull` user's own uid instead.
//!   Guest RAM stays out of core dumps (`dump-guest-core=off`).
//! * Capabilities: none, except when QEMU serves files itself. A VM cloned from a template gets
//!   its shares as virtio-9p from QEMU's `local` backend in `passthrough` mode (files keep the
//!   guest's owners and modes), which needs the file capabilities of root: `CAP_CHOWN`,
//!   `CAP_DAC_OVERRIDE`, `CAP_FOWNER`, `CAP_FSETID`, `CAP_MKNOD` (ambient, so they survive
//!   exec). A cold-booted VM's files are served by virtiofsd (root) and its QEMU has none.
//!   Published ports of QEMU's user-mode network (slirp `hostfwd`) add
//!   `CAP_NET_BIND_SERVICE` (ports below 1024).

use std::ffi::CString;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use hull_qemu::{Netdev, QemuCommand};

use crate::{log, MonitorError};

/// The user QEMU runs as (`HULL_VMM_USER` overrides; `root` or empty: QEMU runs as root).
pub const DEFAULT_USER: &str = "hull";
pub const USER_ENV: &str = "HULL_VMM_USER";
/// How the user is created (`scripts/setup.sh` does it).
pub const USERADD: &str = "useradd --system --no-create-home --shell /usr/sbin/nologin hull";

/// QEMU's uid is this plus the monitor's PID (see the module doc): above systemd's ranges for
/// containers' users (up to 0x6fffffff) and below its foreign range (0x7ffe0000); PIDs are at
/// most 2^22. `HULL_VMM_UID_BASE` overrides it, `0` turns per-VM uids off.
pub const VM_UID_BASE: libc::uid_t = 0x7000_0000;
pub const UID_BASE_ENV: &str = "HULL_VMM_UID_BASE";

/// The unprivileged user of the VMM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmUser {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Its groups (with `kvm` when setup added it).
    pub groups: Vec<libc::gid_t>,
}

/// The VMM's user, looked up once; `None` (QEMU runs as root, with one log line saying so) when
/// it does not exist or is turned off.
pub fn vmm_user() -> Option<&'static VmmUser> {
    static USER: OnceLock<Option<VmmUser>> = OnceLock::new();
    USER.get_or_init(|| {
        let name = std::env::var(USER_ENV).unwrap_or_else(|_| DEFAULT_USER.into());
        if name.is_empty() || name == "root" {
            log::info(&format!("QEMU runs as root ({USER_ENV}={name:?})"));
            return None;
        }
        match lookup(&name) {
            Some(u) => Some(per_vm(u)),
            None => {
                log::info(&format!(
                    "QEMU runs as root: no user {name:?} on this host (create it: {USERADD}, \
                     or run scripts/setup.sh)"
                ));
                None
            }
        }
    })
    .as_ref()
}

/// `user` with this monitor's own uid for its VM (see [`VM_UID_BASE`]).
fn per_vm(mut user: VmmUser) -> VmmUser {
    let base = match std::env::var(UID_BASE_ENV) {
        Ok(v) => match v.trim().parse::<libc::uid_t>() {
            Ok(b) => b,
            Err(_) => {
                log::info(&format!(
                    "{UID_BASE_ENV}={v:?} is not a uid: using {VM_UID_BASE:#x}"
                ));
                VM_UID_BASE
            }
        },
        Err(_) => VM_UID_BASE,
    };
    if base != 0 {
        user.uid = base.saturating_add(std::process::id());
    }
    user
}

fn lookup(name: &str) -> Option<VmmUser> {
    let user = nix::unistd::User::from_name(name).ok()??;
    let cname = CString::new(name).ok()?;
    let groups = nix::unistd::getgrouplist(&cname, user.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![user.gid.as_raw()]);
    Some(VmmUser {
        name: name.into(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
    })
}

/// The capabilities QEMU of `q` needs (see the module doc).
pub fn capabilities(q: &QemuCommand) -> Vec<u32> {
    let mut caps = Vec::new();
    if !q.fsdevs.is_empty() {
        caps.extend([
            CAP_CHOWN,
            CAP_DAC_OVERRIDE,
            CAP_FOWNER,
            CAP_FSETID,
            CAP_MKNOD,
        ]);
    }
    let publishes = q
        .netdevs
        .iter()
        .any(|n| matches!(n, Netdev::User { hostfwd, .. } if !hostfwd.is_empty()));
    if publishes {
        caps.push(CAP_NET_BIND_SERVICE);
    }
    caps
}

/// Makes `path` (a socket QEMU connects to, a file it opens) the VMM user's.
pub fn give(path: &Path) -> Result<(), MonitorError> {
    let Some(u) = vmm_user() else { return Ok(()) };
    std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid)).map_err(MonitorError::sys(format!(
        "chown {} to user {}",
        path.display(),
        u.name
    )))
}

/// Lets the VMM user look up names in directory `dir` (QEMU's working directory): its group
/// becomes the user's, with search permission.
pub fn let_in(dir: &Path) -> Result<(), MonitorError> {
    use std::os::unix::fs::PermissionsExt;
    let Some(u) = vmm_user() else { return Ok(()) };
    std::os::unix::fs::chown(dir, None, Some(u.gid))
        .map_err(MonitorError::sys(format!("chgrp {}", dir.display())))?;
    let meta =
        std::fs::metadata(dir).map_err(MonitorError::sys(format!("stat {}", dir.display())))?;
    let mode = meta.permissions().mode() | 0o010;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(MonitorError::sys(format!("chmod {}", dir.display())))
}

/// Makes `cmd` (QEMU) start as `user` with `caps` (ambient). Register it before
/// `sys::kill_with_parent`: a change of credentials clears PDEATHSIG.
pub fn run_as(cmd: &mut Command, user: &VmmUser, caps: &[u32]) {
    use std::os::unix::process::CommandExt;
    let groups = user.groups.clone();
    let (uid, gid) = (user.uid, user.gid);
    let caps = caps.to_vec();
    let mask: u64 = caps.iter().fold(0, |m, c| m | (1u64 << c));
    // SAFETY: between fork and exec the closure calls only setgroups, setresgid, setresuid,
    // prctl and capset on data prepared before the fork (no allocation, no lock): all
    // async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_long| {
                if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            if !caps.is_empty() {
                check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) as _)?;
            }
            check(libc::setgroups(groups.len(), groups.as_ptr()) as _)?;
            check(libc::setresgid(gid, gid, gid) as _)?;
            check(libc::setresuid(uid, uid, uid) as _)?;
            if !caps.is_empty() {
                let header = CapHeader {
                    version: LINUX_CAPABILITY_VERSION_3,
                    pid: 0,
                };
                let half = |shift: u32| (mask >> shift) as u32;
                let data = [
                    CapData {
                        effective: half(0),
                        permitted: half(0),
                        inheritable: half(0),
                    },
                    CapData {
                        effective: half(32),
                        permitted: half(32),
                        inheritable: half(32),
                    },
                ];
                check(libc::syscall(libc::SYS_capset, &header, data.as_ptr()))?;
                for c in &caps {
                    check(libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE,
                        *c as libc::c_ulong,
                        0,
                        0,
                    ) as _)?;
                }
            }
            Ok(())
        });
    }
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
// <linux/capability.h>
pub const CAP_CHOWN: u32 = 0;
pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_FOWNER: u32 = 3;
pub const CAP_FSETID: u32 = 4;
pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_MKNOD: u32 = 27;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_field(status: &str, key: &str) -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// A child started with `run_as` has the user's ids and groups and exactly the ambient
    /// capabilities asked for.
    #[test]
    fn a_child_runs_as_the_user_with_only_the_given_capabilities() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test changes credentials: run the suite as root (scripts/test.sh under sudo)"
        );
        let user = VmmUser {
            name: "test".into(),
            uid: 54321,
            gid: 54322,
            groups: vec![54322],
        };
        let run = |program: &str, args: &[&str]| {
            let mut cmd = Command::new(program);
            cmd.args(args);
            run_as(&mut cmd, &user, &[CAP_CHOWN, CAP_DAC_OVERRIDE]);
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let status = run("cat", &["/proc/self/status"]);
        assert_eq!(status_field(&status, "Uid:"), "54321\t54321\t54321\t54321");
        assert_eq!(status_field(&status, "Gid:"), "54322\t54322\t54322\t54322");
        assert_eq!(status_field(&status, "Groups:"), "54322");
        assert_eq!(status_field(&status, "CapAmb:"), "0000000000000003");
        assert_eq!(status_field(&status, "CapEff:"), "0000000000000003");
        assert_eq!(status_field(&status, "CapPrm:"), "0000000000000003");
    }

    #[test]
    fn only_qemu_serving_files_or_publishing_ports_gets_capabilities() {
        let mut q = QemuCommand {
            binary: "qemu".into(),
            name: "t".into(),
            machine: hull_qemu::Machine::Microvm,
            accel: hull_qemu::Accel::Tcg,
            tcg_tb_size_mib: 32,
            vcpus: 1,
            memory_mib: 64,
            memory: hull_qemu::Memory::SharedMemfd,
            kernel: "k".into(),
            initrd: "i".into(),
            kernel_cmdline: String::new(),
            chardevs: Vec::new(),
            fsdevs: Vec::new(),
            netdevs: vec![Netdev::User {
                id: "n".into(),
                hostfwd: Vec::new(),
            }],
            devices: Vec::new(),
            qmp_chardev: "qmp".into(),
            incoming: false,
            sandbox: None,
        };
        assert!(capabilities(&q).is_empty());
        q.fsdevs.push(hull_qemu::Fsdev {
            id: "fs".into(),
            path: "share".into(),
        });
        assert!(capabilities(&q).contains(&CAP_DAC_OVERRIDE));
        assert!(!capabilities(&q).contains(&CAP_NET_BIND_SERVICE));
        q.netdevs = vec![Netdev::User {
            id: "n".into(),
            hostfwd: vec!["tcp:127.0.0.1:80-:80".into()],
        }];
        assert!(capabilities(&q).contains(&CAP_NET_BIND_SERVICE));
    }
}
