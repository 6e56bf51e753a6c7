//! A process's stdio: pipes or a pty, the relay threads that send its output to the host and the
//! writer thread that feeds its stdin.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use hull_protocol::StreamId;
use nix::fcntl::OFlag;
use nix::pty::{posix_openpt, ptsname_r, unlockpt};

use crate::channel::Channel;
use crate::error::{Context, Result};
use crate::sys;

/// Size of the relays' read buffer.
const RELAY_BUF: usize = 64 * 1024;
/// Stack size of the agent's helper threads (their buffers live on the heap).
pub const THREAD_STACK: usize = 128 * 1024;

/// The agent's ends of a process's stdio.
pub struct ParentStdio {
    /// Write end of the stdin pipe (pipes with stdin only).
    pub stdin: Option<File>,
    /// Read end of stdout, or (a dup of) the pty master.
    pub stdout: File,
    /// Read end of stderr (`None` with a pty: the stream ends at once).
    pub stderr: Option<File>,
    /// The pty master, for stdin and window size changes.
    pub pty: Option<Arc<File>>,
}

/// The process's ends, installed as fds 0, 1 and 2 in the child.
pub enum ChildStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Pty {
        slave: OwnedFd,
        path: PathBuf,
    },
}

fn pipe() -> Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;
    Ok((File::from(r), File::from(w)))
}

/// Creates the stdio of a new process.
pub fn make(
    terminal: bool,
    stdin: bool,
    size: Option<(u16, u16)>,
) -> Result<(ParentStdio, ChildStdio)> {
    if terminal {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .ctx(|| "opening a pty master (/dev/ptmx)".into())?;
        unlockpt(&master).ctx(|| "unlocking the pty".into())?;
        let path = PathBuf::from(ptsname_r(&master).ctx(|| "naming the pty slave".into())?);
        if let Some((rows, cols)) = size {
            sys::set_winsize(master.as_fd(), rows, cols)
                .ctx(|| "setting the console size".into())?;
        }
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)
            .ctx(|| format!("opening the pty slave {}", path.display()))?;
        let master = File::from(OwnedFd::from(master));
        let reader = master
            .try_clone()
            .ctx(|| "duplicating the pty master".into())?;
        let parent = ParentStdio {
            stdin: None,
            stdout: reader,
            stderr: None,
            pty: Some(Arc::new(master)),
        };
        return Ok((
            parent,
            ChildStdio::Pty {
                slave: slave.into(),
                path,
            },
        ));
    }
    let (stdin_r, stdin_w) = if stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        let null = OpenOptions::new()
            .read(true)
            .open("/dev/null")
            .ctx(|| "opening /dev/null".into())?;
        (null, None)
    };
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let parent = ParentStdio {
        stdin: stdin_w,
        stdout: stdout_r,
        stderr: Some(stderr_r),
        pty: None,
    };
    let child = ChildStdio::Pipes {
        stdin: stdin_r.into(),
        stdout: stdout_w.into(),
        stderr: stderr_w.into(),
    };
    Ok((parent, child))
}

impl ChildStdio {
    /// In the child (a session leader): makes these fds 0, 1 and 2; a pty becomes the
    /// controlling terminal.
    pub fn install(&self) -> Result<()> {
        let fds = match self {
            Self::Pipes {
                stdin,
                stdout,
                stderr,
            } => [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
            Self::Pty { slave, .. } => [slave.as_raw_fd(); 3],
        };
        for (target, fd) in fds.into_iter().enumerate() {
            sys::dup2(fd, target as i32).ctx(|| format!("setting up fd {target}"))?;
        }
        if let Self::Pty { .. } = self {
            sys::set_controlling_tty(0).ctx(|| "setting the controlling terminal".into())?;
        }
        Ok(())
    }

    /// The pty slave, to bind on /dev/console.
    pub fn console(&self) -> Option<&Path> {
        match self {
            Self::Pty { path, .. } => Some(path),
            Self::Pipes { .. } => None,
        }
    }
}

/// An output stream being relayed to the host.
pub struct Relay {
    pub stream: StreamId,
    /// Set once the stream's Eof was sent (nothing is sent after it).
    pub closed: Arc<AtomicBool>,
    /// Signalled when the relay thread is done (`None`: no thread).
    pub done: Option<Receiver<()>>,
}

/// Starts a thread that sends everything read from `src` as Data frames of `stream`, then Eof.
pub fn start_relay(chan: Arc<Channel>, stream: StreamId, mut src: File) -> Result<Relay> {
    let closed = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = closed.clone();
    std::thread::Builder::new()
        .name(format!("relay-{}", stream.0))
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let mut buf = vec![0u8; RELAY_BUF];
            loop {
                match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => chan.data(stream, &flag, &buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // EIO is how a pty master reports that the slave side is gone.
                    Err(e) => {
                        if e.raw_os_error() != Some(libc::EIO) {
                            debug!("reading stream {}: {e}", stream.0);
                        }
                        break;
                    }
                }
            }
            chan.eof(stream, &flag);
            let _ = tx.send(());
        })
        .ctx(|| format!("starting the relay of stream {}", stream.0))?;
    Ok(Relay {
        stream,
        closed,
        done: Some(rx),
    })
}

/// A stream that has no data at all (stderr of a pty): its Eof is sent at once.
pub fn empty_stream(chan: &Channel, stream: StreamId) -> Relay {
    let closed = Arc::new(AtomicBool::new(false));
    chan.eof(stream, &closed);
    Relay {
        stream,
        closed,
        done: None,
    }
}

/// What the host sends to a process's stdin.
pub enum StdinMsg {
    Data(Vec<u8>),
    Close,
}

/// Starts the thread that writes stdin data to `dst` (a pipe or pty master), so that the reader
/// of the channel never blocks on a process. Closing: dropping `dst` (for a pipe, the last
/// reference: the process sees EOF).
pub fn start_stdin_writer(dst: Arc<File>, exec_id: u32) -> Result<Sender<StdinMsg>> {
    let (tx, rx) = mpsc::channel::<StdinMsg>();
    std::thread::Builder::new()
        .name(format!("stdin-{exec_id}"))
        .stack_size(THREAD_STACK)
        .spawn(move || {
            while let Ok(StdinMsg::Data(bytes)) = rx.recv() {
                if let Err(e) = (&*dst).write_all(&bytes) {
                    debug!("stdin of exec {exec_id}: {e}");
                    break;
                }
            }
            drop(dst);
        })
        .ctx(|| format!("starting the stdin writer of exec {exec_id}"))?;
    Ok(tx)
}
