//! Tap devices through `/dev/net/tun`.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

const TUN_PATH: &str = "/dev/net/tun";

/// Opens a non-persistent tap with the given name (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`).
/// The device exists while a descriptor is open on it. Returns the descriptor (close-on-exec)
/// and the name the kernel gave the device.
pub(crate) fn open_tap(name: &str) -> io::Result<(OwnedFd, String)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN_PATH)?;
    let mut req = ifreq_named(name)?;
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    tun_ioctl(&file, libc::TUNSETIFF, &mut req)?;
    let actual = ifreq_name(&req);
    Ok((file.into(), actual))
}

/// An `ifreq` with `ifr_name` set; fails if the name does not fit `IFNAMSIZ` with its NUL.
fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    // SAFETY: `ifreq` is a plain C struct (arrays and a union of integers/arrays), for which
    // all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req.ifr_name.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `ioctl(fd, request, &mut ifreq)` for the tun requests that take an `ifreq`.
fn tun_ioctl(file: &File, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `file` is an open descriptor of /dev/net/tun for the whole call, and `req` is a
    // valid, exclusively borrowed `ifreq`, which is what TUNSETIFF reads and writes.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_round_trips_the_name() {
        let req = ifreq_named("hulltap0").expect("valid name");
        assert_eq!(ifreq_name(&req), "hulltap0");
    }

    #[test]
    fn rejects_names_that_do_not_fit() {
        assert!(ifreq_named("").is_err());
        assert!(ifreq_named("a-name-of-16-chr").is_err());
        assert!(ifreq_named("nul\0name").is_err());
        assert!(ifreq_named("fifteen-chars-x").is_ok());
    }
}
