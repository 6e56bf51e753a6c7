//! Mount option parsing and safe path joining (pure, unit-tested).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

/// The options of one OCI mount, split into mount(2) flags, propagation changes and the data
/// string for the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount call (MS_BIND, MS_REC, MS_RDONLY, MS_NOSUID...).
    pub flags: MsFlags,
    /// Propagation changes, each applied with its own mount call after the mount.
    pub propagation: Vec<MsFlags>,
    /// Everything that is not a flag (`mode=755`, `size=65536k`, `newinstance`...), comma-joined.
    pub data: String,
    /// Mount attributes set on the mount and every mount below it (the `r*` options: `rro`,
    /// `rnosuid`, `rnoexec`, `rnosymfollow`, `ratime`...), with mount_setattr(2).
    pub recursive: AttrChange,
    /// Mount attributes without a mount(2) flag, on the mount itself (`nosymfollow`).
    pub attrs: AttrChange,
}

/// `MOUNT_ATTR_*` bits to set and to clear.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttrChange {
    pub set: u64,
    pub clear: u64,
}

impl AttrChange {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }

    fn apply(&mut self, set: u64, clear: u64) {
        self.set = (self.set & !clear) | set;
        self.clear = (self.clear & !set) | clear;
    }
}

/// `MOUNT_ATTR_*` of <linux/mount.h>.
pub mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    /// The atime bits: changing the atime mode clears them all and sets one value.
    pub const ATIME: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// A recursive mount option (runc's names) as the attribute bits it sets and clears. Atime
/// modes replace the whole atime field, as mount_setattr(2) requires: `rnoatime`,
/// `rstrictatime`/`ratime`/`rnorelatime` (always update), `rrelatime`/`rnostrictatime`.
fn recursive_option(opt: &str) -> Option<(u64, u64)> {
    use attr::*;
    Some(match opt {
        "rro" => (RDONLY, 0),
        "rrw" => (0, RDONLY),
        "rnosuid" => (NOSUID, 0),
        "rsuid" => (0, NOSUID),
        "rnodev" => (NODEV, 0),
        "rdev" => (0, NODEV),
        "rnoexec" => (NOEXEC, 0),
        "rexec" => (0, NOEXEC),
        "rnodiratime" => (NODIRATIME, 0),
        "rdiratime" => (0, NODIRATIME),
        "rnoatime" => (NOATIME, ATIME),
        "rstrictatime" | "ratime" | "rnorelatime" => (STRICTATIME, ATIME),
        "rrelatime" | "rnostrictatime" => (RELATIME, ATIME),
        "rnosymfollow" => (NOSYMFOLLOW, 0),
        "rsymfollow" => (0, NOSYMFOLLOW),
        _ => return None,
    })
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// Whether a bind mount needs a second, remount call to apply flags (ro, nosuid...): a bind
    /// mount ignores everything but MS_BIND|MS_REC.
    pub fn bind_needs_remount(&self) -> bool {
        !(self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)).is_empty()
    }

    /// Flags of the remount that applies a bind mount's options.
    pub fn bind_remount_flags(&self) -> MsFlags {
        (self.flags - MsFlags::MS_REC) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT
    }
}

/// Parses OCI mount options like runc does.
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut flags = MsFlags::empty();
    let mut propagation = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    let mut recursive = AttrChange::default();
    let mut attrs = AttrChange::default();
    for opt in options {
        let opt = opt.as_ref();
        if let Some((set, clear)) = recursive_option(opt) {
            recursive.apply(set, clear);
            continue;
        }
        let (set, clear) = match opt {
            "nosymfollow" => {
                attrs.apply(attr::NOSYMFOLLOW, 0);
                continue;
            }
            "symfollow" => {
                attrs.apply(0, attr::NOSYMFOLLOW);
                continue;
            }
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "mand" | "nomand" => (MsFlags::empty(), MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            // runc-specific (copy the image's content into a tmpfs): not supported, ignored.
            "tmpcopyup" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                if let Some(p) = propagation_flag(other) {
                    propagation.push(p);
                } else if !other.is_empty() {
                    data.push(other);
                }
                continue;
            }
        };
        flags = (flags - clear) | set;
    }
    MountOptions {
        flags,
        propagation,
        data: data.join(","),
        recursive,
        attrs,
    }
}

/// A propagation option (`private`, `rshared`...) as mount(2) flags.
pub fn propagation_flag(opt: &str) -> Option<MsFlags> {
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// What kind of mount an OCI mount entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A bind mount (its source comes from the share).
    Bind,
    /// A file system mount.
    Fs { fstype: String, source: String },
}

/// Classifies a mount by its type and options. `None` when it has neither a type nor `bind`.
pub fn classify(typ: Option<&str>, source: Option<&str>, opts: &MountOptions) -> Option<MountKind> {
    if typ == Some("bind") || opts.is_bind() {
        return Some(MountKind::Bind);
    }
    let typ = typ.filter(|t| !t.is_empty() && *t != "none")?;
    // The guest kernel only has the unified hierarchy.
    if typ == "cgroup" || typ == "cgroup2" {
        return Some(MountKind::Fs {
            fstype: "cgroup2".into(),
            source: "cgroup2".into(),
        });
    }
    let source = source.filter(|s| !s.is_empty()).unwrap_or(typ);
    Some(MountKind::Fs {
        fstype: typ.into(),
        source: source.into(),
    })
}

/// Joins `unsafe_path` (an absolute path inside the container) to `root`, resolving symlinks
/// as if `root` were `/`: the result never leaves `root` (like Go's filepath-securejoin).
/// Components that do not exist are taken as they are.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> io::Result<PathBuf> {
    const MAX_LINKS: u32 = 255;
    let mut todo: VecDeque<OsString> = VecDeque::new();
    push_components(&mut todo, unsafe_path, false);
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            current.pop();
            continue;
        }
        let next = current.join(&part);
        let full = root.join(&next);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&full)?;
                if target.is_absolute() {
                    current = PathBuf::new();
                }
                push_components(&mut todo, &target, true);
            }
            _ => current = next,
        }
    }
    Ok(root.join(current))
}

/// Queues the components of `p` (at the front when `front`), without `/` and `.`.
fn push_components(todo: &mut VecDeque<OsString>, p: &Path, front: bool) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    if front {
        for part in parts.into_iter().rev() {
            todo.push_front(part);
        }
    } else {
        todo.extend(parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> MountOptions {
        parse_options(s)
    }

    #[test]
    fn flags_and_data_are_split() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(o.propagation.is_empty());
        let o = opts(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn later_options_override_earlier_ones() {
        assert_eq!(opts(&["ro", "rw"]).flags, MsFlags::empty());
        assert_eq!(opts(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
        assert_eq!(opts(&["nosuid", "suid", "nodev"]).flags, MsFlags::MS_NODEV);
        assert_eq!(opts(&["relatime", "norelatime"]).flags, MsFlags::empty());
        assert_eq!(opts(&["noatime", "atime"]).flags, MsFlags::empty());
    }

    #[test]
    fn bind_options() {
        let o = opts(&["rbind", "ro", "rprivate"]);
        assert!(o.is_bind());
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(o.bind_needs_remount());
        assert_eq!(
            o.bind_remount_flags(),
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY
        );
        let plain = opts(&["bind", "rw"]);
        assert!(plain.is_bind() && !plain.bind_needs_remount());
        let o = opts(&["bind", "slave", "shared", "runbindable"]);
        assert_eq!(
            o.propagation,
            vec![
                MsFlags::MS_SLAVE,
                MsFlags::MS_SHARED,
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC
            ]
        );
        assert_eq!(
            opts(&["remount", "ro"]).flags,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY
        );
    }

    #[test]
    fn recursive_and_attribute_options() {
        use attr::*;
        let o = opts(&[
            "rbind",
            "rro",
            "rnosuid",
            "rnoexec",
            "nosymfollow",
            "mode=1",
        ]);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(
            o.recursive,
            AttrChange {
                set: RDONLY | NOSUID | NOEXEC,
                clear: 0
            }
        );
        assert_eq!(o.attrs.set, NOSYMFOLLOW);
        assert_eq!(o.data, "mode=1");
        // Later wins; atime modes replace the whole field.
        let o = opts(&["rro", "rrw", "rnoatime", "rrelatime"]);
        assert_eq!(o.recursive.set, RELATIME);
        assert_eq!(o.recursive.clear, RDONLY | ATIME);
        assert!(opts(&["ro"]).recursive.is_empty());
    }

    #[test]
    fn mount_kinds() {
        let none = opts(&[] as &[&str]);
        assert_eq!(
            classify(Some("bind"), Some("/x"), &none),
            Some(MountKind::Bind)
        );
        assert_eq!(
            classify(None, Some("/x"), &opts(&["rbind"])),
            Some(MountKind::Bind)
        );
        assert_eq!(
            classify(Some("proc"), Some("proc"), &none),
            Some(MountKind::Fs {
                fstype: "proc".into(),
                source: "proc".into()
            })
        );
        assert_eq!(
            classify(Some("tmpfs"), None, &none),
            Some(MountKind::Fs {
                fstype: "tmpfs".into(),
                source: "tmpfs".into()
            })
        );
        assert_eq!(
            classify(Some("cgroup"), Some("cgroup"), &none),
            Some(MountKind::Fs {
                fstype: "cgroup2".into(),
                source: "cgroup2".into()
            })
        );
        assert_eq!(classify(None, Some("/x"), &none), None);
    }

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("hull-agent-test-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn secure_join_stays_inside_root() {
        let t = TempDir::new("securejoin");
        let root = &t.0;
        std::fs::create_dir_all(root.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("real/dir", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let j = |p: &str| secure_join(root, Path::new(p));
        assert_eq!(j("/").unwrap(), *root);
        assert_eq!(j("/abs/dir").unwrap(), root.join("real/dir"));
        assert_eq!(j("/escape/passwd").unwrap(), root.join("etc/passwd"));
        assert_eq!(j("/rel/../x").unwrap(), root.join("real/x"));
        assert_eq!(j("/../../a/./b").unwrap(), root.join("a/b"));
        assert_eq!(j("/missing/x").unwrap(), root.join("missing/x"));
        assert_eq!(j("/loop").unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }
}
