//! VM templates: a VM is cloned from a booted template instead of booting a kernel.
//!
//! A template is a booted VM of one shape (kernel, initramfs, QEMU binary, machine, device set,
//! accelerator, kernel command line) whose agent has answered `Hello`, saved with QEMU's
//! migration: its RAM is a file on the state root's tmpfs (`memory-backend-file,share=on`, so
//! the guest's writes land in the file), its device state a small file written by `migrate`
//! with `x-ignore-shared` (the RAM is not copied into it). A clone is QEMU started with the
//! same command line but the memory file mapped privately (`share=off`: copy-on-write, the
//! pages a clone does not write stay shared with every other clone) and `-incoming defer`,
//! then `migrate-incoming` of the device state. The clone runs on from where the template's
//! agent waited for its host; everything after `Hello` is a cold boot's.
//!
//! Layout under the state root (or `HULL_TEMPLATE_DIR`): `.templates/<key>/{memory,state,meta.json}`, `<key>.lock`
//! (built under an exclusive lock, used under a shared one, so a rebuild never pulls a file
//! from under a starting clone), `builds.log` (one line per build).
//!
//! The key hashes the clone's command line with everything per-container taken out (name,
//! memory file, tap fds, published ports) and the identity of the QEMU binary, kernel and
//! initramfs files (path, size, mtime, inode): any change is another key, so another template.
//! A template whose files do not match its `meta.json` (size, state checksum) is rebuilt.

mod build;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hull_oci::{FsCache, VmPlan};
use hull_qemu::{Memory, Netdev, QemuCommand};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::devices::UserNetBackend;
use crate::MonitorError;

pub use build::build;

/// `HULL_VM_TEMPLATE`: `on` (default) or `off`; the bundle's `org.hull.vm.template` wins.
pub const ENV: &str = "HULL_VM_TEMPLATE";

/// How templates are built and restored; part of the key (bump it when either changes).
const FORMAT: &str = "hull-template-2";

/// Directory of the templates under the state root.
pub const DIR: &str = ".templates";

/// `HULL_TEMPLATE_DIR`: where templates are kept instead of `<root>/.templates` (several state
/// roots, e.g. podman's and containerd's, can share one set).
pub const DIR_ENV: &str = "HULL_TEMPLATE_DIR";

/// Where the templates of state root `root` are.
pub fn base_dir(root: &Path) -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => root.join(DIR),
    }
}

/// How this VM starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Cloned from a template (built first if there is none).
    Clone,
    /// Booted, for this reason.
    ColdBoot(String),
}

/// Chooses how the VM starts: the bundle's annotation, else [`ENV`], else templates; then
/// whether this VM can be a clone at all.
pub fn choose(plan: &VmPlan, user_net: Option<&UserNetBackend>) -> Result<Start, MonitorError> {
    let wanted = match plan.template {
        Some(w) => Ok((w, "the bundle's org.hull.vm.template")),
        None => match std::env::var(ENV).as_deref() {
            Err(_) | Ok("") | Ok("on") => Ok((true, "")),
            Ok("off") => Ok((false, "HULL_VM_TEMPLATE=off")),
            Ok(v) => Err(MonitorError::Setting {
                name: ENV,
                value: v.into(),
                problem: "must be \"on\" or \"off\"",
            }),
        },
    }?;
    Ok(match wanted {
        (false, why) => Start::ColdBoot(format!("templates turned off by {why}")),
        _ if matches!(user_net, Some(UserNetBackend::Passt(_))) => {
            Start::ColdBoot("passt's connection to QEMU cannot be cloned".into())
        }
        _ if plan.rootfs_cache != FsCache::Always => Start::ColdBoot(
            "org.hull.rootfs.cache=auto needs virtio-fs, which clones cannot have".into(),
        ),
        _ => Start::Clone,
    })
}

/// The files of one template.
#[derive(Debug, Clone)]
pub struct Template {
    pub key: String,
    pub dir: PathBuf,
    pub memory: PathBuf,
    pub state: PathBuf,
    meta: PathBuf,
    lock: PathBuf,
    builds_log: PathBuf,
}

/// What `meta.json` records, to tell a complete template from a damaged one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    pub key: String,
    pub memory_bytes: u64,
    pub state_bytes: u64,
    pub state_sha256: String,
    pub build_ms: u64,
    /// Identity of the QEMU binary, kernel and initramfs it was built from (see [`inputs`]):
    /// once one of those files changes, the template is garbage.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The holes of the memory file after the build, `[offset, length]` in bytes: pages the
    /// template's guest never used or gave back (free page reporting). See
    /// [`give_back_free_pages`].
    #[serde(default)]
    pub holes: Vec<[u64; 2]>,
}

impl Template {
    /// Template `key` in the template directory `base` (see [`base_dir`]).
    pub fn new(base: &Path, key: &str) -> Self {
        let dir = base.join(key);
        Self {
            key: key.to_owned(),
            memory: dir.join("memory"),
            state: dir.join("state"),
            meta: dir.join("meta.json"),
            lock: base.join(format!("{key}.lock")),
            builds_log: base.join("builds.log"),
            dir,
        }
    }

    /// `Ok` if the template is complete and matches its record; `Err` says why not.
    pub fn check(&self, memory_mib: u32) -> Result<Meta, String> {
        let bytes = std::fs::read(&self.meta).map_err(|e| format!("meta.json: {e}"))?;
        let meta: Meta =
            serde_json::from_slice(&bytes).map_err(|e| format!("meta.json unreadable: {e}"))?;
        if meta.key != self.key {
            return Err(format!("meta.json is for key {}", meta.key));
        }
        let want = u64::from(memory_mib) << 20;
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len());
        match size(&self.memory) {
            Ok(n) if n == want && n == meta.memory_bytes => {}
            Ok(n) => return Err(format!("memory file has {n} bytes, not {want}")),
            Err(e) => return Err(format!("memory file: {e}")),
        }
        let state = std::fs::read(&self.state).map_err(|e| format!("state file: {e}"))?;
        if state.len() as u64 != meta.state_bytes || sha256_hex(&state) != meta.state_sha256 {
            return Err("state file does not match its checksum".into());
        }
        Ok(meta)
    }
}

/// A template in use: it cannot be rebuilt (removed) while the lease lives.
pub struct Lease {
    _lock: File,
    pub template: Template,
    /// Whether this start built it (and how long that took).
    pub built_ms: Option<u64>,
}

/// The template for `clone_cmd` in the template directory `base` ([`base_dir`]), built by `build` (into the directory it is given) when there
/// is none or it is damaged. Concurrent first starts build it once.
pub fn acquire(
    base: &Path,
    clone_cmd: &QemuCommand,
    build: impl FnOnce(&Path) -> Result<Meta, MonitorError>,
) -> Result<Lease, MonitorError> {
    let t = Template::new(base, &key(clone_cmd));
    let in_template = |e: MonitorError| MonitorError::Template {
        dir: t.dir.clone(),
        source: Box::new(e),
    };
    create_private_dir(base).map_err(in_template)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&t.lock)
        .map_err(MonitorError::sys(format!("open {}", t.lock.display())))
        .map_err(in_template)?;
    flock(&lock, libc::LOCK_SH).map_err(in_template)?;
    if t.check(clone_cmd.memory_mib).is_ok() {
        return Ok(Lease {
            _lock: lock,
            template: t,
            built_ms: None,
        });
    }
    flock(&lock, libc::LOCK_EX).map_err(in_template)?;
    let built_ms = match t.check(clone_cmd.memory_mib) {
        Ok(_) => None, // another start built it while we waited
        Err(why) => {
            crate::log::info(&format!(
                "VM template {}: building ({why})",
                t.dir.display()
            ));
            let meta = rebuild(&t, clone_cmd, build).map_err(in_template)?;
            Some(meta.build_ms)
        }
    };
    flock(&lock, libc::LOCK_SH).map_err(in_template)?;
    Ok(Lease {
        _lock: lock,
        template: t,
        built_ms,
    })
}

/// Creates `dir` (if missing) readable by its owner only: a template's memory is a guest's
/// RAM. An existing directory is left as it is (`HULL_TEMPLATE_DIR` may name one).
fn create_private_dir(dir: &Path) -> Result<(), MonitorError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(MonitorError::sys(format!("mkdir {}", dir.display())))
}

/// Removes a template (a clone could not be restored from it); the next start rebuilds it.
pub fn discard(lease: Lease) {
    let lock = &lease._lock;
    if flock(lock, libc::LOCK_EX).is_ok() {
        let _ = std::fs::remove_dir_all(&lease.template.dir);
    }
}

/// The holes of `path` (`SEEK_HOLE`/`SEEK_DATA`), `[offset, length]`.
pub fn holes_of(path: &Path) -> std::io::Result<Vec<[u64; 2]>> {
    let f = File::open(path)?;
    let size = f.metadata()?.len();
    let mut holes = Vec::new();
    let mut at = 0;
    while at < size {
        let hole = crate::sys::seek_hole(&f, at)?;
        if hole >= size {
            break;
        }
        let data = crate::sys::seek_data(&f, hole)?.unwrap_or(size);
        holes.push([hole, data - hole]);
        at = data;
    }
    Ok(holes)
}

/// Gives the pages a template's guest did not use back to the host, after a clone ended.
///
/// A clone maps the template's memory file private. On tmpfs, any fault of a private mapping on
/// a hole of the file (a page the template's guest had free, which a clone reads or writes
/// for the first time) allocates a zeroed page in the file itself, and discarding the clone's
/// copy does not free it: the file fills towards the VM's RAM size and stays so (measured by
/// `hull-bench --only reclaim`). Punching the holes recorded at the build again frees those
/// pages and changes nothing anyone sees: they were zero and read as zero; running clones keep
/// their own copies and refault the rest as zeros. Under the template's lock, shared
/// (a rebuild holds it exclusive), and only for the template the record describes.
pub fn give_back_free_pages(dir: &Path) {
    let (Some(base), Some(key)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let t = Template::new(base, &key.to_string_lossy());
    let r = (|| -> Result<usize, String> {
        let lock = File::open(&t.lock).map_err(|e| format!("{}: {e}", t.lock.display()))?;
        flock(&lock, libc::LOCK_SH | libc::LOCK_NB).map_err(|e| e.to_string())?;
        let meta: Meta = std::fs::read(&t.meta)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|m: &Meta| m.key == t.key)
            .ok_or("no valid meta.json")?;
        let f = OpenOptions::new()
            .write(true)
            .open(&t.memory)
            .map_err(|e| format!("{}: {e}", t.memory.display()))?;
        for [offset, len] in &meta.holes {
            crate::sys::punch_hole(&f, *offset, *len).map_err(|e| e.to_string())?;
        }
        Ok(meta.holes.len())
    })();
    match r {
        Ok(n) => crate::log::debug(&format!(
            "VM template {}: {n} holes punched again",
            dir.display()
        )),
        Err(e) => crate::log::debug(&format!(
            "VM template {}: free pages not given back: {e}",
            dir.display()
        )),
    }
}

/// Builds into `<key>.build`, then moves it in place (under the exclusive lock).
fn rebuild(
    t: &Template,
    clone_cmd: &QemuCommand,
    build: impl FnOnce(&Path) -> Result<Meta, MonitorError>,
) -> Result<Meta, MonitorError> {
    if let Some(base) = t.dir.parent() {
        collect_garbage(base, &t.key);
    }
    let work = t.dir.with_extension("build");
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&t.dir);
    std::fs::create_dir_all(&work)
        .map_err(MonitorError::sys(format!("mkdir {}", work.display())))?;
    let meta = match build(&work) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    let meta = Meta {
        key: t.key.clone(),
        inputs: inputs(clone_cmd),
        ..meta
    };
    let written = serde_json::to_vec_pretty(&meta)
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(work.join("meta.json"), json))
        .and_then(|_| std::fs::rename(&work, &t.dir))
        .map_err(MonitorError::sys(format!("install {}", t.dir.display())));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    let line = format!(
        "{} key={} pid={} build_ms={}\n",
        hull_state::now_rfc3339(),
        t.key,
        std::process::id(),
        meta.build_ms
    );
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&t.builds_log)
    {
        let _ = f.write_all(line.as_bytes());
    }
    Ok(meta)
}

/// Removes the templates (other than `keep`) built from a QEMU binary, kernel or initramfs
/// that has changed since; a template in use (its lock held) is left for a later build.
fn collect_garbage(base: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let key = e.file_name().to_string_lossy().into_owned();
        if key == keep || !e.path().is_dir() || key.ends_with(".build") {
            continue;
        }
        let t = Template::new(base, &key);
        let Some(meta) = std::fs::read(&t.meta)
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
        else {
            continue;
        };
        let stale = meta.inputs.iter().any(|recorded| {
            let path = recorded.split(' ').next().unwrap_or_default();
            file_identity(Path::new(path)) != *recorded
        });
        if !stale {
            continue;
        }
        let Ok(lock) = OpenOptions::new().write(true).open(&t.lock) else {
            continue;
        };
        if flock(&lock, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
            crate::log::info(&format!(
                "VM template {}: inputs changed, removed",
                t.dir.display()
            ));
            // The (empty) lock file stays: unlinking it would let a starter that has it open
            // lock the old inode while another creates a new one, and both would build.
            let _ = std::fs::remove_dir_all(&t.dir);
        }
    }
}

fn flock(f: &File, op: libc::c_int) -> Result<(), MonitorError> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(MonitorError::sys("lock the VM template")(e));
        }
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The template key of a clone's command line: its shape without what is per container, and
/// the identity of every file QEMU loads.
pub fn key(clone_cmd: &QemuCommand) -> String {
    let shape = shape(clone_cmd);
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    for a in shape.args() {
        h.update(a.as_encoded_bytes());
        h.update([0]);
    }
    for f in inputs(clone_cmd) {
        h.update(f.as_bytes());
        h.update([0]);
    }
    h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The command line with what differs between clones of one template blanked out.
fn shape(c: &QemuCommand) -> QemuCommand {
    let mut s = c.clone();
    s.name = String::new();
    // The host TSC frequency measured under TCG varies by a few kHz from probe to probe; the
    // clone does not boot, so its kernel command line only has to be the template's otherwise.
    s.kernel_cmdline = c
        .kernel_cmdline
        .split(' ')
        .filter(|w| !w.starts_with("tsc_early_khz="))
        .collect::<Vec<_>>()
        .join(" ");
    s.memory = Memory::File {
        path: PathBuf::new(),
        share: false,
    };
    s.incoming = false;
    for n in &mut s.netdevs {
        match n {
            Netdev::TapFd { fd, .. } => *fd = -1,
            Netdev::User { hostfwd, .. } => hostfwd.clear(),
            Netdev::Stream { path, .. } => *path = PathBuf::new(),
        }
    }
    s
}

/// The identities of the files QEMU loads.
fn inputs(c: &QemuCommand) -> Vec<String> {
    [&c.binary, &c.kernel, &c.initrd]
        .iter()
        .map(|f| file_identity(f))
        .collect()
}

/// Path, size, mtime and inode: a replaced or rebuilt file is another identity.
fn file_identity(p: &Path) -> String {
    let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    match std::fs::metadata(&canonical) {
        Ok(m) => format!(
            "{} {} {}.{} {}:{}",
            canonical.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.dev(),
            m.ino()
        ),
        Err(_) => format!("{} missing", canonical.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_qemu::{Accel, Chardev, Device};

    fn cmd(dir: &Path) -> QemuCommand {
        std::fs::write(dir.join("vmlinux"), b"kernel").unwrap();
        std::fs::write(dir.join("initramfs.cpio"), b"initrd").unwrap();
        QemuCommand {
            binary: "/bin/true".into(),
            name: "hull-a".into(),
            machine: hull_qemu::Machine::Microvm,
            accel: Accel::Tcg,
            tcg_tb_size_mib: 64,
            vcpus: 1,
            memory_mib: 1,
            memory: Memory::SharedMemfd,
            kernel: dir.join("vmlinux"),
            initrd: dir.join("initramfs.cpio"),
            kernel_cmdline: "quiet".into(),
            chardevs: vec![Chardev::SocketClient {
                id: "agent".into(),
                path: "agent.sock".into(),
            }],
            fsdevs: Vec::new(),
            netdevs: vec![Netdev::TapFd {
                id: "net0".into(),
                fd: 7,
            }],
            devices: vec![Device::VirtioNet {
                netdev: "net0".into(),
                mac: "02:68:75:6c:6c:00".into(),
                mtu: None,
            }],
            qmp_chardev: "qmp".into(),
            incoming: false,
            sandbox: None,
        }
    }

    #[test]
    fn key_ignores_what_is_per_container_and_sees_the_shape_and_files() {
        let d = tempdir();
        let a = cmd(&d);
        let mut b = a.clone();
        b.name = "hull-b".into();
        b.netdevs[0] = Netdev::TapFd {
            id: "net0".into(),
            fd: 9,
        };
        b.incoming = true;
        assert_eq!(key(&a), key(&b));
        let mut c = a.clone();
        c.memory_mib = 512;
        assert_ne!(key(&a), key(&c));
        let mut c = a.clone();
        c.vcpus = 2;
        assert_ne!(key(&a), key(&c));
        // The measured TSC frequency is not part of the shape; the rest of the command line is.
        let mut x = a.clone();
        x.kernel_cmdline = "quiet tsc_early_khz=2999".into();
        let mut y = a.clone();
        y.kernel_cmdline = "quiet tsc_early_khz=3001".into();
        assert_eq!(key(&x), key(&y));
        y.kernel_cmdline = "hull.debug tsc_early_khz=3001".into();
        assert_ne!(key(&x), key(&y));
        // A new kernel (same path) is another template.
        let before = key(&a);
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(d.join("vmlinux"), b"kernel 2").unwrap();
        assert_ne!(before, key(&a));
        let _ = std::fs::remove_dir_all(&d);
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "hull-template-test-{}-{}",
            std::process::id(),
            crate::sys::monotonic_ns()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn fake_build(memory_mib: u32) -> impl FnOnce(&Path) -> Result<Meta, MonitorError> {
        move |dir: &Path| {
            let f = File::create(dir.join("memory")).unwrap();
            f.set_len(u64::from(memory_mib) << 20).unwrap();
            std::fs::write(dir.join("state"), b"device state").unwrap();
            Ok(Meta {
                key: String::new(),
                memory_bytes: u64::from(memory_mib) << 20,
                state_bytes: 12,
                state_sha256: sha256_hex(b"device state"),
                build_ms: 1,
                inputs: Vec::new(),
                holes: Vec::new(),
            })
        }
    }

    #[test]
    fn a_damaged_template_is_rebuilt_and_a_good_one_reused() {
        let root = tempdir();
        let c = cmd(&root);
        let lease = acquire(&root.join(DIR), &c, fake_build(1)).unwrap();
        assert!(lease.built_ms.is_some());
        let t = lease.template.clone();
        let mode = std::fs::metadata(root.join(DIR)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        drop(lease);
        let lease = acquire(
            &root.join(DIR),
            &c,
            |_: &Path| -> Result<Meta, MonitorError> { panic!("must not rebuild a good template") },
        )
        .unwrap();
        assert!(lease.built_ms.is_none());
        drop(lease);
        // Truncated memory file: detected, rebuilt.
        File::options()
            .write(true)
            .open(&t.memory)
            .unwrap()
            .set_len(4096)
            .unwrap();
        assert!(t.check(1).unwrap_err().contains("memory file"));
        let lease = acquire(&root.join(DIR), &c, fake_build(1)).unwrap();
        assert!(lease.built_ms.is_some());
        drop(lease);
        // Damaged state file: detected.
        std::fs::write(&t.state, b"device stat!").unwrap();
        assert!(t.check(1).unwrap_err().contains("checksum"));
        let log = std::fs::read_to_string(root.join(DIR).join("builds.log")).unwrap();
        assert_eq!(log.lines().count(), 2, "{log}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_failed_build_leaves_nothing() {
        let root = tempdir();
        let c = cmd(&root);
        let e = acquire(&root.join(DIR), &c, |dir: &Path| {
            std::fs::write(dir.join("memory"), b"partial").unwrap();
            Err(MonitorError::Agent("boom".into()))
        });
        let e = e.err().expect("build fails");
        assert!(crate::error_chain(&e).contains("boom"));
        let t = Template::new(&root.join(DIR), &key(&c));
        assert!(!t.dir.exists() && !t.dir.with_extension("build").exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    /// The holes of a sparse memory file are found, and punching them again after a writer
    /// filled them frees what was written there and keeps the data around them.
    #[test]
    fn recorded_holes_are_found_and_punched_again() {
        use std::io::{Seek, SeekFrom, Write};
        // /dev/shm: tmpfs, where a clone's faults fill the holes of its template's file.
        let dir =
            std::path::Path::new("/dev/shm").join(format!("hull-holes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("templates");
        let t = Template::new(&base, "k1");
        std::fs::create_dir_all(&t.dir).unwrap();
        let mut f = File::create(&t.memory).unwrap();
        f.set_len(1 << 20).unwrap();
        f.seek(SeekFrom::Start(64 << 10)).unwrap();
        f.write_all(&[7u8; 4096]).unwrap();
        drop(f);
        let holes = holes_of(&t.memory).unwrap();
        assert_eq!(
            holes,
            vec![[0, 64 << 10], [68 << 10, (1 << 20) - (68 << 10)]]
        );
        let meta = Meta {
            key: "k1".into(),
            memory_bytes: 1 << 20,
            state_bytes: 0,
            state_sha256: String::new(),
            build_ms: 0,
            inputs: Vec::new(),
            holes: holes.clone(),
        };
        std::fs::write(&t.meta, serde_json::to_vec(&meta).unwrap()).unwrap();
        File::create(&t.lock).unwrap();
        // A "clone" fills the file.
        std::fs::write(&t.memory, vec![1u8; 1 << 20]).unwrap();
        assert!(holes_of(&t.memory).unwrap().is_empty());
        give_back_free_pages(&t.dir);
        assert_eq!(holes_of(&t.memory).unwrap(), holes);
        let data = std::fs::read(&t.memory).unwrap();
        assert!(
            data[(64 << 10)..(68 << 10)].iter().all(|b| *b == 1),
            "data kept"
        );
        assert!(data[..(64 << 10)].iter().all(|b| *b == 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
