//! The host cgroup an engine names for a container (`linux.cgroupsPath`).
//!
//! runc puts the container's processes there; engines read it for `podman stats`,
//! `docker stats`, `ctr task metrics` (the cgroup of the PID in the pid file). In hull the
//! container's host processes are the monitor and the VM it owns (QEMU, virtiofsd, passt), so
//! the monitor moves itself into that cgroup before it starts anything and its children are
//! born there: engines then see what the VM costs the host (QEMU's memory and CPU time). What
//! the guest itself uses is the management API's metrics and `hull-runtime events --stats`.
//!
//! Limits that hold the whole VM ([`HostLimits`]), when the spec has them: memory = the VM's
//! largest guest RAM (what `linux.resources.memory.limit` sized it to, or the management API's
//! maximum) plus [`VM_OVERHEAD_MIB`] for QEMU, virtiofsd and the files they read; CPU = the
//! spec's quota and period (the VM's vCPUs were sized from them). The guest's own cgroup
//! enforces the container's limits exactly; the host's only stops a runaway VM. `delete`
//! removes the cgroup (the leaf, as runc does) once the monitor is gone.
//!
//! Paths: cgroupfs form (`/libpod_parent/libpod-ID`, `/docker/ID`; a relative path is taken
//! from the hierarchy's root) and systemd form `slice:prefix:name` (podman `--cgroup-manager
//! systemd`, kubelet), expanded as runc's systemd driver names it
//! (`machine.slice/libpod-ID.scope`) and created directly in the hierarchies.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// What went wrong with a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("linux.cgroupsPath {path:?}: {problem}")]
    BadPath { path: String, problem: &'static str },
    #[error("{what} {}: {source}", dir.display())]
    Io {
        what: &'static str,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The cgroup (relative to each hierarchy's root) for a `linux.cgroupsPath`; `None` for none.
pub fn relative_path(cgroups_path: &str) -> Result<Option<PathBuf>, CgroupError> {
    let bad = |problem| CgroupError::BadPath {
        path: cgroups_path.to_owned(),
        problem,
    };
    if cgroups_path.is_empty() {
        return Ok(None);
    }
    let rel = match systemd_form(cgroups_path) {
        Some((slice, prefix, name)) => {
            if name.is_empty() || name.contains('/') || prefix.contains('/') {
                return Err(bad("a systemd path is slice:prefix:name, without '/'"));
            }
            let unit = match prefix {
                "" => format!("{name}.scope"),
                p => format!("{p}-{name}.scope"),
            };
            expand_slice(slice)
                .ok_or_else(|| bad("not a valid systemd slice"))?
                .join(unit)
        }
        None => PathBuf::from(cgroups_path.trim_start_matches('/')),
    };
    if rel.as_os_str().is_empty() {
        return Err(bad("names the root cgroup"));
    }
    let dots = cgroups_path
        .split(['/', ':'])
        .any(|s| s == "." || s == "..");
    if dots || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad("has '.' or '..' components"));
    }
    Ok(Some(rel))
}

/// The cgroup a bundle names (`linux.cgroupsPath`), see [`relative_path`].
pub fn of_bundle(b: &hull_oci::Bundle) -> Result<Option<PathBuf>, CgroupError> {
    match b
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
    {
        Some(p) => relative_path(&p.to_string_lossy()),
        None => Ok(None),
    }
}

/// `slice:prefix:name` (not a path: no leading '/', exactly two ':').
fn systemd_form(p: &str) -> Option<(&str, &str, &str)> {
    if p.starts_with('/') {
        return None;
    }
    let mut parts = p.split(':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some((slice, prefix, name))
}

/// systemd's slice nesting: `a-b-c.slice` lives in `a.slice/a-b.slice/a-b-c.slice`; an empty
/// slice is `system.slice`, `-.slice` the root.
fn expand_slice(slice: &str) -> Option<PathBuf> {
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    if slice == "-.slice" {
        return Some(PathBuf::new());
    }
    let stem = slice.strip_suffix(".slice")?;
    if stem.is_empty() || stem.contains('/') || stem.starts_with('-') || stem.ends_with('-') {
        return None;
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return None;
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Some(path)
}

/// The mount points of the host's cgroup hierarchies (v1 controllers, v2 unified).
fn hierarchies() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let mount_point = left.split_whitespace().nth(4)?;
            Some(PathBuf::from(mount_point.replace("\\040", " ")))
        })
        .collect()
}

fn io(what: &'static str, dir: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let dir = dir.to_path_buf();
    move |source| CgroupError::Io { what, dir, source }
}

/// Creates `rel` in `hierarchy`, level by level; a cpuset (v1) level that is new gets its
/// parent's CPUs and memory nodes (an empty cpuset accepts no process).
fn create(hierarchy: &Path, rel: &Path) -> Result<PathBuf, CgroupError> {
    let mut dir = hierarchy.to_path_buf();
    for part in rel.components() {
        let parent = dir.clone();
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => inherit_cpuset(&parent, &dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create the cgroup", &dir)(e)),
        }
    }
    Ok(dir)
}

fn inherit_cpuset(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let Ok(current) = std::fs::read_to_string(&own) else {
            continue; // not the v1 cpuset hierarchy
        };
        if current.trim().is_empty() {
            let value = std::fs::read_to_string(parent.join(file))
                .map_err(io("read the parent's cpuset", parent))?;
            std::fs::write(&own, value.trim()).map_err(io("set the cpuset of", dir))?;
        }
    }
    Ok(())
}

/// What a VM costs the host beyond its guest RAM, for the host memory limit. Measured with a
/// cgroupsPath bundle under TCG (`memory.max_usage_in_bytes` of the cgroup of a busybox VM with
/// 128 MiB RAM streaming 50 MB through a pipe): 98 MiB in all, of which ~30 MiB guest RAM
/// (shmem) and ~60 MiB QEMU (TCG code buffer, heap) + virtiofsd; KVM needs less (no TCG
/// buffer). 160 MiB leaves room for a guest that touches all its RAM and for page cache.
pub const VM_OVERHEAD_MIB: u64 = 160;

/// Host limits of the VM's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostLimits {
    /// memory.max (v2) / memory.limit_in_bytes (v1), bytes.
    pub memory_bytes: Option<u64>,
    /// CPU quota (µs, -1: none) and period (µs): cpu.max (v2) / cpu.cfs_quota_us (v1).
    pub cpu: Option<(i64, u64)>,
}

impl HostLimits {
    /// The limits for a VM of `guest_mib` (its largest RAM) running a container with
    /// `resources`: none unless the spec limits memory or CPU.
    pub fn for_vm(resources: Option<&oci_spec::runtime::LinuxResources>, guest_mib: u64) -> Self {
        let memory_limited = resources
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .is_some_and(|l| l > 0);
        let cpu = resources.and_then(|r| r.cpu().as_ref());
        let quota = cpu.and_then(|c| c.quota()).filter(|q| *q > 0);
        Self {
            memory_bytes: memory_limited.then(|| (guest_mib + VM_OVERHEAD_MIB) << 20),
            cpu: quota.map(|q| (q, cpu.and_then(|c| c.period()).unwrap_or(100_000))),
        }
    }

    /// What `hull-runtime update` changes on the host: the CPU quota (-1: none); the memory
    /// limit already holds the VM's largest size.
    pub fn for_update(resources: &oci_spec::runtime::LinuxResources) -> Self {
        let cpu = resources.cpu().as_ref();
        let quota = cpu.and_then(|c| c.quota()).filter(|q| *q > 0 || *q == -1);
        Self {
            memory_bytes: None,
            cpu: quota.map(|q| (q, cpu.and_then(|c| c.period()).unwrap_or(100_000))),
        }
    }

    /// The files and values to write in a cgroup directory `dir` of one hierarchy: only those
    /// of controllers the hierarchy has there.
    fn writes(&self, dir: &Path) -> Vec<(PathBuf, String)> {
        let has = |f: &str| dir.join(f).exists();
        let mut w = Vec::new();
        if let Some(bytes) = self.memory_bytes {
            if has("memory.max") {
                w.push((dir.join("memory.max"), bytes.to_string()));
            } else if has("memory.limit_in_bytes") {
                w.push((dir.join("memory.limit_in_bytes"), bytes.to_string()));
            }
        }
        if let Some((quota, period)) = self.cpu {
            if has("cpu.max") {
                let q = if quota < 0 {
                    "max".into()
                } else {
                    quota.to_string()
                };
                w.push((dir.join("cpu.max"), format!("{q} {period}")));
            } else if has("cpu.cfs_quota_us") {
                w.push((dir.join("cpu.cfs_period_us"), period.to_string()));
                w.push((dir.join("cpu.cfs_quota_us"), quota.to_string()));
            }
        }
        w
    }
}

/// Writes `limits` into `rel` in every hierarchy that has the controller.
pub fn set_limits(rel: &Path, limits: &HostLimits) -> Result<(), CgroupError> {
    hierarchies()
        .into_iter()
        .try_for_each(|h| write_limits(&h.join(rel), limits))
}

/// Writes `limits` into the cgroup directory `dir` of one hierarchy.
fn write_limits(dir: &Path, limits: &HostLimits) -> Result<(), CgroupError> {
    for (file, value) in limits.writes(dir) {
        std::fs::write(&file, &value).map_err(io("write the limit", &file))?;
    }
    Ok(())
}

/// The monitor's membership of the container's cgroup: when dropped (the monitor is about to
/// exit, its children are gone) it moves the monitor back to each hierarchy's root and removes
/// the cgroup, so a container that ends, or fails to start, leaves none behind.
#[derive(Debug)]
pub struct Membership {
    rel: PathBuf,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let pid = std::process::id().to_string();
        for h in hierarchies() {
            let _ = std::fs::write(h.join("cgroup.procs"), &pid);
        }
        if let Err(e) = remove(&self.rel, Duration::from_secs(5)) {
            crate::log::info(&format!("leaving the container's cgroup: {e}"));
        }
    }
}

/// Moves the calling process into `rel` in every hierarchy (creating it, `limits` written
/// first). Children started afterwards are born there. On failure, what was created is
/// removed again.
pub fn join(rel: &Path, limits: &HostLimits) -> Result<Membership, CgroupError> {
    let membership = Membership {
        rel: rel.to_path_buf(),
    };
    let pid = std::process::id().to_string();
    for h in hierarchies() {
        let dir = create(&h, rel)?;
        write_limits(&dir, limits)?;
        std::fs::write(dir.join("cgroup.procs"), &pid).map_err(io("join the cgroup", &dir))?;
    }
    Ok(membership)
}

/// Removes `rel`'s leaf from every hierarchy; waits up to `timeout` for exiting processes to
/// leave it. A cgroup that is not there is fine.
pub fn remove(rel: &Path, timeout: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + timeout;
    for h in hierarchies() {
        let dir = h.join(rel);
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(io("remove the cgroup", &dir)(e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: &str) -> PathBuf {
        relative_path(p).unwrap().unwrap()
    }

    #[test]
    fn cgroupfs_paths_are_taken_from_the_root() {
        assert_eq!(relative_path("").unwrap(), None);
        assert_eq!(
            rel("/libpod_parent/libpod-abc"),
            Path::new("libpod_parent/libpod-abc")
        );
        assert_eq!(rel("/docker/abc"), Path::new("docker/abc"));
        assert_eq!(rel("default/abc"), Path::new("default/abc"));
    }

    #[test]
    fn systemd_paths_expand_like_runc() {
        assert_eq!(
            rel("machine.slice:libpod:abc"),
            Path::new("machine.slice/libpod-abc.scope")
        );
        assert_eq!(
            rel("kubepods-besteffort-pod1.slice:cri-containerd:abc"),
            Path::new(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"
            )
        );
        assert_eq!(rel(":hull:abc"), Path::new("system.slice/hull-abc.scope"));
        assert_eq!(rel("-.slice::abc"), Path::new("abc.scope"));
    }

    #[test]
    fn bad_paths_name_the_value() {
        for p in [
            "/",
            "/a/../b",
            "a/./b",
            "bad:libpod:abc",
            "a-.slice:p:n",
            "x.slice:p:",
        ] {
            let e = relative_path(p).unwrap_err().to_string();
            assert!(e.contains(&format!("{p:?}")), "{p}: {e}");
        }
    }

    #[test]
    fn host_limits_hold_the_vm_and_go_to_the_controllers_files() {
        let r: oci_spec::runtime::LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":67108864},"cpu":{"quota":150000,"period":100000}}"#,
        )
        .unwrap();
        let l = HostLimits::for_vm(Some(&r), 128);
        assert_eq!(l.memory_bytes, Some((128 + VM_OVERHEAD_MIB) << 20));
        assert_eq!(l.cpu, Some((150000, 100000)));
        assert_eq!(HostLimits::for_vm(None, 128), HostLimits::default());
        let none: oci_spec::runtime::LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":0},"cpu":{"shares":1024}}"#).unwrap();
        assert_eq!(HostLimits::for_vm(Some(&none), 128), HostLimits::default());

        let dir = std::env::temp_dir().join(format!("hull-cg-limits-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (v1, v2) = (dir.join("v1"), dir.join("v2"));
        for (d, files) in [
            (
                &v1,
                &[
                    "memory.limit_in_bytes",
                    "cpu.cfs_quota_us",
                    "cpu.cfs_period_us",
                ][..],
            ),
            (&v2, &["memory.max", "cpu.max"][..]),
        ] {
            std::fs::create_dir_all(d).unwrap();
            for f in files {
                std::fs::write(d.join(f), "").unwrap();
            }
        }
        let names = |d: &Path| -> Vec<(String, String)> {
            l.writes(d)
                .into_iter()
                .map(|(f, v)| (f.file_name().unwrap().to_string_lossy().into_owned(), v))
                .collect()
        };
        let mem = ((128 + VM_OVERHEAD_MIB) << 20).to_string();
        assert_eq!(
            names(&v1),
            [
                ("memory.limit_in_bytes".into(), mem.clone()),
                ("cpu.cfs_period_us".into(), "100000".into()),
                ("cpu.cfs_quota_us".into(), "150000".into())
            ]
        );
        assert_eq!(
            names(&v2),
            [
                ("memory.max".into(), mem),
                ("cpu.max".into(), "150000 100000".into())
            ]
        );
        assert!(names(&dir.join("none")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_hosts_hierarchies_are_found() {
        // Every Linux host with cgroups mounted (all the hosts hull runs on) lists some.
        assert!(!hierarchies().is_empty());
    }
}
