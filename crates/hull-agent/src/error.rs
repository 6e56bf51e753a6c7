//! The agent's error type. Errors that reach the host are plain strings naming what failed
//! (mount index and destination, path, errno text), so every error carries its context.

use std::io;

use nix::errno::Errno;

/// An error of the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed: what we were doing, and the errno.
    #[error("{context}: {}", .errno.desc())]
    Sys { context: String, errno: Errno },
    /// Anything else, already in words.
    #[error("{0}")]
    Msg(String),
    /// The spec asks for what the guest cannot do, or for a value its kernel refuses: the host
    /// reports it as an invalid bundle, naming the field.
    #[error("{field}: {problem}")]
    Spec { field: String, problem: String },
    /// The agent channel broke.
    #[error("agent channel: {0}")]
    Protocol(#[from] hull_protocol::ProtocolError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn msg(m: impl Into<String>) -> Self {
        Self::Msg(m.into())
    }

    /// A refusal of the spec's `field` (the host reports an invalid bundle, exit 3).
    pub fn spec(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Spec {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The errno of a failed system call, if this is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Sys { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl From<Error> for hull_protocol::AgentError {
    fn from(e: Error) -> Self {
        match e {
            Error::Spec { field, problem } => hull_protocol::AgentError::invalid(field, problem),
            e => hull_protocol::AgentError::new(e.to_string()),
        }
    }
}

/// The errno of an I/O error, or EIO when it has none.
pub fn io_errno(e: &io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO)
}

/// Adds "what we were doing" to a failed call.
pub trait Context<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|errno| Error::Sys {
            context: f(),
            errno,
        })
    }
}

impl<T> Context<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| match e.raw_os_error() {
            Some(code) => Error::Sys {
                context: f(),
                errno: Errno::from_raw(code),
            },
            None => Error::Msg(format!("{}: {e}", f())),
        })
    }
}

impl<T> Context<T> for Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::Msg(format!("{}: {e}", f())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_errors_read_like_runc() {
        let r: nix::Result<()> = Err(Errno::ENOENT);
        let e = r
            .ctx(|| "mount 3 (/data): creating /run/x".into())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "mount 3 (/data): creating /run/x: No such file or directory"
        );
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        let io: io::Result<()> = Err(io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(
            io.ctx(|| "open /x".into()).unwrap_err().to_string(),
            "open /x: Permission denied"
        );
    }
}
