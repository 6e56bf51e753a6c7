//! A container's root file system on the host: an overlayfs mount of the image's layers
//! (shared, read-only) with an upper and work directory private to the container; paths
//! inside it resolved as the container would see them (symlinks never lead out); files
//! written into it; and directory trees removed without ever crossing into another file
//! system.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mounting the container's root file system on {target}: {source}")]
    Mount { target: PathBuf, source: Errno },
    #[error("unmounting {target}: {source}")]
    Unmount { target: PathBuf, source: Errno },
    #[error("layer path {0} contains ':' or ',' which overlayfs cannot take")]
    BadLayerPath(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to remove {0}: another file system is mounted there")]
    MountPointInside(PathBuf),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Mounts overlayfs on `target`: `layers` lowest first (the store's order), `upper` and
/// `work` private to this container.
pub fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RootfsError> {
    for p in layers.iter().map(PathBuf::as_path).chain([upper, work]) {
        if p.as_os_str().as_bytes().iter().any(|b| b":,".contains(b)) {
            return Err(RootfsError::BadLayerPath(p.to_path_buf()));
        }
    }
    // overlayfs wants the uppermost lower layer first.
    let lowers: Vec<&Path> = layers.iter().rev().map(PathBuf::as_path).collect();
    let mount = |lower: &str, extra: &str| {
        let data = format!(
            "lowerdir={lower},upperdir={},workdir={}{extra}",
            upper.display(),
            work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
    };
    let try_both = |lower: &str| match mount(lower, ",index=off") {
        Err(Errno::EINVAL) => mount(lower, ""),
        r => r,
    };
    let absolute = join_paths(lowers.iter().copied());
    // Mount data is one page: a long list of layers is given relative to their common parent.
    let r = if absolute.len() + upper.as_os_str().len() + work.as_os_str().len() < 3900 {
        try_both(&absolute)
    } else {
        let parent = common_parent(&lowers);
        let relative: Vec<&Path> = lowers
            .iter()
            .map(|l| l.strip_prefix(&parent).unwrap_or(l))
            .collect();
        let cwd = std::env::current_dir().map_err(io("current directory", Path::new(".")))?;
        std::env::set_current_dir(&parent).map_err(io("entering", &parent))?;
        let r = try_both(&join_paths(relative.into_iter()));
        let _ = std::env::set_current_dir(cwd);
        r
    };
    r.map_err(|source| RootfsError::Mount {
        target: target.to_path_buf(),
        source,
    })
}

fn join_paths<'a>(paths: impl Iterator<Item = &'a Path>) -> String {
    paths
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn common_parent(paths: &[&Path]) -> PathBuf {
    let Some(first) = paths.first() else {
        return PathBuf::from("/");
    };
    let mut common = first.parent().unwrap_or(Path::new("/")).to_path_buf();
    while !paths.iter().all(|p| p.starts_with(&common)) {
        if !common.pop() {
            break;
        }
    }
    common
}

/// True if something is mounted exactly on `path`.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(path) = fs::canonicalize(path) else {
        return false;
    };
    let Ok(info) = fs::read("/proc/self/mountinfo") else {
        return false;
    };
    info.split(|b| *b == b'\n').any(|line| {
        line.split(|b| *b == b' ')
            .nth(4)
            .is_some_and(|mp| unescape_mountinfo(mp) == path.as_os_str().as_bytes())
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 4 <= s.len() {
            let oct = &s[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Unmounts `target` if something is mounted there (lazily if it is busy).
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    if !is_mounted(target) {
        return Ok(());
    }
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(|source| {
            RootfsError::Unmount {
                target: target.to_path_buf(),
                source,
            }
        }),
        Err(source) => Err(RootfsError::Unmount {
            target: target.to_path_buf(),
            source,
        }),
    }
}

fn components(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(s) => Some(s.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// The host path of `path` as the container sees it in `root`: symlinks are followed with
/// `root` as `/`, and `..` never leaves it. Missing components are kept as they are.
pub fn resolve_in_root(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let mut todo: VecDeque<OsString> = components(path).collect();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let candidate = cur.join(&c);
        let host = root.join(&candidate);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&host)?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                let parts: Vec<OsString> = components(&target).collect();
                for p in parts.into_iter().rev() {
                    todo.push_front(p);
                }
            }
            _ => cur = candidate,
        }
    }
    Ok(root.join(cur))
}

/// Writes `content` to `path` inside `root` as a new regular file, replacing a file or
/// symlink that is there (a symlink is replaced, never followed). The parent directory is
/// created if missing.
pub fn write_file_in_root(root: &Path, path: &str, content: &str) -> Result<(), RootfsError> {
    let p = Path::new(path);
    let parent =
        resolve_in_root(root, p.parent().unwrap_or(Path::new("/"))).map_err(io("resolving", p))?;
    fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
    let name = p.file_name().unwrap_or(OsStr::new(""));
    let host = parent.join(name);
    if let Ok(m) = fs::symlink_metadata(&host) {
        if m.is_dir() {
            return Err(RootfsError::Io {
                what: "writing",
                path: host,
                source: std::io::Error::from_raw_os_error(libc::EISDIR),
            });
        }
        fs::remove_file(&host).map_err(io("replacing", &host))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&host)
        .map_err(io("creating", &host))?;
    f.write_all(content.as_bytes())
        .map_err(io("writing", &host))
}

/// Removes `dir` and everything below it, refusing to descend into another file system
/// (a root file system still mounted must never be emptied through its mount point).
pub fn remove_tree(dir: &Path) -> Result<(), RootfsError> {
    let m = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("inspecting", dir)(e)),
    };
    remove_below(dir, m.dev())?;
    fs::remove_dir(dir).map_err(io("removing", dir))
}

fn remove_below(dir: &Path, dev: u64) -> Result<(), RootfsError> {
    for e in fs::read_dir(dir).map_err(io("reading", dir))? {
        let e = e.map_err(io("reading", dir))?;
        let p = e.path();
        let m = fs::symlink_metadata(&p).map_err(io("inspecting", &p))?;
        if m.is_dir() {
            if m.dev() != dev {
                return Err(RootfsError::MountPointInside(p));
            }
            remove_below(&p, dev)?;
            fs::remove_dir(&p).map_err(io("removing", &p))?;
        } else {
            fs::remove_file(&p).map_err(io("removing", &p))?;
        }
    }
    Ok(())
}

/// Why `args[0]` cannot be executed in `root`, checked like the guest agent does (Go's
/// `exec.LookPath` on `PATH`, runc's messages): `Ok(())` if it can, or if a mount (a volume)
/// may provide it so only the guest can tell.
pub fn check_executable(
    root: &Path,
    name: &str,
    path_env: Option<&str>,
    cwd: &str,
    mounted: &[String],
) -> Result<(), crate::error::ExecError> {
    use crate::error::ExecError;
    let under_mount = |p: &Path| {
        mounted
            .iter()
            .any(|m| p.starts_with(m) || Path::new(m).starts_with(p))
    };
    let executable = |p: &Path| -> Result<(), Errno> {
        let host = resolve_in_root(root, p)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let m = fs::metadata(host)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        if m.is_dir() || m.mode() & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        Ok(())
    };
    if name.contains('/') {
        let p = Path::new(cwd).join(name);
        if under_mount(&p) {
            return Ok(());
        }
        return match executable(&p) {
            Ok(()) => Ok(()),
            Err(Errno::EACCES) => Err(ExecError::NotExecutable(format!(
                "exec: \"{name}\": permission denied"
            ))),
            Err(e) => Err(ExecError::NotFound(format!(
                "exec: \"{name}\": stat {name}: {}",
                e.desc().to_lowercase()
            ))),
        };
    }
    if !name.is_empty() {
        for dir in path_env.unwrap_or("").split(':') {
            let dir = if dir.is_empty() { cwd } else { dir };
            let candidate = Path::new(cwd).join(dir).join(name);
            if under_mount(&candidate) || executable(&candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(ExecError::NotFound(format!(
        "exec: \"{name}\": executable file not found in $PATH"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn symlinks_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::create_dir_all(r.join("etc")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/etc/../../../../etc/real", r.join("etc/resolv.conf")).unwrap();
        symlink("../../..", r.join("usr/bin/up")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/bin/sh")).unwrap(),
            r.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/etc/resolv.conf")).unwrap(),
            r.join("etc/real")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/bin/up/etc")).unwrap(),
            r.join("etc")
        );
        symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in_root(r, Path::new("/loop")).is_err());
    }

    #[test]
    fn writing_replaces_a_symlink_without_following_it() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::write(&outside, "host file").unwrap();
        let r = d.path().join("root");
        fs::create_dir_all(r.join("etc")).unwrap();
        symlink(&outside, r.join("etc/resolv.conf")).unwrap();
        write_file_in_root(&r, "/etc/resolv.conf", "nameserver 10.0.2.3\n").unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "host file");
        assert_eq!(
            fs::read_to_string(r.join("etc/resolv.conf")).unwrap(),
            "nameserver 10.0.2.3\n"
        );
        write_file_in_root(&r, "/new/dir/file", "x").unwrap();
        assert!(r.join("new/dir/file").is_file());
    }

    #[test]
    fn executables_are_looked_up_like_the_agent() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::write(r.join("bin/busybox"), "").unwrap();
        fs::set_permissions(r.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("busybox", r.join("bin/sh")).unwrap();
        fs::write(r.join("bin/data"), "").unwrap();
        let path = Some("/usr/bin:/bin");
        assert!(check_executable(r, "sh", path, "/", &[]).is_ok());
        assert!(check_executable(r, "/bin/sh", path, "/", &[]).is_ok());
        let e = check_executable(r, "nope", path, "/", &[]).unwrap_err();
        assert_eq!(e.exit_code(), 127);
        assert!(e.to_string().contains("executable file not found in $PATH"));
        let e = check_executable(r, "/bin/data", path, "/", &[]).unwrap_err();
        assert_eq!(e.exit_code(), 126);
        assert_eq!(
            check_executable(r, "/nope", path, "/", &[])
                .unwrap_err()
                .exit_code(),
            127
        );
        // A volume may provide it: only the guest can tell.
        assert!(check_executable(r, "/opt/tool", path, "/", &["/opt".into()]).is_ok());
    }

    #[test]
    fn trees_are_removed_and_mountinfo_is_unescaped() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        fs::create_dir_all(t.join("a/b")).unwrap();
        fs::write(t.join("a/b/f"), "x").unwrap();
        symlink("/etc", t.join("a/etc")).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        assert!(Path::new("/etc").is_dir());
        assert_eq!(unescape_mountinfo(br"/a\040b\134c"), b"/a b\\c");
        assert!(is_mounted(Path::new("/proc")));
        assert!(!is_mounted(d.path()));
    }
}
