//! A typed QMP client (over the `qapi` crate's generated QMP schema).

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

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
    #[error("migration {status}: {message}")]
    Migration { status: String, message: String },
    #[error("migration not completed within {0:?}")]
    MigrationTimeout(Duration),
}

/// A connected, negotiated QMP session.
pub struct QmpClient {
    stream: UnixStream,
}

impl QmpClient {
    /// Negotiates capabilities on an accepted/connected QMP socket.
    pub fn handshake(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        stream.set_read_timeout(Some(timeout))?;
        // qapi panics when the stream ends before the greeting (a QEMU that exits during
        // startup, e.g. when it cannot allocate the guest's memory): look first.
        if peek_eof(&stream)? {
            return Err(QmpError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "QEMU closed its QMP connection before its greeting",
            )));
        }
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

    /// Turns on `x-ignore-shared`: RAM in a shared file backend is not sent (a template's
    /// memory file is the snapshot's RAM), and on the incoming side not expected. Both sides
    /// need it.
    pub fn ignore_shared_memory(&mut self) -> Result<(), QmpError> {
        let cap = qmp::MigrationCapabilityStatus {
            capability: qmp::MigrationCapability::x_ignore_shared,
            state: true,
        };
        let c = qmp::migrate_set_capabilities {
            capabilities: vec![cap],
        };
        self.exec("migrate-set-capabilities", c).map(drop)
    }

    /// Starts sending the VM's state to `uri` (e.g. `exec:cat > state`).
    pub fn migrate(&mut self, uri: &str) -> Result<(), QmpError> {
        let c = qmp::migrate {
            uri: Some(uri.to_owned()),
            channels: None,
            detach: None,
            resume: None,
        };
        self.exec("migrate", c).map(drop)
    }

    /// Starts loading a VM's state from `uri` (QEMU was started with `-incoming defer`).
    pub fn migrate_incoming(&mut self, uri: &str) -> Result<(), QmpError> {
        let c = qmp::migrate_incoming {
            uri: Some(uri.to_owned()),
            channels: None,
            exit_on_error: None,
        };
        self.exec("migrate-incoming", c).map(drop)
    }

    /// Waits until the migration (either direction) has completed, polling every `every`.
    pub fn wait_migration(&mut self, timeout: Duration, every: Duration) -> Result<(), QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.exec("query-migrate", qmp::query_migrate {})?;
            match info.status {
                Some(qmp::MigrationStatus::completed) => return Ok(()),
                Some(s @ (qmp::MigrationStatus::failed | qmp::MigrationStatus::cancelled)) => {
                    return Err(QmpError::Migration {
                        status: format!("{s:?}"),
                        message: info.error_desc.unwrap_or_else(|| "no reason given".into()),
                    })
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(QmpError::MigrationTimeout(timeout));
            }
            std::thread::sleep(every);
        }
    }

    /// Sets the guest's memory target (`balloon`): the balloon inflates or deflates until the
    /// guest has `bytes` of its RAM. Returns at once; the guest follows asynchronously.
    pub fn balloon(&mut self, bytes: u64) -> Result<(), QmpError> {
        let value = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.exec("balloon", qmp::balloon { value }).map(drop)
    }

    /// The guest's memory as the balloon has it now (`query-balloon`'s `actual`), bytes.
    pub fn balloon_actual(&mut self) -> Result<u64, QmpError> {
        let info = self.exec("query-balloon", qmp::query_balloon {})?;
        Ok(info.actual.max(0) as u64)
    }

    /// Polls the balloon until the guest holds `target_mib` (± 1 MiB) or `timeout` passes;
    /// `Ok(Err(actual_mib))` when it did not get there in time.
    pub fn wait_balloon(
        &mut self,
        target_mib: u64,
        timeout: std::time::Duration,
    ) -> Result<Result<(), u64>, QmpError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let actual = self.balloon_actual()? >> 20;
            if actual.abs_diff(target_mib) <= 1 {
                return Ok(Ok(()));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(Err(actual));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Asks QEMU to exit now.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        self.exec("quit", qmp::quit {}).map(drop)
    }
}

/// Whether the peer closed `stream` without sending anything (waits for the first byte within
/// the stream's read timeout, without consuming it).
fn peek_eof(stream: &UnixStream) -> Result<bool, QmpError> {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: recv(2) with MSG_PEEK into a 1-byte buffer we own; the fd is the stream's,
        // open for the duration of the call.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK,
            )
        };
        match n {
            0 => return Ok(true),
            n if n > 0 => return Ok(false),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(QmpError::Io(e));
                }
            }
        }
    }
}
