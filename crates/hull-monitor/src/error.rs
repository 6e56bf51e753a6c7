//! Errors of the monitor, each naming what failed.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Bundle(#[from] hull_oci::OciError),
    #[error(transparent)]
    State(#[from] hull_state::StateError),
    #[error(transparent)]
    Accel(#[from] hull_qemu::AccelError),
    #[error("{program} not found: {install}")]
    MissingProgram { program: String, install: String },
    #[error("guest asset {path} not found: run the setup command from README.md (or set {env})")]
    MissingAsset { path: PathBuf, env: &'static str },
    #[error("{guest} needs {path}, which is not installed: run scripts/setup.sh --arch {arch} (or set HULL_GUEST_DIR)")]
    MissingArch {
        guest: String,
        path: PathBuf,
        arch: &'static str,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    #[error("{program} exited during startup ({status}); its log {log}: {tail}")]
    ChildDied {
        program: &'static str,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "timed out after {timeout:?} waiting for {what} (accelerator: {accel}); guest console log: {console}"
    )]
    GuestTimeout {
        what: String,
        timeout: Duration,
        accel: String,
        console: PathBuf,
    },
    #[error("the VM went away while {what} (accelerator: {accel}); guest console log: {console}")]
    GuestGone {
        what: String,
        accel: String,
        console: PathBuf,
    },
    #[error("{name}={value:?}: {problem}")]
    Setting {
        name: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error("guest agent: {0}")]
    Agent(String),
    #[error("agent channel")]
    Protocol(#[from] hull_protocol::ProtocolError),
    #[error(transparent)]
    Hook(#[from] hull_oci::hooks::HookError),
    #[error("network")]
    Net(#[from] hull_net::NetError),
    #[error("QEMU monitor (QMP)")]
    Qmp(#[from] hull_qemu::QmpError),
    #[error("VM template {dir}")]
    Template {
        dir: PathBuf,
        #[source]
        source: Box<MonitorError>,
    },
    #[error("restoring the VM from the template state {state} (the template is removed and rebuilt on the next start)")]
    Restore {
        state: PathBuf,
        #[source]
        source: hull_qemu::QmpError,
    },
    #[error("interrupted by signal {0} before the container started")]
    Interrupted(i32),
}

impl MonitorError {
    /// A child process (`program`) died: the last lines of its `log` go in the message.
    pub fn child_died(program: &'static str, status: impl Into<String>, log: PathBuf) -> Self {
        Self::ChildDied {
            program,
            status: status.into(),
            tail: crate::sys::log_tail(&log, 5),
            log,
        }
    }

    pub fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MonitorError {
        let what = what.into();
        move |source| MonitorError::Sys { what, source }
    }

    /// Process exit code for this error (distinct per class; see README "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            MonitorError::Bundle(_) | MonitorError::Setting { .. } => 3,
            MonitorError::MissingProgram { .. }
            | MonitorError::MissingAsset { .. }
            | MonitorError::MissingArch { .. } => 4,
            MonitorError::GuestTimeout { .. } | MonitorError::GuestGone { .. } => 5,
            MonitorError::Interrupted(sig) => 128 + sig,
            _ => 1,
        }
    }
}

impl From<nix::Error> for MonitorError {
    fn from(e: nix::Error) -> Self {
        MonitorError::Sys {
            what: "system call".into(),
            source: e.into(),
        }
    }
}

impl From<crate::devices::DeadBackend> for MonitorError {
    fn from(d: crate::devices::DeadBackend) -> Self {
        Self::child_died(d.program, d.status, d.log)
    }
}
