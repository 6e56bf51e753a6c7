//! Passing file descriptors over unix sockets (SCM_RIGHTS): exec's stdio to the monitor, and a
//! terminal's master to an engine's console socket.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Sends `bytes` with `fds` attached in one message.
pub fn send_with_fds(sock: &impl AsRawFd, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)?;
    if n != bytes.len() {
        return Err(std::io::Error::other("short sendmsg"));
    }
    Ok(())
}

/// The most fds one message may carry.
pub const MAX_FDS: usize = 128;

/// Receives up to `buf.len()` bytes and any fds that came with them (they are owned by the
/// caller and close on drop).
pub fn recv_with_fds(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    // A pod member sends its stdio and one mount tree per share (rootfs + bind mounts).
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(std::io::Error::other(format!(
            "more than {MAX_FDS} file descriptors in one message"
        )));
    }
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these fds in our table; nobody else owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds))
}
