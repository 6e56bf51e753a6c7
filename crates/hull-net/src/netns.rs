//! Running code in another network namespace without changing the caller's.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so [`in_netns`] runs the closure on
//! a short-lived thread that enters the namespace first; the caller's thread never moves, and
//! the thread (with its namespace) is gone when `in_netns` returns. Netlink sockets belong to
//! the namespace of the thread that opens them, so the closure must open its own.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::NetError;

/// Runs `f` on a new thread that has joined the network namespace at `path` (e.g.
/// `/run/netns/NAME` or `/proc/PID/ns/net`) and returns its result.
pub fn in_netns<T, F>(path: &Path, f: F) -> Result<T, NetError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let err = |op, source| NetError::Netns {
        path: path.to_owned(),
        op,
        source,
    };
    let file = File::open(path).map_err(|e| err("open", e))?;
    let joined = std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<T> {
                enter_netns(&file)?;
                Ok(f())
            })
            .join()
    });
    match joined {
        Ok(result) => result.map_err(|e| err("setns", e)),
        Err(_) => Err(err("run", io::Error::other("the thread panicked"))),
    }
}

/// Moves the calling thread into the network namespace `ns` refers to.
fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: setns only reads the descriptor, which `ns` keeps open during the call; it
    // changes the calling thread's network namespace, which is what the caller asks for.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
