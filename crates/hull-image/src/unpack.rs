//! Unpacking one layer tar into a directory that overlayfs can use as a lowerdir.
//!
//! Safety: every path is resolved component by component from the layer directory's file
//! descriptor with `openat(O_NOFOLLOW)`, so no symlink is ever followed (neither one from the
//! layer nor one planted by an earlier entry); `..` components and absolute names are refused,
//! hardlink targets are resolved the same way. Symlinks are created as they are (their targets
//! are only ever interpreted inside the container's root).
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` → character device 0/0 `NAME`,
//! `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory. Overlay xattrs carried by the
//! layer itself (`trusted.overlay.*`, `user.overlay.*`) are dropped: only whiteouts set them.
//! Ownership, modes (incl. setuid/setgid/sticky), mtimes, devices, fifos and hardlinks are
//! restored; other xattrs are best effort.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::EntryType;

use crate::compress::decompressed;
use crate::digest::HashingReader;
use crate::error::IoContext;
use crate::ImageError;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// What unpacking measured.
#[derive(Debug)]
pub(crate) struct Unpacked {
    /// sha256 of the uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
    /// Size of the uncompressed tar stream.
    pub size: u64,
}

/// Unpacks the layer `input` (compressed or not) into the existing, empty directory `dest`.
/// `layer` names the layer in errors.
pub(crate) fn unpack_layer(
    input: impl Read,
    dest: &Path,
    layer: &str,
) -> Result<Unpacked, ImageError> {
    let root = open_path_dir(dest).ctx("open layer directory", dest)?;
    let reader = decompressed(input).with_ctx(|| format!("layer {layer}: read"))?;
    let mut hashing = HashingReader::new(reader);
    let mut u = Unpacker {
        root,
        layer,
        dirs: Vec::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive
            .entries()
            .with_ctx(|| format!("layer {layer}: read tar"))?;
        for entry in entries {
            let entry = entry.with_ctx(|| format!("layer {layer}: read tar entry"))?;
            u.entry(entry)?;
        }
    }
    // Hash what follows the end-of-archive marker too: the diff id covers the whole stream.
    io::copy(&mut hashing, &mut io::sink()).with_ctx(|| format!("layer {layer}: read"))?;
    u.finish_dirs();
    let size = hashing.hasher.count;
    Ok(Unpacked {
        diff_id: hashing.hasher.finish(),
        size,
    })
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

struct Unpacker<'a> {
    root: OwnedFd,
    layer: &'a str,
    /// Directories whose mtime is set at the end (adding children changes it).
    dirs: Vec<(Vec<Vec<u8>>, i64)>,
}

impl Unpacker<'_> {
    fn refuse(&self, entry: &[u8], reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeLayerEntry {
            layer: self.layer.to_string(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    fn io_err(&self, entry: &[u8], what: &str, e: io::Error) -> ImageError {
        ImageError::io(
            format!(
                "layer {}: {what} {:?}",
                self.layer,
                String::from_utf8_lossy(entry)
            ),
            e,
        )
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ImageError> {
        let path = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let comps = components(&path).map_err(|r| self.refuse(&path, r))?;
        let meta = self.meta(&mut entry, &path)?;

        let Some((name, parents)) = comps.split_last() else {
            // The layer root itself ("./").
            if kind == EntryType::Directory {
                let fd = self
                    .root
                    .try_clone()
                    .map_err(|e| self.io_err(&path, "open", e))?;
                self.apply_fd_meta(&fd, &meta, &path)?;
                self.dirs.push((Vec::new(), meta.mtime));
            }
            return Ok(());
        };
        let parent = self.walk(parents, true, &path)?;
        let pfd = parent.as_raw_fd();

        // Whiteouts.
        if *name == OPAQUE {
            set_xattr_fd(pfd, c"trusted.overlay.opaque", b"y")
                .map_err(|e| self.io_err(&path, "mark opaque directory", e))?;
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
                return Ok(());
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(self.refuse(&path, "invalid whiteout name"));
            }
            let hidden = cstr(hidden).map_err(|r| self.refuse(&path, r))?;
            remove_at(pfd, &hidden, false).map_err(|e| self.io_err(&path, "replace", e))?;
            mknod_at(pfd, &hidden, libc::S_IFCHR, 0)
                .map_err(|e| self.io_err(&path, "create whiteout for", e))?;
            return Ok(());
        }

        let cname = cstr(name).map_err(|r| self.refuse(&path, r))?;
        match kind {
            EntryType::Directory => {
                remove_at(pfd, &cname, true).map_err(|e| self.io_err(&path, "replace", e))?;
                match mkdir_at(pfd, &cname, 0o700) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(self.io_err(&path, "create directory", e)),
                }
                let fd = open_dir_at(pfd, &cname)
                    .map_err(|e| self.io_err(&path, "open directory", e))?;
                self.apply_fd_meta(&fd, &meta, &path)?;
                self.dirs
                    .push((comps.iter().map(|c| c.to_vec()).collect(), meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_at(pfd, &cname, false).map_err(|e| self.io_err(&path, "replace", e))?;
                // SAFETY: plain openat on a valid fd with a NUL-terminated name.
                let fd = unsafe {
                    libc::openat(
                        pfd,
                        cname.as_ptr(),
                        libc::O_WRONLY
                            | libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        0o600 as libc::c_uint,
                    )
                };
                if fd < 0 {
                    return Err(self.io_err(&path, "create file", io::Error::last_os_error()));
                }
                // SAFETY: fd was just returned by openat and is owned by nobody else.
                let mut file = unsafe { File::from_raw_fd(fd) };
                io::copy(&mut entry, &mut file).map_err(|e| self.io_err(&path, "write", e))?;
                let owned: OwnedFd = file.into();
                self.apply_fd_meta(&owned, &meta, &path)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .ok_or_else(|| self.refuse(&path, "symlink without target"))?;
                let target = cstr(&target).map_err(|r| self.refuse(&path, r))?;
                remove_at(pfd, &cname, false).map_err(|e| self.io_err(&path, "replace", e))?;
                // SAFETY: valid fd and NUL-terminated strings.
                if unsafe { libc::symlinkat(target.as_ptr(), pfd, cname.as_ptr()) } != 0 {
                    return Err(self.io_err(&path, "create symlink", io::Error::last_os_error()));
                }
                chown_at(pfd, &cname, meta.uid, meta.gid)
                    .map_err(|e| self.io_err(&path, "chown", e))?;
                let _ = set_times_at(pfd, &cname, meta.mtime);
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .ok_or_else(|| self.refuse(&path, "hardlink without target"))?;
                let tcomps = components(&target)
                    .map_err(|r| self.refuse(&path, format!("hardlink target: {r}")))?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(self.refuse(&path, "hardlink to the layer root"));
                };
                if tcomps == comps {
                    return Ok(());
                }
                let tparent = self.walk(tparents, false, &path)?;
                let tname = cstr(tname).map_err(|r| self.refuse(&path, r))?;
                remove_at(pfd, &cname, false).map_err(|e| self.io_err(&path, "replace", e))?;
                // SAFETY: valid fds, NUL-terminated names; flags 0: a symlink source is
                // linked itself, never followed.
                let rc = unsafe {
                    libc::linkat(tparent.as_raw_fd(), tname.as_ptr(), pfd, cname.as_ptr(), 0)
                };
                if rc != 0 {
                    return Err(self.io_err(&path, "create hardlink", io::Error::last_os_error()));
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let fmt = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                remove_at(pfd, &cname, false).map_err(|e| self.io_err(&path, "replace", e))?;
                match mknod_at(pfd, &cname, fmt, libc::makedev(major, minor)) {
                    Ok(()) => {}
                    // Without CAP_MKNOD (rootless) devices cannot exist; like other engines, skip.
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) && fmt != libc::S_IFIFO => {
                        return Ok(())
                    }
                    Err(e) => return Err(self.io_err(&path, "create device", e)),
                }
                chown_at(pfd, &cname, meta.uid, meta.gid)
                    .map_err(|e| self.io_err(&path, "chown", e))?;
                chmod_at(pfd, &cname, meta.mode).map_err(|e| self.io_err(&path, "chmod", e))?;
                let _ = set_times_at(pfd, &cname, meta.mtime);
            }
            // Anything else (e.g. Solaris/POSIX extensions) carries no file.
            _ => {}
        }
        Ok(())
    }

    /// Ownership, mode, xattrs, mtime from the header and its PAX records.
    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &[u8],
    ) -> Result<Meta, ImageError> {
        let h = entry.header();
        let mut meta = Meta {
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            mtime: h.mtime().unwrap_or(0) as i64,
            xattrs: Vec::new(),
        };
        let pax = entry
            .pax_extensions()
            .map_err(|e| self.io_err(path, "read PAX header of", e))?;
        if let Some(pax) = pax {
            for ext in pax.flatten() {
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.split('.').next()?.parse::<i64>().ok())
                };
                match key {
                    "uid" => meta.uid = num().map_or(meta.uid, |v| v as u32),
                    "gid" => meta.gid = num().map_or(meta.gid, |v| v as u32),
                    "mtime" => meta.mtime = num().unwrap_or(meta.mtime),
                    _ => {
                        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                            if overlay_xattr(name) {
                                continue;
                            }
                            if let Ok(n) = CString::new(name) {
                                meta.xattrs.push((n, value.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    /// chown, chmod (after chown, which clears setuid), xattrs, mtime on an open file/dir.
    fn apply_fd_meta(&self, fd: &OwnedFd, meta: &Meta, path: &[u8]) -> Result<(), ImageError> {
        let raw = fd.as_raw_fd();
        // SAFETY: fchown/fchmod on a valid fd.
        if unsafe { libc::fchown(raw, meta.uid, meta.gid) } != 0 {
            return Err(self.io_err(path, "chown", io::Error::last_os_error()));
        }
        // SAFETY: as above.
        if unsafe { libc::fchmod(raw, meta.mode as libc::mode_t) } != 0 {
            return Err(self.io_err(path, "chmod", io::Error::last_os_error()));
        }
        for (name, value) in &meta.xattrs {
            // Best effort: the file system or our privileges may not allow this one.
            let _ = set_xattr_fd(raw, name, value);
        }
        let ts = timespecs(meta.mtime);
        // SAFETY: futimens on a valid fd with two timespecs.
        unsafe { libc::futimens(raw, ts.as_ptr()) };
        Ok(())
    }

    /// Opens the directory `comps` below the root without following symlinks, creating
    /// missing directories (root-owned, 0755) when `create`.
    fn walk(&self, comps: &[&[u8]], create: bool, entry: &[u8]) -> Result<OwnedFd, ImageError> {
        let mut cur = self
            .root
            .try_clone()
            .map_err(|e| self.io_err(entry, "open", e))?;
        for c in comps {
            let name = cstr(c).map_err(|r| self.refuse(entry, r))?;
            let fd = match open_dir_at(cur.as_raw_fd(), &name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    match mkdir_at(cur.as_raw_fd(), &name, 0o755) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(self.io_err(entry, "create parent directory of", e)),
                    }
                    open_dir_at(cur.as_raw_fd(), &name)
                        .map_err(|e| self.io_err(entry, "open parent of", e))?
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                    return Err(self.refuse(
                        entry,
                        format!(
                            "path component {:?} is a symlink or not a directory",
                            String::from_utf8_lossy(c)
                        ),
                    ));
                }
                Err(e) => return Err(self.io_err(entry, "open parent of", e)),
            };
            cur = fd;
        }
        Ok(cur)
    }

    /// Sets directory mtimes, deepest last-created first.
    fn finish_dirs(&mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        for (comps, mtime) in dirs.iter().rev() {
            let refs: Vec<&[u8]> = comps.iter().map(|c| c.as_slice()).collect();
            if let Ok(fd) = self.walk(&refs, false, b"") {
                let ts = timespecs(*mtime);
                // SAFETY: futimens on a valid fd.
                unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) };
            }
        }
    }
}

fn overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// Splits an entry name into components; refuses absolute names and `..`.
pub(crate) fn components(path: &[u8]) -> Result<Vec<&[u8]>, String> {
    if path.first() == Some(&b'/') {
        return Err("absolute path".to_string());
    }
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains a '..' component".to_string()),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn cstr(b: &[u8]) -> Result<CString, String> {
    CString::new(b).map_err(|_| "name contains a NUL byte".to_string())
}

fn timespecs(mtime: i64) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    [t, t]
}

fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn fd_result(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a fresh fd returned by the kernel, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn open_path_dir(p: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: NUL-terminated path.
    fd_result(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })
}

fn open_dir_at(parent: RawFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: valid fd, NUL-terminated name.
    fd_result(unsafe {
        libc::openat(
            parent,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })
}

fn mkdir_at(parent: RawFd, name: &CString, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd, NUL-terminated name.
    cvt(unsafe { libc::mkdirat(parent, name.as_ptr(), mode as libc::mode_t) })
}

fn mknod_at(parent: RawFd, name: &CString, fmt: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    // SAFETY: valid fd, NUL-terminated name.
    cvt(unsafe { libc::mknodat(parent, name.as_ptr(), fmt, dev) })
}

fn chown_at(parent: RawFd, name: &CString, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid fd, NUL-terminated name; never follows a symlink.
    cvt(unsafe { libc::fchownat(parent, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
}

fn chmod_at(parent: RawFd, name: &CString, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd, NUL-terminated name. The name was just created by us as a device or
    // fifo (not a symlink), in a directory nothing else writes to.
    cvt(unsafe { libc::fchmodat(parent, name.as_ptr(), mode as libc::mode_t, 0) })
}

fn set_times_at(parent: RawFd, name: &CString, mtime: i64) -> io::Result<()> {
    let ts = timespecs(mtime);
    // SAFETY: valid fd, NUL-terminated name, two timespecs.
    cvt(unsafe {
        libc::utimensat(
            parent,
            name.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

fn set_xattr_fd(fd: RawFd, name: &std::ffi::CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid fd, NUL-terminated name, value pointer/length from a slice.
    cvt(unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

/// Removes `name` in `parent` if it exists, never following a symlink. A directory is kept
/// when `keep_dir` (tar semantics: a directory entry over a directory merges), else removed
/// with its content.
fn remove_at(parent: RawFd, name: &CString, keep_dir: bool) -> io::Result<()> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, NUL-terminated name, valid stat pointer.
    if unsafe { libc::fstatat(parent, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(())
        } else {
            Err(e)
        };
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        if keep_dir {
            return Ok(());
        }
        // The parent fd's /proc link resolves to the directory we hold; remove_dir_all does
        // not follow symlinks inside it.
        let mut p = std::path::PathBuf::from(format!("/proc/self/fd/{parent}"));
        p.push(std::ffi::OsStr::from_bytes(name.to_bytes()));
        return std::fs::remove_dir_all(p);
    }
    // SAFETY: valid fd, NUL-terminated name.
    cvt(unsafe { libc::unlinkat(parent, name.as_ptr(), 0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_escapes() {
        assert_eq!(components(b"./a/b/").unwrap(), vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(components(b"./").unwrap(), Vec::<&[u8]>::new());
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"a/../../x").is_err());
        assert!(components(b"..").is_err());
    }
}
