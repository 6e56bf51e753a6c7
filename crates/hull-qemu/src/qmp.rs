//! A typed QMP client (over the `qapi` crate's generated QMP schema).

use std::os::unix::net::UnixStream;
use std::time::Duration;

use qapi::{qmp, Qmp};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP i/o")]
    Io(#[from] std::io::Error),
    #[error("QMP command {command} failed: {message}")]
    Command {
        command: &'static str,
        message: String,
    },
}

/// A connected, negotiated QMP session.
pub struct QmpClient {
    stream: UnixStream,
}

impl QmpClient {
    /// Negotiates capabilities on an accepted/connected QMP socket.
    pub fn handshake(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        stream.set_read_timeout(Some(timeout))?;
        let mut q = Qmp::from_stream(&stream);
        q.handshake().map_err(|e| QmpError::Command {
            command: "qmp_capabilities",
            message: e.to_string(),
        })?;
        Ok(Self { stream })
    }

    fn exec<C: qapi::Command>(&mut self, name: &'static str, c: C) -> Result<C::Ok, QmpError> {
        let mut q = Qmp::from_stream(&self.stream);
        q.execute(&c).map_err(|e| match e {
            qapi::ExecuteError::Io(io) => QmpError::Io(io),
            other => QmpError::Command {
                command: name,
                message: other.to_string(),
            },
        })
    }

    /// Pauses all vCPUs.
    pub fn stop(&mut self) -> Result<(), QmpError> {
        self.exec("stop", qmp::stop {}).map(drop)
    }

    /// Resumes all vCPUs.
    pub fn cont(&mut self) -> Result<(), QmpError> {
        self.exec("cont", qmp::cont {}).map(drop)
    }

    /// Whether the vCPUs are running.
    pub fn running(&mut self) -> Result<bool, QmpError> {
        Ok(self.exec("query-status", qmp::query_status {})?.running)
    }

    /// Asks QEMU to exit now.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        self.exec("quit", qmp::quit {}).map(drop)
    }
}
