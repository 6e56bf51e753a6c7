//! Terminals for `-t`: a console socket that receives the pty master from hull-runtime (as
//! runc's `--console-socket`), and the relay between that master and the user's terminal
//! (raw mode while it runs, window size passed on).

use std::fs;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    #[error("console socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hull-runtime exited ({0}) before it sent the terminal")]
    NoTerminal(ExitStatus),
    #[error("timed out after {0:?} waiting for the terminal from hull-runtime")]
    Timeout(Duration),
    #[error("relaying the terminal: {0}")]
    Relay(std::io::Error),
}

/// A listening console socket in a private temporary directory (removed on drop).
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<Self, TtyError> {
        let base = std::env::temp_dir();
        let mut last = None;
        for i in 0..100u32 {
            let dir = base.join(format!("hull-tty-{}-{i}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let path = dir.join("console.sock");
                    let listener =
                        UnixListener::bind(&path).map_err(|source| TtyError::Socket {
                            path: path.clone(),
                            source,
                        })?;
                    listener
                        .set_nonblocking(true)
                        .map_err(|source| TtyError::Socket {
                            path: path.clone(),
                            source,
                        })?;
                    return Ok(Self {
                        dir,
                        path,
                        listener,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(source) => return Err(TtyError::Socket { path: dir, source }),
            }
        }
        Err(TtyError::Socket {
            path: base,
            source: last.unwrap_or_else(|| std::io::Error::other("no free name")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the pty master from `child` (a hull-runtime that was given this socket).
    pub fn receive(&self, child: &mut Child, timeout: Duration) -> Result<OwnedFd, TtyError> {
        let deadline = Instant::now() + timeout;
        let sock_err = |source| TtyError::Socket {
            path: self.path.clone(),
            source,
        };
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).map_err(sock_err)?;
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .map_err(sock_err)?;
                    return recv_fd(&stream).map_err(sock_err);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(sock_err(e)),
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(TtyError::NoTerminal(status));
            }
            if Instant::now() >= deadline {
                return Err(TtyError::Timeout(timeout));
            }
            let fd = PollFd::new(self.listener.as_fd(), PollFlags::POLLIN);
            let _ = poll(&mut [fd], PollTimeout::from(50u8));
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Receives one fd (SCM_RIGHTS) from a runc-style console socket message.
fn recv_fd(stream: &UnixStream) -> std::io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(f) = c {
            fds.extend(f);
        }
    }
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        // SAFETY: SCM_RIGHTS gave us these fds; nothing else owns them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if owned.is_empty() {
        return Err(std::io::Error::other("no file descriptor in the message"));
    }
    Ok(owned.swap_remove(0))
}

/// `-i -t` needs our stdin to be a terminal: a pipe's end cannot be passed through a
/// terminal (docker refuses it the same way).
pub fn check_interactive_terminal(interactive: bool, tty: bool) -> Result<(), String> {
    use std::io::IsTerminal;
    if interactive && tty && !std::io::stdin().is_terminal() {
        return Err(
            "the input device is not a TTY: -it needs a terminal (use -i alone for piped input)"
                .into(),
        );
    }
    Ok(())
}

/// Puts a terminal in raw mode until dropped.
pub struct RawMode {
    fd: i32,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin if it is a terminal.
    pub fn stdin() -> Option<RawMode> {
        let fd = std::io::stdin();
        let saved = tcgetattr(&fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd: 0, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: fd 0 stays open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = tcsetattr(fd, SetArg::TCSANOW, &self.saved);
    }
}

/// The size (rows, columns) of our terminal (stdout's, else stdin's), if there is one.
pub fn our_size() -> Option<(u16, u16)> {
    window_size(1)
        .or_else(|| window_size(0))
        .map(|ws| (ws.ws_row, ws.ws_col))
}

fn window_size(fd: i32) -> Option<libc::winsize> {
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(ws)
}

/// Copies between the container's terminal (`master`) and ours until the container side has
/// closed it and `finished()` says the process holding it is gone. `stdin` is forwarded only
/// if `forward_stdin` (our terminal is then raw).
pub fn relay(
    master: OwnedFd,
    forward_stdin: bool,
    mut finished: impl FnMut() -> bool,
) -> Result<(), TtyError> {
    let _raw = if forward_stdin {
        RawMode::stdin()
    } else {
        None
    };
    let mut m = fs::File::from(master);
    let mut out = std::io::stdout();
    let mut stdin_open = forward_stdin;
    let mut last_size = None::<(u16, u16)>;
    let mut buf = vec![0u8; 16 * 1024];
    let mut master_open = true;
    let mut done = false;
    loop {
        // Window size: ours onto the container's terminal.
        if let Some(ws) = window_size(1).or_else(|| window_size(0)) {
            if last_size != Some((ws.ws_row, ws.ws_col)) {
                last_size = Some((ws.ws_row, ws.ws_col));
                // SAFETY: TIOCSWINSZ reads one winsize.
                unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
            }
        }
        done = done || finished();
        if !master_open {
            if done {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(m.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the other side is gone, drain what is left and stop.
        let timeout = if done { 0u8 } else { 100 };
        let n = match poll(&mut fds, PollTimeout::from(timeout)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(TtyError::Relay(e.into())),
        };
        let master_ready = fds[0].revents().unwrap_or(PollFlags::empty());
        let stdin_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        drop(fds);
        if n == 0 && done {
            master_open = false;
            continue;
        }
        if !master_ready.is_empty() {
            match m.read(&mut buf) {
                Ok(0) | Err(_) => master_open = false,
                Ok(k) => {
                    out.write_all(&buf[..k]).map_err(TtyError::Relay)?;
                    out.flush().map_err(TtyError::Relay)?;
                }
            }
        }
        if !stdin_ready.is_empty() {
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(k) => m.write_all(&buf[..k]).map_err(TtyError::Relay)?,
            }
        }
    }
}

/// Copies a pty master to `out` until the container side closes it (for detached containers
/// with a terminal: their log).
pub fn drain_to(master: OwnedFd, out: &mut impl Write) {
    let mut m = fs::File::from(master);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match m.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                if out.write_all(&buf[..k]).is_err() {
                    break;
                }
                let _ = out.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}
