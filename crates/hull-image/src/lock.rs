//! Advisory file locks (`flock`), released when the guard drops (or the process dies).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::ImageError;

/// A held lock.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for an exclusive lock on `path` (created if needed).
    pub fn exclusive(path: &Path) -> Result<FileLock, ImageError> {
        Self::take(path, libc::LOCK_EX)
    }

    /// Waits for a shared lock on `path` (created if needed).
    pub fn shared(path: &Path) -> Result<FileLock, ImageError> {
        Self::take(path, libc::LOCK_SH)
    }

    fn take(path: &Path, op: libc::c_int) -> Result<FileLock, ImageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .ctx("open lock file", path)?;
        loop {
            // SAFETY: flock on an fd we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(ImageError::io(format!("lock {}", path.display()), err));
            }
        }
    }

    /// Takes the lock on a blocking thread of the runtime, so that async tasks of this
    /// process waiting on the same lock do not stall the others.
    pub async fn exclusive_async(path: PathBuf) -> Result<FileLock, ImageError> {
        match tokio::task::spawn_blocking(move || FileLock::exclusive(&path)).await {
            Ok(r) => r,
            Err(e) => Err(ImageError::io(
                "lock task",
                std::io::Error::other(e.to_string()),
            )),
        }
    }
}
