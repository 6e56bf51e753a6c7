//! The API socket: bound where nobody else can reach it, made 0600, then moved into place.
//!
//! `bind(2)` creates the socket file with `0777 & !umask`, and the umask is per process (the
//! monitor has other threads creating files), so the socket is bound in a fresh 0700
//! directory beside its final path, chmodded to 0600 there, and renamed into place: there is
//! no moment at which the final path exists with a wider mode. The rename replaces a stale
//! socket left by a killed monitor.
//!
//! The bind goes through `/proc/self/fd/N/` of the staging directory, so `sun_path`'s 107
//! bytes never limit the final path (engines' state roots plus 64-character ids exceed it);
//! clients with such a path connect the same way or from the directory.

use std::fs::{self, DirBuilder, File, Permissions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::ServeError;

/// The socket file's identity, so that only our own socket is ever removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

/// Binds `path` with mode 0600; the listener is non-blocking, ready for tokio.
pub(crate) fn bind_private(path: &Path) -> Result<(UnixListener, FileId), ServeError> {
    let stage = make_stage(path)?;
    let bound = bind_in(&stage, path);
    // Empty after a successful rename; holds the socket after a failed one.
    let _ = fs::remove_dir_all(&stage);
    bound
}

/// Removes the socket at `path` if it is still the one bound (not a successor's).
pub(crate) fn remove_if_ours(path: &Path, id: FileId) {
    if file_id(path).is_some_and(|found| found == id) {
        let _ = fs::remove_file(path);
    }
}

fn make_stage(path: &Path) -> Result<PathBuf, ServeError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let stage = parent.join(format!(".hull-api.{}.{n}", std::process::id()));
    DirBuilder::new()
        .mode(0o700)
        .create(&stage)
        .map_err(|source| ServeError::Stage {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(stage)
}

fn bind_in(stage: &Path, path: &Path) -> Result<(UnixListener, FileId), ServeError> {
    let staged = stage.join("s");
    let listener = bind_short(stage).map_err(|source| ServeError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    let install = |source| ServeError::Install {
        path: path.to_path_buf(),
        source,
    };
    fs::set_permissions(&staged, Permissions::from_mode(0o600)).map_err(install)?;
    fs::rename(&staged, path).map_err(install)?;
    listener.set_nonblocking(true).map_err(install)?;
    let id = file_id(path).ok_or_else(|| install(std::io::ErrorKind::NotFound.into()))?;
    Ok((listener, id))
}

/// Binds `stage/s` through a short `/proc/self/fd/N/s` path.
fn bind_short(stage: &Path) -> std::io::Result<UnixListener> {
    let dir = File::open(stage)?;
    UnixListener::bind(format!("/proc/self/fd/{}/s", dir.as_raw_fd()))
}

fn file_id(path: &Path) -> Option<FileId> {
    let meta = fs::symlink_metadata(path).ok()?;
    Some(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}
