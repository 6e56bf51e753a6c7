//! User and time namespaces of the container: `linux.uidMappings`/`gidMappings` and
//! `linux.timeOffsets`, checked before fork, applied in the forked child.
//!
//! User namespace, as runc does it: the child unshares the user namespace first (the other
//! namespaces it creates are then owned by it), and a helper process forked just before, still
//! in the parent namespace with CAP_SETUID there, writes the maps (the unsharing process itself
//! could only map its own ID). Then the child becomes the namespace's root, so files it creates
//! while setting up the root belong to the mapped root, and rlimits were set before (raising a
//! hard limit needs CAP_SYS_RESOURCE in the initial namespace).
//!
//! Time namespace: unshare(CLONE_NEWTIME) affects the children only; the offsets are written
//! to `/proc/self/timens_offsets` before any process enters it, then the child forks.

use std::os::fd::AsFd;

use nix::fcntl::OFlag;
use nix::unistd::{ForkResult, Gid, Uid};
use oci_spec::runtime::{LinuxIdMapping, Spec};

use crate::error::{Context, Error, Result};
use crate::sys;

/// The maps of a new user namespace, as written to `/proc/PID/{uid,gid}_map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid_map: String,
    pub gid_map: String,
    /// Whether the namespace's root (uid and gid 0) is mapped.
    root_mapped: bool,
}

/// One map's text, checked: at most 340 lines (the kernel's limit), no empty ranges, no
/// overlapping container ranges.
fn map_text(field: &str, maps: &[LinuxIdMapping]) -> Result<String> {
    if maps.is_empty() {
        return Err(Error::spec(
            field,
            "a new user namespace needs at least one mapping",
        ));
    }
    if maps.len() > 340 {
        return Err(Error::spec(
            field,
            format!("{} mappings; the kernel takes at most 340", maps.len()),
        ));
    }
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut text = String::new();
    for (i, m) in maps.iter().enumerate() {
        let (c, h, n) = (m.container_id(), m.host_id(), m.size());
        let end = |start: u32| u64::from(start) + u64::from(n);
        if n == 0 || end(c) > 1 << 32 || end(h) > 1 << 32 {
            return Err(Error::spec(
                format!("{field}[{i}]"),
                format!("containerID {c}, hostID {h}, size {n}: an empty or overflowing range"),
            ));
        }
        if ranges.iter().any(|(s, e)| u64::from(c) < *e && end(c) > *s) {
            return Err(Error::spec(
                format!("{field}[{i}]"),
                format!("containerID {c}, size {n} overlaps an earlier mapping"),
            ));
        }
        ranges.push((c.into(), end(c)));
        text.push_str(&format!("{c} {h} {n}\n"));
    }
    Ok(text)
}

impl IdMaps {
    /// The maps of the spec, or `None` without a new user namespace (`new_userns`). Mappings
    /// without a user namespace are refused rather than ignored.
    pub fn new(spec: &Spec, new_userns: bool) -> Result<Option<Self>> {
        let linux = spec.linux().as_ref();
        let uids = linux.and_then(|l| l.uid_mappings().as_deref());
        let gids = linux.and_then(|l| l.gid_mappings().as_deref());
        if !new_userns {
            if uids.is_some_and(|m| !m.is_empty()) || gids.is_some_and(|m| !m.is_empty()) {
                return Err(Error::spec(
                    "linux.uidMappings",
                    "mappings given, but linux.namespaces has no new user namespace",
                ));
            }
            return Ok(None);
        }
        let uid_map = map_text("linux.uidMappings", uids.unwrap_or_default())?;
        let gid_map = map_text("linux.gidMappings", gids.unwrap_or_default())?;
        let maps_root = |m: Option<&[LinuxIdMapping]>| {
            m.unwrap_or_default().iter().any(|m| m.container_id() == 0)
        };
        Ok(Some(Self {
            uid_map,
            gid_map,
            root_mapped: maps_root(uids) && maps_root(gids),
        }))
    }

    /// In the forked child: unshares a user namespace and has the helper map it; then becomes
    /// its root when that is mapped.
    pub fn enter_new(&self) -> Result<()> {
        let me = nix::unistd::getpid();
        let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;
        let (err_r, err_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;
        // SAFETY: the caller is a single-threaded fork child, so fork has no caveats; the helper
        // only makes system calls and ends with _exit.
        let helper = match unsafe { nix::unistd::fork() }.ctx(|| "fork".into())? {
            ForkResult::Child => {
                drop((go_w, err_r));
                let mut byte = [0u8; 1];
                if !matches!(nix::unistd::read(go_r.as_fd(), &mut byte), Ok(1)) {
                    sys::exit_now(2); // the child could not unshare: nothing to map
                }
                let mut failed = None;
                for (file, text) in [("uid_map", &self.uid_map), ("gid_map", &self.gid_map)] {
                    let path = format!("/proc/{me}/{file}");
                    if let Err(e) = std::fs::write(&path, text) {
                        failed = Some(format!("writing {path} ({:?}): {e}", text.trim_end()));
                        break;
                    }
                }
                if let Some(msg) = failed {
                    let _ = nix::unistd::write(&err_w, msg.as_bytes());
                    sys::exit_now(1);
                }
                sys::exit_now(0)
            }
            ForkResult::Parent { child } => child,
        };
        drop((go_r, err_w));
        let unshared = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
            .ctx(|| "creating the user namespace".into());
        if unshared.is_ok() {
            let _ = nix::unistd::write(&go_w, b"u");
        }
        drop(go_w);
        let status = loop {
            match nix::sys::wait::waitpid(helper, None) {
                Err(nix::errno::Errno::EINTR) => {}
                other => break other,
            }
        };
        unshared?;
        let mut msg = [0u8; 512];
        let n = nix::unistd::read(err_r.as_fd(), &mut msg).unwrap_or(0);
        match status {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => {}
            other => {
                let why = String::from_utf8_lossy(&msg[..n]).into_owned();
                return Err(Error::msg(format!(
                    "mapping the user namespace failed: {}",
                    if why.is_empty() {
                        format!("{other:?}")
                    } else {
                        why
                    }
                )));
            }
        }
        self.become_root()
    }

    /// Becomes the namespace's root (IDs 0), when it is mapped: files created while setting up
    /// the root then belong to it, not to the overflow ID.
    pub fn become_root(&self) -> Result<()> {
        if self.root_mapped {
            become_root()?;
        }
        Ok(())
    }
}

/// setresgid/setresuid to 0 in the current user namespace.
pub fn become_root() -> Result<()> {
    let (g, u) = (Gid::from_raw(0), Uid::from_raw(0));
    nix::unistd::setresgid(g, g, g).ctx(|| "becoming the user namespace's root (gid)".into())?;
    nix::unistd::setresuid(u, u, u).ctx(|| "becoming the user namespace's root (uid)".into())
}

/// `linux.timeOffsets` as the text of `/proc/PID/timens_offsets` (`None` without a new time
/// namespace; offsets without one are refused rather than ignored).
pub fn time_offsets(spec: &Spec, new_timens: bool) -> Result<Option<String>> {
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref());
    if !new_timens {
        if offsets.is_some_and(|o| !o.is_empty()) {
            return Err(Error::spec(
                "linux.timeOffsets",
                "offsets given, but linux.namespaces has no new time namespace",
            ));
        }
        return Ok(None);
    }
    let mut text = String::new();
    let mut clocks: Vec<_> = offsets.into_iter().flatten().collect();
    clocks.sort_by(|a, b| a.0.cmp(b.0));
    for (clock, o) in clocks {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::spec(
                format!("linux.timeOffsets.{clock}"),
                "only monotonic and boottime clocks have offsets",
            ));
        }
        let nanos = o.nanosecs().unwrap_or(0);
        if nanos >= 1_000_000_000 {
            return Err(Error::spec(
                format!("linux.timeOffsets.{clock}.nanosecs"),
                format!("{nanos} is not below 1000000000"),
            ));
        }
        text.push_str(&format!("{clock} {} {nanos}\n", o.secs().unwrap_or(0)));
    }
    Ok(Some(text))
}

/// After unshare(CLONE_NEWTIME), before the first process enters it: its clock offsets.
pub fn write_time_offsets(text: &str) -> Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    std::fs::write("/proc/self/timens_offsets", text)
        .ctx(|| format!("linux.timeOffsets: writing {:?}", text.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(linux: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0", "root": {"path": "rootfs"}, "linux": linux
        }))
        .unwrap()
    }

    #[test]
    fn maps_are_checked_and_written_one_range_a_line() {
        let s = spec(serde_json::json!({
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 1000},
                            {"containerID": 1000, "hostID": 5000, "size": 1}]
        }));
        let m = IdMaps::new(&s, true).unwrap().unwrap();
        assert_eq!(m.uid_map, "0 100000 65536\n");
        assert_eq!(m.gid_map, "0 100000 1000\n1000 5000 1\n");
        assert!(m.root_mapped);
        // Given without a user namespace: refused.
        let e = IdMaps::new(&s, false).unwrap_err().to_string();
        assert!(e.starts_with("linux.uidMappings"), "{e}");
        // A user namespace without maps, overlapping or empty ranges.
        let e = IdMaps::new(&spec(serde_json::json!({})), true).unwrap_err();
        assert!(e.to_string().starts_with("linux.uidMappings"), "{e}");
        let bad = spec(serde_json::json!({
            "uidMappings": [{"containerID": 0, "hostID": 1, "size": 10},
                            {"containerID": 5, "hostID": 100, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]
        }));
        let e = IdMaps::new(&bad, true).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.uidMappings[1]") && e.contains("overlaps"),
            "{e}"
        );
        let bad = spec(serde_json::json!({
            "uidMappings": [{"containerID": 0, "hostID": 1, "size": 0}],
            "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]
        }));
        assert!(IdMaps::new(&bad, true).is_err());
        assert!(IdMaps::new(&spec(serde_json::json!({})), false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn time_offsets_text_and_checks() {
        let s = spec(serde_json::json!({"timeOffsets": {
            "monotonic": {"secs": 3600, "nanosecs": 5},
            "boottime": {"secs": 31536000}
        }}));
        assert_eq!(
            time_offsets(&s, true).unwrap().unwrap(),
            "boottime 31536000 0\nmonotonic 3600 5\n"
        );
        let e = time_offsets(&s, false).unwrap_err().to_string();
        assert!(e.starts_with("linux.timeOffsets"), "{e}");
        let s = spec(serde_json::json!({"timeOffsets": {"realtime": {"secs": 1}}}));
        let e = time_offsets(&s, true).unwrap_err().to_string();
        assert!(e.starts_with("linux.timeOffsets.realtime"), "{e}");
    }
}
