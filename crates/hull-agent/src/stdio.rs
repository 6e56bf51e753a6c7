//! A process's stdio: pipes or a pty, the relay threads that send its output to the host and the
//! writer thread that feeds its stdin.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use hull_protocol::StreamId;
use nix::fcntl::OFlag;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::stat::Mode;

use crate::channel::Channel;
use crate::error::{Context, Error, Result};
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
    /// A pty that the child allocates itself once it is in the container's root (like runc:
    /// from the container's devpts, so that the slave is /dev/pts/N there), sending the master
    /// to the agent over `sock`.
    Pty {
        size: Option<(u16, u16)>,
        /// The VM's devpts (O_PATH), used when the container has no usable /dev/ptmx.
        vm_pts: OwnedFd,
        sock: OwnedFd,
    },
}

/// The agent's side of a process's stdio while the process is being started.
pub enum PendingStdio {
    Ready(ParentStdio),
    /// The pty master comes from the child on this socket.
    Pty(OwnedFd),
}

fn pipe() -> Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;
    Ok((File::from(r), File::from(w)))
}

/// Creates the stdio of a new process (a pty is created later, by the child).
pub fn make(
    terminal: bool,
    stdin: bool,
    size: Option<(u16, u16)>,
) -> Result<(PendingStdio, ChildStdio)> {
    if terminal {
        let vm_pts = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open("/dev/pts")
            .ctx(|| "opening /dev/pts".into())?;
        let (parent, child) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "creating a socket pair".into())?;
        let child = ChildStdio::Pty {
            size,
            vm_pts: vm_pts.into(),
            sock: child,
        };
        return Ok((PendingStdio::Pty(parent), child));
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
    Ok((PendingStdio::Ready(parent), child))
}

impl PendingStdio {
    /// Once the child has exec'd: the agent's ends, with the pty master the child sent.
    pub fn finish(self) -> Result<ParentStdio> {
        let sock = match self {
            Self::Ready(p) => return Ok(p),
            Self::Pty(sock) => sock,
        };
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ctx(|| "receiving the pty master from the process".into())?;
        let mut master = None;
        let cmsgs = msg
            .cmsgs()
            .ctx(|| "receiving the pty master from the process".into())?;
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed this fd in our table; nobody else owns
                    // it (extra ones are closed on drop).
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    master.get_or_insert(File::from(fd));
                }
            }
        }
        let master = master.ok_or_else(|| Error::msg("the process sent no pty master"))?;
        let reader = master
            .try_clone()
            .ctx(|| "duplicating the pty master".into())?;
        Ok(ParentStdio {
            stdin: None,
            stdout: reader,
            stderr: None,
            pty: Some(Arc::new(master)),
        })
    }
}

impl ChildStdio {
    /// In the child (a session leader), before it enters the container: pipes become fds 0, 1
    /// and 2 (a pty is installed by [`ChildStdio::install_pty`]).
    pub fn install_pipes(&self) -> Result<()> {
        if let Self::Pipes {
            stdin,
            stdout,
            stderr,
        } = self
        {
            let fds = [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
            for (target, fd) in fds.into_iter().enumerate() {
                sys::dup2(fd, target as i32).ctx(|| format!("setting up fd {target}"))?;
            }
        }
        Ok(())
    }

    /// In the child (a session leader), in the container's root: allocates the pty from the
    /// container's /dev/ptmx (the VM's devpts if that fails), sends the master to the agent and
    /// makes the slave fds 0, 1 and 2 and the controlling terminal. Returns the slave's path in
    /// the container (to bind on /dev/console), if it has one.
    pub fn install_pty(&self) -> Result<Option<PathBuf>> {
        let Self::Pty { size, vm_pts, sock } = self else {
            return Ok(None);
        };
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let (master, in_container) = match nix::fcntl::open("/dev/ptmx", flags, Mode::empty()) {
            Ok(fd) => (fd, true),
            Err(e) => {
                debug!("no pty in the container ({}): using the VM's", e.desc());
                let fd = nix::fcntl::openat(vm_pts.as_fd(), "ptmx", flags, Mode::empty())
                    .ctx(|| "opening a pty master (/dev/ptmx)".into())?;
                (fd, false)
            }
        };
        sys::unlockpt(master.as_fd()).ctx(|| "unlocking the pty".into())?;
        let n = sys::pty_number(master.as_fd()).ctx(|| "naming the pty slave".into())?;
        if let Some((rows, cols)) = size {
            sys::set_winsize(master.as_fd(), *rows, *cols)
                .ctx(|| "setting the console size".into())?;
        }
        let slave = sys::open_pty_peer(master.as_fd())
            .ctx(|| format!("opening the pty slave /dev/pts/{n}"))?;
        send_with_fd(sock.as_fd(), master.as_fd()).ctx(|| "sending the pty master".into())?;
        drop(master);
        for target in 0..3 {
            sys::dup2(slave.as_raw_fd(), target).ctx(|| format!("setting up fd {target}"))?;
        }
        sys::set_controlling_tty(0).ctx(|| "setting the controlling terminal".into())?;
        Ok(in_container.then(|| PathBuf::from(format!("/dev/pts/{n}"))))
    }
}

/// Sends one byte with `fd` attached.
fn send_with_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> nix::Result<()> {
    let raw = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let iov = [IoSlice::new(&[0u8])];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map(drop)
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
