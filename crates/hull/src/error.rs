//! Errors that decide hull's exit code, as docker's: 125 for hull's own failures in `run` and
//! `exec` (1 in the other commands), 126 when the command cannot be executed, 127 when it is
//! not found; otherwise the container process's own code. `main` prints them as one line
//! with their causes ([`chain`]).

/// The command of `run`/`exec` cannot be started in the container.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    /// Not found (exit 127).
    #[error("{0}")]
    NotFound(String),
    /// Found but not executable (exit 126).
    #[error("{0}")]
    NotExecutable(String),
}

impl ExecError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecError::NotFound(_) => 127,
            ExecError::NotExecutable(_) => 126,
        }
    }

    /// Classifies an error message of the runtime (the guest agent reports runc's messages:
    /// `exec: "foo": executable file not found in $PATH`, `… permission denied`).
    pub fn from_runtime_message(msg: &str) -> Option<ExecError> {
        let start = msg.find("exec: \"")?;
        let m = msg[start..].to_string();
        if m.contains("permission denied") {
            Some(ExecError::NotExecutable(m))
        } else if m.contains("executable file not found") || m.contains("no such file or directory")
        {
            Some(ExecError::NotFound(m))
        } else {
            None
        }
    }
}

/// Everything a command can fail with. Module errors keep their own types; the command
/// adds what it was doing ([`Context`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] hull_image::ImageError),
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Tty(#[from] crate::tty::TtyError),
    /// The VM's management API (`hull vm`): unreachable, or it refused (its message).
    #[error(transparent)]
    Api(#[from] hull_api::ClientError),
    /// A flag value or argument that cannot work (nothing was done).
    #[error("{0}")]
    Invalid(String),
    /// Anything else, said in one line.
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// What the command was doing when `source` happened.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
    /// Already reported on stderr (by hull-runtime): exit with this code, print nothing.
    #[error("exit status {0}")]
    Reported(i32),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// The exit code in a command whose own failures exit `default`.
    pub fn exit_code(&self, default: i32) -> i32 {
        match self {
            Error::Exec(e) => e.exit_code(),
            Error::Reported(code) => *code,
            Error::Context { source, .. } => source.exit_code(default),
            _ => default,
        }
    }

    /// True if the message was already printed.
    pub fn reported(&self) -> bool {
        match self {
            Error::Reported(_) => true,
            Error::Context { source, .. } => source.reported(),
            _ => false,
        }
    }
}

/// `.context("what hull was doing")` on any result whose error converts into [`Error`].
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: what.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: f().into(),
            source: Box::new(e.into()),
        })
    }
}

/// One line: the error and its causes, `a: b: c`, a cause left out when the text before
/// already says it.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !m.is_empty() && !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_messages_are_classified() {
        let e = ExecError::from_runtime_message(
            "guest agent: exec: \"foo\": executable file not found in $PATH",
        )
        .unwrap();
        assert_eq!(e.exit_code(), 127);
        assert_eq!(
            e.to_string(),
            "exec: \"foo\": executable file not found in $PATH"
        );
        let e = ExecError::from_runtime_message("exec failed: exec: \"/etc\": permission denied")
            .unwrap();
        assert_eq!(e.exit_code(), 126);
        assert!(ExecError::from_runtime_message("timed out waiting for the guest").is_none());
    }

    #[test]
    fn exit_codes_and_chains() {
        let e: Result<()> = Err(ExecError::NotFound("x".into())).context("starting");
        let e = e.unwrap_err();
        assert_eq!(e.exit_code(125), 127);
        assert_eq!(chain(&e), "starting: x");
        assert_eq!(Error::Invalid("bad".into()).exit_code(125), 125);
        assert_eq!(Error::Reported(3).exit_code(1), 3);
        let io = Error::io("reading f")(std::io::Error::from_raw_os_error(2));
        assert_eq!(
            chain(&io),
            "reading f: No such file or directory (os error 2)"
        );
    }
}
