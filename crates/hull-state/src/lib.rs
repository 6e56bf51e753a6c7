//! A container's state directory: the one place where the runtime CLI and the container's
//! monitor meet. Layout of `<root>/<id>/`:
//!
//! | file | written by | what |
//! |---|---|---|
//! | `state.json` | monitor (atomically: tmp + rename) | [`ContainerState`] |
//! | `lock` | any command | `flock` serialising commands on this container |
//! | `ctl.sock` | monitor | control socket for start/kill/exec/pause/... |
//! | `agent.sock`, `qmp.sock`, `vfs.sock` | monitor | QEMU's agent channel, QMP, virtiofsd |
//! | `console.log` | QEMU | the guest kernel console (never mixed with container output) |
//! | `qemu.log`, `virtiofsd.log` | QEMU, virtiofsd | their own stderr |
//! | `timings.json` | monitor | phase timestamps of the start (see the benchmark) |

// No panics on any input path: errors are returned (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Default state root (runc's is /run/runc).
pub const DEFAULT_ROOT: &str = "/run/hull";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.'")]
    InvalidId(String),
    #[error("container with id {0:?} already exists")]
    Exists(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt state: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lifecycle status as the OCI runtime-spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

/// What `state.json` holds: the OCI state plus hull's own fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub status: Status,
    /// Host PID that stands for the container process (the monitor), 0 once stopped.
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The monitor process (also while stopped, until it exits).
    pub monitor_pid: i32,
    /// Exit status of the container process once stopped (128+N for signal N).
    #[serde(default)]
    pub exit_status: Option<i32>,
    /// Accelerator the VM runs on.
    pub accel: String,
    /// Whether the VM's vCPUs are paused (OCI has no "paused" status; runc shows it in list).
    #[serde(default)]
    pub paused: bool,
    /// The network namespace the spec joined (an engine's), where the VM's taps and tc
    /// redirects live: `delete` cleans them up there if the monitor could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// The interfaces of that namespace wired into the VM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net_interfaces: Vec<String>,
    /// The host cgroup the VM's processes run in (`linux.cgroupsPath`, relative to each
    /// hierarchy's root): `delete` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// For a pod member: the id of the container whose VM it runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

impl ContainerState {
    /// The OCI state document (what `state` prints and hooks read on stdin).
    pub fn oci(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.id,
            "status": self.status,
            "pid": self.pid,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        });
        // runc reports a frozen container as "paused" (engines map it: podman, go-runc).
        if self.paused && self.status == Status::Running {
            v["status"] = "paused".into();
        }
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::json!(self.annotations);
        }
        v
    }
}

/// The state directory of one container.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub id: String,
    pub dir: PathBuf,
}

/// Checks a container id like runc does.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

impl StateDir {
    pub fn new(root: &Path, id: &str) -> Result<Self, StateError> {
        validate_id(id)?;
        Ok(Self {
            id: id.to_string(),
            dir: root.join(id),
        })
    }

    /// Creates the directory; fails if the container exists.
    pub fn create(&self) -> Result<(), StateError> {
        if let Some(root) = self.dir.parent() {
            fs::create_dir_all(root).map_err(io_err(root))?;
        }
        match fs::create_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StateError::Exists(self.id.clone()))
            }
            Err(e) => Err(io_err(&self.dir)(e)),
        }
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn state_json(&self) -> PathBuf {
        self.path("state.json")
    }
    pub fn console_log(&self) -> PathBuf {
        self.path("console.log")
    }
    pub fn share_dir(&self) -> PathBuf {
        self.path("share")
    }

    /// A short path to `name` in this directory, for unix sockets: `sun_path` holds only 107
    /// bytes, and engines' state roots plus 64-character ids exceed it. The path goes through
    /// `/proc/self/fd/N` of an open handle on the directory; keep the value alive while using it.
    pub fn short(&self, name: &str) -> Result<ShortPath, StateError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.dir)
            .map_err(io_err(&self.dir))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()));
        Ok(ShortPath { _dir: dir, path })
    }

    /// Reads `state.json`. A missing directory or file means the container does not exist.
    pub fn load(&self) -> Result<ContainerState, StateError> {
        let p = self.state_json();
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(self.id.clone()))
            }
            Err(e) => return Err(io_err(&p)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path: p, source })
    }

    /// Writes `state.json` atomically (readers see the old or the new file, never a mix).
    pub fn save(&self, st: &ContainerState) -> Result<(), StateError> {
        let p = self.state_json();
        let tmp = self.path(".state.json.tmp");
        let bytes = serde_json::to_vec(st).map_err(|e| io_err(&tmp)(e.into()))?;
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &p).map_err(io_err(&p))
    }

    /// Removes the whole directory (a missing one is fine).
    ///
    /// Never descends into another filesystem: the monitor's staging tree (`share/`) holds bind
    /// mounts of the container's rootfs and volumes, which must never be deleted. A mount point
    /// found inside is detached first, and left alone if that fails.
    pub fn remove(&self) -> Result<(), StateError> {
        use std::os::unix::fs::MetadataExt;
        let dev = match fs::symlink_metadata(&self.dir) {
            Ok(m) => m.dev(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        remove_tree_on_dev(&self.dir, dev);
        match fs::remove_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&self.dir)(e)),
        }
    }

    /// [`remove`](Self::remove) for an abort that races the rest of its process: another thread
    /// (or a child) may still be creating files or mounts in the directory, so it is removed
    /// again until it stays gone (checked once more after a short pause) or `within` passes.
    pub fn remove_settled(&self, within: Duration) -> Result<(), StateError> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.remove();
            if !self.dir.exists() {
                std::thread::sleep(Duration::from_millis(5));
                if !self.dir.exists() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Takes the per-container lock (blocking), released when the guard drops.
    pub fn lock(&self) -> Result<LockGuard, StateError> {
        let p = self.path("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            return Err(io_err(&p)(std::io::Error::last_os_error()));
        }
        Ok(LockGuard { _file: f })
    }
}

/// Removes the contents of `dir` that live on device `dev`; detaches mount points on the way.
fn remove_tree_on_dev(dir: &Path, dev: u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if m.dev() != dev {
                detach_mount(&p);
                match fs::symlink_metadata(&p) {
                    Ok(m2) if m2.dev() == dev => {}
                    _ => continue, // still a mount point: leave it alone
                }
            }
            remove_tree_on_dev(&p, dev);
            let _ = fs::remove_dir(&p);
        } else {
            // A file bind-mounted here has the source's device: detach rather than delete.
            if m.dev() != dev {
                detach_mount(&p);
                if fs::symlink_metadata(&p)
                    .map(|m2| m2.dev() != dev)
                    .unwrap_or(true)
                {
                    continue;
                }
            }
            let _ = fs::remove_file(&p);
        }
    }
}

fn detach_mount(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: umount2 with a valid NUL-terminated path; failure is harmless.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// A short path into a state directory (see [`StateDir::short`]).
pub struct ShortPath {
    _dir: fs::File,
    pub path: PathBuf,
}

impl AsRef<Path> for ShortPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// Holds a container's lock; dropping the file releases it.
pub struct LockGuard {
    _file: fs::File,
}

/// True if `pid` is a live process (not a zombie).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Lists container ids under `root`.
pub fn list(root: &Path) -> Result<Vec<String>, StateError> {
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(root)(e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Current time as RFC 3339 UTC with nanoseconds (as runc prints `created`).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// `secs`.`nanos` since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_like_runc() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", "a/b", "..", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn state_round_trips_and_create_refuses_duplicates() {
        let root = tempfile::tempdir().unwrap();
        let sd = StateDir::new(root.path(), "c1").unwrap();
        sd.create().unwrap();
        assert!(matches!(sd.create(), Err(StateError::Exists(_))));
        assert!(matches!(sd.load(), Err(StateError::NotFound(_))));
        let st = ContainerState {
            id: "c1".into(),
            status: Status::Created,
            pid: 42,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            owner: "root".into(),
            annotations: Default::default(),
            monitor_pid: 42,
            exit_status: None,
            accel: "tcg".into(),
            paused: false,
            netns: None,
            net_interfaces: Vec::new(),
            cgroup: None,
            sandbox: None,
        };
        sd.save(&st).unwrap();
        assert_eq!(sd.load().unwrap().status, Status::Created);
        assert_eq!(list(root.path()).unwrap(), vec!["c1".to_string()]);
        let _g = sd.lock().unwrap();
        sd.remove().unwrap();
        assert!(!sd.exists());
    }

    #[test]
    fn remove_never_follows_symlinks_out_of_the_state_dir() {
        let root = tempfile::tempdir().unwrap();
        let precious = tempfile::tempdir().unwrap();
        std::fs::write(precious.path().join("keep"), "x").unwrap();
        let sd = StateDir::new(root.path(), "c2").unwrap();
        sd.create().unwrap();
        std::os::unix::fs::symlink(precious.path(), sd.path("link")).unwrap();
        sd.remove().unwrap();
        assert!(precious.path().join("keep").exists());
        assert!(!sd.exists());
    }

    /// An abort races a thread still writing files and subdirectories into the directory
    /// (`remove_dir` fails with ENOTEMPTY): the settled removal still leaves nothing.
    #[test]
    fn remove_settled_outlasts_a_thread_still_writing() {
        let root = tempfile::tempdir().unwrap();
        let sd = StateDir::new(root.path(), "c3").unwrap();
        sd.create().unwrap();
        let dir = sd.path("");
        let writer = std::thread::spawn(move || {
            let mut written = 0;
            for i in 0..2000 {
                let ok = std::fs::create_dir(dir.join(format!("d{i}")))
                    .and_then(|_| std::fs::write(dir.join(format!("d{i}/f")), "x"))
                    .is_ok();
                written += usize::from(ok);
            }
            written
        });
        std::thread::sleep(Duration::from_millis(2));
        sd.remove_settled(Duration::from_secs(5)).unwrap();
        let written = writer.join().unwrap();
        assert!(written > 0, "the writer raced the removal");
        assert!(!sd.exists());
    }
}
