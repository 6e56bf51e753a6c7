//! The container: its plan (checked when the host creates it) and the root file system setup
//! that the init process runs in its new mount namespace, between fork and exec.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use hull_protocol::ContainerConfig;
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxNamespaceType, Spec};

use crate::cgroup::Cgroup;
use crate::error::{Context, Error, Result};
use crate::mounts::{classify, parse_options, secure_join, MountKind, MountOptions};
use crate::seccomp::SeccompPlan;
use crate::userns::IdMaps;

/// CLONE_NEWTIME (Linux 5.6), which nix does not name.
pub const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);

/// Where the host's rootfs share (`hull_protocol::SHARE_TAG`) is mounted in the guest.
pub const SHARE_DIR: &str = "/run/hull/share";
/// Where the host's volumes share (`VOLUME_TAG`, bind mount sources) is mounted in the guest.
pub const VOLUME_DIR: &str = "/run/hull/volumes";

/// Where the kernel lists the virtio-9p devices, each as `virtio*/mount_tag`.
const P9_DEVICES: &str = "/sys/bus/virtio/drivers/9pnet_virtio";

/// Mounts the host's share `tag` at `dir`: over 9p when a virtio-9p device carries the tag (a VM
/// restored from a template), else over virtio-fs.
pub fn mount_share(tag: &str, dir: &str) -> Result<()> {
    fs::create_dir_all(dir).ctx(|| format!("creating {dir}"))?;
    let (fstype, data) = if on_9p(Path::new(P9_DEVICES), tag) {
        ("9p", Some(p9_options(tag)))
    } else {
        ("virtiofs", None)
    };
    let opts = data
        .as_deref()
        .map(|d| format!(", options {d}"))
        .unwrap_or_default();
    mount(
        Some(tag),
        dir,
        Some(fstype),
        MsFlags::empty(),
        data.as_deref(),
    )
    .ctx(|| format!("mounting the share {tag:?} ({fstype}{opts}) at {dir}"))?;
    debug!("mounted the share {tag} at {dir} over {fstype}{opts}");
    Ok(())
}

/// The 9p mount options of the share `tag`: `cache=mmap` for every share. Writes go through
/// to the host at once (as with virtio-fs: engines and hooks read the rootfs from the host while
/// the container runs, and nothing is lost if the VM is killed) and shared writable mmap works;
/// mapped pages (executables, libraries) stay cached. `cache=loose` would cache writes too
/// (write-back: the host saw an empty file after a write, and a killed VM loses them) for an
/// exec measured only ~15 % faster under TCG.
fn p9_options(_tag: &str) -> String {
    "trans=virtio,version=9p2000.L,msize=512000,access=client,cache=mmap".into()
}

/// Whether one of the virtio-9p devices listed in `devices` carries `tag`.
fn on_9p(devices: &Path, tag: &str) -> bool {
    let Ok(entries) = fs::read_dir(devices) else {
        return false; // no 9p driver, or no device bound to it
    };
    entries
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(b"virtio"))
        .filter_map(|e| fs::read(e.path().join("mount_tag")).ok())
        .any(|raw| mount_tag(&raw) == tag.as_bytes())
}

/// The tag in a `mount_tag` file, without the NUL byte and newline the kernel may end it with.
fn mount_tag(raw: &[u8]) -> &[u8] {
    let end = raw
        .iter()
        .rposition(|b| !matches!(b, b'\0' | b'\n'))
        .map_or(0, |i| i + 1);
    &raw[..end]
}

/// Namespaces of the container.
#[derive(Debug, Clone)]
pub struct Namespaces {
    /// What the init process unshares (always includes a mount namespace).
    pub unshare: CloneFlags,
    /// What exec'd processes join, in order: flag and name under /proc/PID/ns.
    pub join: Vec<(CloneFlags, &'static str)>,
    /// A later container of a pod: the namespaces its init joins from the pod's first
    /// container (the spec names them by a host path, `/proc/<monitor PID>/ns/ipc`: on the host
    /// that is the VM's monitor, in the guest it is the first container's init).
    pub pod: Vec<(CloneFlags, &'static str)>,
    /// A new user namespace (unshared first, so it owns the others) and its maps.
    pub user: Option<IdMaps>,
    /// A new time namespace (in `unshare`): the text of its clock offsets.
    pub time_offsets: Option<String>,
}

impl Namespaces {
    /// Whether the process is in a user namespace of its own (new, or joined in a pod/exec).
    pub fn has_user(&self) -> bool {
        self.user.is_some()
            || self
                .pod
                .iter()
                .any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
    }

    /// Whether the child forks once more after entering the namespaces: a PID or time namespace
    /// takes effect for children only.
    pub fn forks(&self) -> bool {
        self.pid() || self.unshare.contains(CLONE_NEWTIME) || self.joins(CLONE_NEWTIME)
    }

    fn joins(&self, flag: CloneFlags) -> bool {
        self.join.iter().any(|(f, _)| *f == flag)
    }

    /// Whether the process goes into another PID namespace (a new one or the pod's).
    pub fn pid(&self) -> bool {
        self.unshare.contains(CloneFlags::CLONE_NEWPID)
            || self.pod.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWPID)
    }

    /// Whether the UTS namespace is the pod's (its hostname is the pod's, not set again).
    pub fn pod_uts(&self) -> bool {
        self.pod.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWUTS)
    }
}

/// One mount of the spec, checked and parsed.
#[derive(Debug, Clone)]
struct PlannedMount {
    index: usize,
    dest: PathBuf,
    kind: MountKind,
    opts: MountOptions,
    /// The guest path a bind mount takes its files from.
    bind_source: PathBuf,
}

impl PlannedMount {
    fn what(&self) -> String {
        format!("mount {} ({})", self.index, self.dest.display())
    }
}

/// A container as the host created it.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    /// The bundle's host path (for hook state).
    pub bundle: String,
    pub spec: Spec,
    /// The container's root directory in the guest.
    pub root: PathBuf,
    pub ns: Namespaces,
    mounts: Vec<PlannedMount>,
    /// Whether /dev is a tmpfs of the spec, to be populated like runc does.
    default_devices: bool,
    /// The exec id of its init (0: the VM's first container).
    pub init_exec_id: hull_protocol::ExecId,
    /// For a later container of a pod: the guest PID of the pod's first init, whose
    /// namespaces `ns.pod` names.
    pub pod_init_pid: Option<i32>,
    /// `linux.seccomp`, compiled.
    pub seccomp: Option<SeccompPlan>,
    /// Its cgroup, `linux.resources` applied: every process of the container joins it.
    pub cgroup: Cgroup,
    /// `linux.rootfsPropagation` as flags and its name (else `/` stays rslave).
    root_propagation: Option<(MsFlags, String)>,
}

impl Drop for Container {
    fn drop(&mut self) {
        self.cgroup.remove();
    }
}

impl Container {
    /// Checks the configuration and prepares everything that can be prepared before a process
    /// is started. The share must be mounted.
    pub fn plan(cfg: ContainerConfig) -> Result<Self> {
        let root = Path::new(SHARE_DIR).join(cfg.rootfs.trim_start_matches('/'));
        let m = fs::metadata(&root).ctx(|| format!("container rootfs {}", root.display()))?;
        if !m.is_dir() {
            return Err(Error::msg(format!(
                "container rootfs {} is not a directory",
                root.display()
            )));
        }
        let spec = cfg.spec;
        let ns = plan_namespaces(&spec, cfg.init_exec_id != 0)?;
        let mut mounts = Vec::new();
        for (index, m) in spec.mounts().iter().flatten().enumerate() {
            let dest = m.destination().clone();
            let what = || format!("mount {index} ({})", dest.display());
            let raw_opts = m.options().as_deref().unwrap_or_default();
            refuse_idmap(index, m, raw_opts)?;
            let opts = parse_options(raw_opts);
            let source = m.source().as_ref().and_then(|s| s.to_str());
            let kind = classify(m.typ().as_deref(), source, &opts)
                .ok_or_else(|| Error::msg(format!("{}: no type and not a bind mount", what())))?;
            let mut bind_source = PathBuf::new();
            if kind == MountKind::Bind {
                let share = cfg
                    .binds
                    .iter()
                    .find(|b| b.mount_index == index)
                    .ok_or_else(|| {
                        Error::msg(format!(
                            "{}: bind mount without a share path from the host",
                            what()
                        ))
                    })?;
                bind_source = Path::new(VOLUME_DIR).join(share.share_path.trim_start_matches('/'));
                fs::metadata(&bind_source)
                    .ctx(|| format!("{}: bind source {}", what(), bind_source.display()))?;
            }
            mounts.push(PlannedMount {
                index,
                dest,
                kind,
                opts,
                bind_source,
            });
        }
        let default_devices = mounts.iter().any(|m| {
            m.dest.components().eq(Path::new("/dev").components())
                && matches!(&m.kind, MountKind::Fs { fstype, .. } if fstype == "tmpfs")
        });
        if spec.process().is_none() {
            return Err(Error::msg("config has no process"));
        }
        // Compiled here, before any fork, for the init and every exec'd process (as runc does).
        let seccomp = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .map(SeccompPlan::new)
            .transpose()?;
        let root_propagation = root_propagation(&spec)?;
        // Last: nothing else can fail once it exists (a dropped container removes it).
        let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let cgroup = Cgroup::create(&cfg.id, resources)?;
        Ok(Self {
            id: cfg.id,
            bundle: cfg.bundle,
            spec,
            root,
            ns,
            mounts,
            default_devices,
            init_exec_id: cfg.init_exec_id,
            pod_init_pid: None,
            seccomp,
            cgroup,
            root_propagation,
        })
    }
}

/// `linux.rootfsPropagation` (runc's names, with or without `r`).
fn root_propagation(spec: &Spec) -> Result<Option<(MsFlags, String)>> {
    let value = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref());
    let Some(v) = value else {
        return Ok(None);
    };
    let flags = crate::mounts::propagation_flag(v).ok_or_else(|| {
        Error::spec(
            "linux.rootfsPropagation",
            format!("{v:?} is not shared, slave, private or unbindable (or r-prefixed)"),
        )
    })?;
    Ok(Some((flags, v.to_string())))
}

/// ID-mapped mounts (`idmap`/`ridmap`, a mount's `uidMappings`/`gidMappings`) need file
/// systems that support them; the guest's shares (virtio-fs, 9p) do not: refused, not ignored.
fn refuse_idmap(index: usize, m: &oci_spec::runtime::Mount, opts: &[String]) -> Result<()> {
    const WHY: &str =
        "ID-mapped mounts are not supported in hull's VMs (virtio-fs/9p shares cannot be ID-mapped)";
    if let Some(o) = opts.iter().find(|o| *o == "idmap" || *o == "ridmap") {
        return Err(Error::spec(
            format!("mounts[{index}].options"),
            format!("{o:?}: {WHY}"),
        ));
    }
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(Error::spec(format!("mounts[{index}].uidMappings"), WHY));
    }
    Ok(())
}

/// The container's namespaces. `member`: a later container of a pod, whose namespace paths
/// name the pod's namespaces.
fn plan_namespaces(spec: &Spec, member: bool) -> Result<Namespaces> {
    let mut unshare = CloneFlags::CLONE_NEWNS;
    let mut new_user = false;
    let mut join = Vec::new();
    let mut pod = Vec::new();
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    for n in namespaces.into_iter().flatten() {
        let (flag, name) = match n.typ() {
            LinuxNamespaceType::Pid => (CloneFlags::CLONE_NEWPID, "pid"),
            LinuxNamespaceType::Mount => (CloneFlags::CLONE_NEWNS, "mnt"),
            LinuxNamespaceType::Uts => (CloneFlags::CLONE_NEWUTS, "uts"),
            LinuxNamespaceType::Ipc => (CloneFlags::CLONE_NEWIPC, "ipc"),
            LinuxNamespaceType::Network => (CloneFlags::CLONE_NEWNET, "net"),
            LinuxNamespaceType::Cgroup => (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
            LinuxNamespaceType::User => (CloneFlags::CLONE_NEWUSER, "user"),
            LinuxNamespaceType::Time => (CLONE_NEWTIME, "time"),
        };
        if flag == CloneFlags::CLONE_NEWNET {
            // The VM is the container's network sandbox: the container uses the guest's own
            // network namespace, where the VM's interfaces are (as Kata does). Joining a host
            // namespace means nothing here (the monitor joined it on the host), and a fresh one
            // would be empty; it also cost ~20 ms per container under TCG (netns teardown).
            continue;
        }
        if let (Some(_), true) = (n.path(), member && flag != CloneFlags::CLONE_NEWNS) {
            pod.push((flag, name));
            continue;
        }
        if let Some(path) = n.path() {
            return Err(Error::msg(format!(
                "joining an existing {name} namespace ({}) is not supported",
                path.display()
            )));
        }
        if flag == CloneFlags::CLONE_NEWUSER {
            new_user = true; // unshared on its own, first (see crate::userns)
            continue;
        }
        unshare |= flag;
    }
    // A user namespace first: the others are then owned by it (pod: joined first).
    pod.sort_by_key(|(f, _)| *f != CloneFlags::CLONE_NEWUSER);
    let user = IdMaps::new(spec, new_user)?;
    let time_offsets = crate::userns::time_offsets(spec, unshare.contains(CLONE_NEWTIME))?;
    // Join order for exec: the user namespace first, the mount namespace last (it changes root
    // and cwd).
    for (flag, name) in [
        (CloneFlags::CLONE_NEWUSER, "user"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
        (CLONE_NEWTIME, "time"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWPID, "pid"),
        (CloneFlags::CLONE_NEWNS, "mnt"),
    ] {
        let new = unshare.contains(flag) || (flag == CloneFlags::CLONE_NEWUSER && new_user);
        if new || pod.iter().any(|(f, _)| *f == flag) {
            join.push((flag, name));
        }
    }
    Ok(Namespaces {
        unshare,
        join,
        pod,
        user,
        time_offsets,
    })
}

fn mnt(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    mount(src, target, fstype, flags, data)
}

/// Builds the container's root in the current (new, private) mount namespace and makes it
/// this process's root. Runs in the forked child: it must not touch the agent's locks.
/// `before_entering` runs once the mounts are in place, before the process changes root (the
/// point of createContainer hooks); it gets the root's path.
pub fn setup_rootfs(
    c: &Container,
    before_entering: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let root = c.root.as_path();
    let rslave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
    mnt(None, Path::new("/"), None, rslave, None).ctx(|| "making / rslave".into())?;
    mnt(
        Some(root),
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .ctx(|| format!("bind mounting the rootfs {} onto itself", root.display()))?;
    let old_umask = nix::sys::stat::umask(Mode::empty());
    for m in &c.mounts {
        apply_mount(root, m)?;
    }
    if c.default_devices {
        create_devices(root)?;
        let devices = c.spec.linux().as_ref().and_then(|l| l.devices().as_ref());
        for d in devices.into_iter().flatten() {
            create_spec_device(root, d)?;
        }
    }
    nix::sys::stat::umask(old_umask);
    before_entering(root)?;
    enter_root(root)?;
    // Like runc, once the root is in place (a mount under a shared one cannot be moved).
    if let Some((propagation, name)) = &c.root_propagation {
        mnt(None, Path::new("/"), None, *propagation, None)
            .ctx(|| format!("linux.rootfsPropagation: making / {name}"))?;
    }

    let linux = c.spec.linux().as_ref();
    for (key, value) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        fs::write(&path, value.as_bytes()).ctx(|| format!("sysctl {key}={value}"))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly_path(Path::new(p))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(Path::new(p))?;
    }
    if c.spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mnt(None, Path::new("/"), None, flags, None).ctx(|| "remounting / read-only".into())?;
    }
    if let Some(h) = c.spec.hostname().as_ref().filter(|_| !c.ns.pod_uts()) {
        nix::unistd::sethostname(h).ctx(|| format!("setting the hostname to {h:?}"))?;
    }
    if let Some(d) = c.spec.domainname() {
        crate::sys::setdomainname(d).ctx(|| format!("setting the domain name to {d:?}"))?;
    }
    Ok(())
}

fn apply_mount(root: &Path, m: &PlannedMount) -> Result<()> {
    let dest = secure_join(root, &m.dest).ctx(|| format!("{}: resolving", m.what()))?;
    let o = &m.opts;
    match &m.kind {
        MountKind::Bind => {
            let src = m.bind_source.as_path();
            let meta =
                fs::metadata(src).ctx(|| format!("{}: bind source {}", m.what(), src.display()))?;
            create_mountpoint(&dest, meta.is_dir()).ctx(|| m.what())?;
            let flags = o.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
            mnt(Some(src), &dest, None, flags, None).ctx(|| {
                format!(
                    "{}: bind mounting {} on {}",
                    m.what(),
                    src.display(),
                    dest.display()
                )
            })?;
            if o.bind_needs_remount() {
                mnt(None, &dest, None, o.bind_remount_flags(), None)
                    .ctx(|| format!("{}: remounting {}", m.what(), dest.display()))?;
            }
        }
        MountKind::Fs { fstype, source } => {
            if fstype == "proc" || fstype == "sysfs" {
                refuse_unusual_destination(root, m, fstype)?;
            }
            create_mountpoint(&dest, true).ctx(|| m.what())?;
            let data = (!o.data.is_empty()).then_some(o.data.as_str());
            let mounted = mnt(Some(Path::new(source)), &dest, Some(fstype), o.flags, data);
            match (mounted, userns_bind_source(fstype)) {
                // In a user namespace that does not own the guest's network (sysfs) or cgroup
                // namespace, these cannot be mounted anew: the guest's, bound, as runc does.
                (Err(Errno::EPERM), Some(src)) => bind_guest_fs(m, Path::new(src), &dest)?,
                (r, _) => r.ctx(|| {
                    format!(
                        "{}: mounting {fstype} on {} (options {:?})",
                        m.what(),
                        dest.display(),
                        o.data
                    )
                })?,
            }
        }
    }
    for (change, recursive) in [(o.attrs, false), (o.recursive, true)] {
        if !change.is_empty() {
            crate::sys::mount_setattr(&dest, change.set, change.clear, recursive).ctx(|| {
                format!(
                    "{}: setting mount attributes (set {:#x}, clear {:#x}{}) on {}",
                    m.what(),
                    change.set,
                    change.clear,
                    if recursive { ", recursively" } else { "" },
                    dest.display()
                )
            })?;
        }
    }
    for p in &o.propagation {
        mnt(None, &dest, None, *p, None)
            .ctx(|| format!("{}: changing propagation of {}", m.what(), dest.display()))?;
    }
    Ok(())
}

/// Binds the guest's own `src` (sysfs, cgroup2) on `dest` with the mount's flags.
fn bind_guest_fs(m: &PlannedMount, src: &Path, dest: &Path) -> Result<()> {
    mnt(
        Some(src),
        dest,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .and_then(|()| {
        let flags = m.opts.flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
        mnt(None, dest, None, flags, None)
    })
    .ctx(|| {
        format!(
            "{}: bind mounting the guest's {} on {} (user namespace)",
            m.what(),
            src.display(),
            dest.display()
        )
    })
}

/// What a file system that a user namespace cannot mount is bound from instead.
fn userns_bind_source(fstype: &str) -> Option<&'static str> {
    match fstype {
        "sysfs" => Some("/sys"),
        "cgroup2" => Some("/sys/fs/cgroup"),
        _ => None,
    }
}

/// Like runc: procfs and sysfs go only on a plain directory (or a path that does not exist
/// yet), never through a symlink of the image, whose target an attacker chose (a /proc that
/// points elsewhere would leave the real /proc path with whatever the image put there).
fn refuse_unusual_destination(root: &Path, m: &PlannedMount, fstype: &str) -> Result<()> {
    let rel = m.dest.strip_prefix("/").unwrap_or(&m.dest);
    let path = root.join(rel);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::read_link(&path).unwrap_or_default();
            Err(Error::msg(format!(
                "{}: refusing to mount {fstype} on {}: it is a symlink (to {}) in the rootfs",
                m.what(),
                m.dest.display(),
                target.display()
            )))
        }
        Ok(meta) if !meta.is_dir() => Err(Error::msg(format!(
            "{}: refusing to mount {fstype} on {}: it is not a directory in the rootfs",
            m.what(),
            m.dest.display()
        ))),
        _ => Ok(()),
    }
}

/// Creates a mount point: a directory, or an empty file (for a bind mount of a file).
fn create_mountpoint(dest: &Path, dir: bool) -> Result<()> {
    if dir {
        return fs::create_dir_all(dest).ctx(|| format!("creating {}", dest.display()));
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    }
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
    {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            Err(e).ctx(|| format!("creating {}", dest.display()))
        }
        _ => Ok(()),
    }
}

/// runc's default devices and symlinks in a tmpfs /dev.
fn create_devices(root: &Path) -> Result<()> {
    let dev = root.join("dev");
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = dev.join(name);
        match mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(Errno::EPERM) => bind_device(Path::new("/dev").join(name).as_path(), &path)?,
            Err(e) => return Err(e).ctx(|| format!("creating device /dev/{name}")),
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let path = dev.join(name);
        if name == "ptmx" {
            let _ = fs::remove_file(&path);
        }
        match std::os::unix::fs::symlink(target, &path) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                return Err(e).ctx(|| format!("creating symlink /dev/{name}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// In a user namespace no device node can be made: like runc, the guest's node `src` is
/// bind mounted on an empty file at `dest`.
fn bind_device(src: &Path, dest: &Path) -> Result<()> {
    create_mountpoint(dest, false)?;
    mnt(Some(src), dest, None, MsFlags::MS_BIND, None).ctx(|| {
        format!(
            "bind mounting the device {} (user namespace)",
            src.display()
        )
    })
}

/// In the container's root: binds the pty slave `slave` on /dev/console (in a tmpfs /dev only:
/// never a file on the host's share).
pub fn mount_console(c: &Container, slave: &Path) -> Result<()> {
    if !c.default_devices {
        return Ok(());
    }
    let path = Path::new("/dev/console");
    create_mountpoint(path, false)?;
    mnt(Some(slave), path, None, MsFlags::MS_BIND, None)
        .ctx(|| format!("bind mounting {} on /dev/console", slave.display()))
}

/// A device of `linux.devices` (only into a tmpfs /dev: never as a node on the host's share).
fn create_spec_device(root: &Path, d: &LinuxDevice) -> Result<()> {
    let what = || format!("device {}", d.path().display());
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::msg(format!(
                "{}: type \"a\" is not a device",
                what()
            )))
        }
    };
    let path = secure_join(root, d.path()).ctx(|| format!("{}: resolving", what()))?;
    if !path.starts_with(root.join("dev")) {
        debug!("{} is outside /dev; not created", what());
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).ctx(|| format!("{}: creating {}", what(), parent.display()))?;
    }
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666) & 0o7777);
    let dev = makedev(d.major() as u64, d.minor() as u64);
    match mknod(&path, kind, mode, dev) {
        Ok(()) | Err(Errno::EEXIST) => {}
        // In a user namespace: the guest's node, bound (its owner stays the guest's).
        Err(Errno::EPERM) => return bind_device(d.path(), &path).ctx(what),
        Err(e) => return Err(e).ctx(|| format!("{}: mknod", what())),
    }
    let uid = d.uid().map(nix::unistd::Uid::from_raw);
    let gid = d.gid().map(nix::unistd::Gid::from_raw);
    nix::unistd::chown(&path, uid, gid).ctx(|| format!("{}: chown", what()))
}

/// Makes `root` the root: what `runc --no-pivot` does (pivot_root does not work from an
/// initramfs).
fn enter_root(root: &Path) -> Result<()> {
    nix::unistd::chdir(root).ctx(|| format!("chdir to {}", root.display()))?;
    mnt(Some(root), Path::new("/"), None, MsFlags::MS_MOVE, None)
        .ctx(|| format!("moving {} to /", root.display()))?;
    nix::unistd::chroot(".").ctx(|| format!("chroot to {}", root.display()))?;
    nix::unistd::chdir("/").ctx(|| "chdir to / in the container".into())
}

fn readonly_path(p: &Path) -> Result<()> {
    match mnt(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None) {
        Err(Errno::ENOENT) => return Ok(()),
        r => r.ctx(|| format!("readonly path {}: bind mounting", p.display()))?,
    }
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
    mnt(Some(p), p, None, flags, None)
        .ctx(|| format!("readonly path {}: remounting read-only", p.display()))
}

fn mask_path(p: &Path) -> Result<()> {
    match mnt(
        Some(Path::new("/dev/null")),
        p,
        None,
        MsFlags::MS_BIND,
        None,
    ) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::ENOTDIR) => mnt(
            Some(Path::new("tmpfs")),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
        .ctx(|| format!("masked path {}: mounting a read-only tmpfs", p.display())),
        Err(e) => Err(e).ctx(|| format!("masked path {}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(ns: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"namespaces":{ns}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn nine_p_shares_write_through() {
        let want = "trans=virtio,version=9p2000.L,msize=512000,access=client,cache=mmap";
        assert_eq!(p9_options(hull_protocol::SHARE_TAG), want);
        assert_eq!(p9_options(hull_protocol::VOLUME_TAG), want);
    }

    #[test]
    fn mount_tags_lose_their_nul_and_newline() {
        assert_eq!(mount_tag(b"hullshare\0"), b"hullshare");
        assert_eq!(mount_tag(b"hullvol\n"), b"hullvol");
        assert_eq!(mount_tag(b"hullvol\0\n"), b"hullvol");
        assert_eq!(mount_tag(b"hullvol"), b"hullvol");
        assert_eq!(mount_tag(b"\0"), b"");
        assert_eq!(mount_tag(b""), b"");
    }

    #[test]
    fn nine_p_devices_are_found_by_tag() {
        let dir = std::env::temp_dir().join(format!("hull-agent-9p-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (dev, tag) in [("virtio3", &b"hullshare\0"[..]), ("virtio5", b"hullvol\n")] {
            fs::create_dir_all(dir.join(dev)).unwrap();
            fs::write(dir.join(dev).join("mount_tag"), tag).unwrap();
        }
        // What else the driver's directory holds.
        fs::write(dir.join("bind"), b"").unwrap();
        fs::create_dir_all(dir.join("module")).unwrap();
        fs::write(dir.join("module").join("mount_tag"), b"other").unwrap();

        assert!(on_9p(&dir, "hullshare"));
        assert!(on_9p(&dir, "hullvol"));
        assert!(!on_9p(&dir, "hullsha"));
        assert!(!on_9p(&dir, "other"), "only virtio* entries are devices");
        assert!(!on_9p(&dir.join("missing"), "hullshare"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn namespaces_always_include_mount() {
        let n = plan_namespaces(&spec_with("[]"), false).unwrap();
        assert_eq!(n.unshare, CloneFlags::CLONE_NEWNS);
        assert_eq!(n.join, vec![(CloneFlags::CLONE_NEWNS, "mnt")]);
        assert!(!n.pid());
    }

    #[test]
    fn namespaces_of_runc_spec() {
        let n = plan_namespaces(
            &spec_with(
                r#"[{"type":"pid"},{"type":"network","path":"/var/run/netns/x"},{"type":"ipc"},
                {"type":"uts"},{"type":"mount"},{"type":"cgroup"}]"#,
            ),
            false,
        )
        .unwrap();
        assert!(n.pid());
        assert!(!n.unshare.contains(CloneFlags::CLONE_NEWNET));
        assert!(!n.unshare.contains(CloneFlags::CLONE_NEWUSER));
        let names: Vec<_> = n.join.iter().map(|j| j.1).collect();
        assert_eq!(names, ["cgroup", "ipc", "uts", "pid", "mnt"]);
        assert!(n.user.is_none() && n.time_offsets.is_none() && n.forks() == n.pid());
    }

    #[test]
    fn rootfs_propagation_is_parsed_and_bad_values_are_refused() {
        let with = |v: &str| -> Spec {
            serde_json::from_str(&format!(
                r#"{{"ociVersion":"1.2.0","linux":{{"rootfsPropagation":{v}}}}}"#
            ))
            .unwrap()
        };
        let d: Spec = serde_json::from_str(r#"{"ociVersion":"1.2.0"}"#).unwrap();
        assert_eq!(root_propagation(&d).unwrap(), None);
        assert_eq!(
            root_propagation(&with("\"shared\"")).unwrap().unwrap().0,
            MsFlags::MS_SHARED
        );
        let e = root_propagation(&with("\"sideways\"")).unwrap_err();
        assert!(e.to_string().starts_with("linux.rootfsPropagation"), "{e}");
    }

    #[test]
    fn user_and_time_namespaces_are_new_with_their_maps_and_offsets() {
        let s: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.2.0","linux":{"namespaces":[{"type":"mount"},{"type":"user"},
                {"type":"time"}],
                "uidMappings":[{"containerID":0,"hostID":1000,"size":10}],
                "gidMappings":[{"containerID":0,"hostID":1000,"size":10}],
                "timeOffsets":{"boottime":{"secs":86400}}}}"#,
        )
        .unwrap();
        let n = plan_namespaces(&s, false).unwrap();
        // The user namespace is unshared on its own, first; exec joins it first.
        assert!(!n.unshare.contains(CloneFlags::CLONE_NEWUSER));
        assert!(n.unshare.contains(CLONE_NEWTIME));
        assert_eq!(n.user.as_ref().unwrap().uid_map, "0 1000 10\n");
        assert_eq!(n.time_offsets.as_deref(), Some("boottime 86400 0\n"));
        let names: Vec<_> = n.join.iter().map(|j| j.1).collect();
        assert_eq!(names, ["user", "time", "mnt"]);
        assert!(n.has_user() && n.forks() && !n.pid());
        // A user namespace without maps is refused, naming the field.
        let e = plan_namespaces(&spec_with(r#"[{"type":"user"}]"#), false).unwrap_err();
        assert!(e.to_string().starts_with("linux.uidMappings"), "{e}");
    }

    #[test]
    fn a_new_network_namespace_is_the_vms_own() {
        let n =
            plan_namespaces(&spec_with(r#"[{"type":"network"},{"type":"pid"}]"#), false).unwrap();
        assert!(!n.unshare.contains(CloneFlags::CLONE_NEWNET));
        assert!(n.join.iter().all(|j| j.1 != "net"));
    }

    #[test]
    fn namespace_paths_other_than_network_are_refused() {
        let e = plan_namespaces(
            &spec_with(r#"[{"type":"ipc","path":"/proc/1/ns/ipc"}]"#),
            false,
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("ipc namespace (/proc/1/ns/ipc)"));
    }

    #[test]
    fn a_pod_member_joins_the_pods_namespaces_named_by_path() {
        let spec = spec_with(
            r#"[{"type":"pid"},{"type":"network","path":"/proc/9/ns/net"},
                {"type":"ipc","path":"/proc/9/ns/ipc"},{"type":"uts","path":"/proc/9/ns/uts"},
                {"type":"mount"}]"#,
        );
        let n = plan_namespaces(&spec, true).unwrap();
        let pod: Vec<_> = n.pod.iter().map(|p| p.1).collect();
        assert_eq!(pod, ["ipc", "uts"]);
        assert!(!n.unshare.contains(CloneFlags::CLONE_NEWIPC));
        assert!(n.unshare.contains(CloneFlags::CLONE_NEWPID));
        assert!(n.pod_uts());
        let names: Vec<_> = n.join.iter().map(|j| j.1).collect();
        assert_eq!(names, ["ipc", "uts", "pid", "mnt"]);
        let e = plan_namespaces(
            &spec_with(r#"[{"type":"mount","path":"/proc/9/ns/mnt"}]"#),
            true,
        );
        assert!(e.is_err(), "a pod's mount namespace cannot be shared");
    }
}
