//! Host-side terminals: a pty pair whose master goes to the engine (console socket) and whose
//! slave the monitor relays to the guest's own pty.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::pty::{openpty, Winsize};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

use crate::{fdpass, MonitorError};

/// A pty pair: `master` for the engine, `slave` (raw mode) for the relay.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty, MonitorError> {
    let ws = size.map(|(rows, cols)| Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let p = openpty(ws.as_ref(), None).map_err(|e| MonitorError::sys("openpty")(e.into()))?;
    // The guest's pty does the line discipline (echo, ^C); the host side just passes bytes.
    make_raw(&p.slave)?;
    Ok(Pty {
        master: p.master,
        slave: p.slave,
    })
}

/// Puts a terminal in raw mode.
pub fn make_raw(fd: &impl AsFd) -> Result<(), MonitorError> {
    let mut t = tcgetattr(fd).map_err(|e| MonitorError::sys("tcgetattr")(e.into()))?;
    cfmakeraw(&mut t);
    tcsetattr(fd, SetArg::TCSANOW, &t).map_err(|e| MonitorError::sys("tcsetattr")(e.into()))
}

/// The window size of a terminal (rows, cols).
pub fn window_size(fd: &impl AsRawFd) -> Option<(u16, u16)> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one Winsize into `ws`, which lives for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sends the master to an engine's console socket, as runc does (fd + its name as payload).
pub fn send_to_console_socket(socket: &Path, master: &OwnedFd) -> Result<(), MonitorError> {
    let s = UnixStream::connect(socket).map_err(MonitorError::sys(format!(
        "connect to console socket {}",
        socket.display()
    )))?;
    fdpass::send_with_fds(&s, b"/dev/ptmx", &[master.as_raw_fd()]).map_err(MonitorError::sys(
        format!("send terminal to console socket {}", socket.display()),
    ))
}
