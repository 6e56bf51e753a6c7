//! A program run on a fresh pseudo-terminal (its controlling terminal, stdin, stdout and
//! stderr), driven like a person at a terminal: send keys, expect output, with deadlines.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hull_testkit::command::cmdline;
use hull_testkit::wait::wait_for;

/// A child process whose controlling terminal is the slave side of a pty we hold the master of.
pub struct Pty {
    cmdline: String,
    child: Child,
    master: File,
    buf: Arc<Mutex<Vec<u8>>>,
    eof: Arc<AtomicBool>,
    exited: bool,
}

fn cvt(r: libc::c_int, what: &str) -> std::io::Result<libc::c_int> {
    if r < 0 {
        let e = std::io::Error::last_os_error();
        Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(r)
    }
}

impl Pty {
    /// Starts `cmd` (taken by value: its copies of the slave must close) in a new session with
    /// an 80x24 pty as controlling terminal and stdio.
    pub fn spawn(mut cmd: Command) -> Self {
        let line = cmdline(&cmd);
        let (mut m, mut s) = (-1, -1);
        let ws = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: valid out-pointers; termios may be null.
        unsafe {
            cvt(
                libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws),
                "openpty",
            )
            .unwrap();
            cvt(libc::fcntl(m, libc::F_SETFD, libc::FD_CLOEXEC), "fcntl").unwrap();
            cvt(libc::fcntl(s, libc::F_SETFD, libc::FD_CLOEXEC), "fcntl").unwrap();
        }
        // SAFETY: openpty returned two fresh fds that we now own.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .env("TERM", "xterm");
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                cvt(libc::setsid(), "setsid")?;
                cvt(libc::ioctl(0, libc::TIOCSCTTY, 0), "TIOCSCTTY")?;
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        drop(cmd); // closes our copies of the slave, so reads see EOF/EIO when the child is done

        let master = File::from(master);
        let buf = Arc::new(Mutex::new(Vec::new()));
        let eof = Arc::new(AtomicBool::new(false));
        let mut reader = master.try_clone().unwrap();
        let (b, e) = (buf.clone(), eof.clone());
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match reader.read(&mut chunk) {
                    // EIO once no process has the slave open any more.
                    Ok(0) | Err(_) => break,
                    Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
            e.store(true, Ordering::SeqCst);
        });
        Self {
            cmdline: line,
            child,
            master,
            buf,
            eof,
            exited: false,
        }
    }

    /// Everything the program wrote to the terminal so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Types `keys` on the terminal.
    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap_or_else(|e| {
            panic!(
                "writing to the pty of `{}`: {e}\n{}",
                self.cmdline,
                self.transcript()
            )
        });
    }

    /// Waits until the transcript contains `needle` (after byte offset `from`); returns the
    /// offset just past it. Panics with the transcript on timeout.
    #[track_caller]
    pub fn expect_from(&self, from: usize, needle: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let found = wait_for(
            &format!("{needle:?} on the terminal"),
            timeout + Duration::from_secs(5),
            || {
                let buf = self.buf.lock().unwrap();
                let hay = &buf[from.min(buf.len())..];
                if let Some(i) = hay
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                {
                    return Some(Some(from + i + needle.len()));
                }
                if Instant::now() >= deadline || self.eof.load(Ordering::SeqCst) {
                    return Some(None);
                }
                None
            },
        );
        found.unwrap_or_else(|| {
            panic!(
                "{needle:?} did not appear on the terminal of `{}` within {timeout:?}; transcript:\n{:?}",
                self.cmdline,
                self.transcript()
            )
        })
    }

    /// [`Pty::expect_from`] the start of the transcript.
    #[track_caller]
    pub fn expect(&self, needle: &str, timeout: Duration) -> usize {
        self.expect_from(0, needle, timeout)
    }

    /// Waits for the program to exit; returns its exit code (128+N if killed by signal N) and
    /// the full transcript. Panics (after killing it) on timeout.
    #[track_caller]
    pub fn wait(&mut self, timeout: Duration) -> (i32, String) {
        let deadline = Instant::now() + timeout;
        let child = &mut self.child;
        let status = wait_for(
            "pty program to exit",
            timeout + Duration::from_secs(5),
            || match child.try_wait() {
                Ok(Some(s)) => Some(Some(s)),
                _ if Instant::now() >= deadline => Some(None),
                _ => None,
            },
        );
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
            panic!(
                "`{}` still running after {timeout:?}; transcript:\n{:?}",
                self.cmdline,
                self.transcript()
            );
        };
        self.exited = true;
        // Let the reader drain what is left (it stops at EOF/EIO).
        let eof = self.eof.clone();
        let drain = Instant::now() + Duration::from_secs(5);
        wait_for("pty drained", Duration::from_secs(10), || {
            (eof.load(Ordering::SeqCst) || Instant::now() >= drain).then_some(())
        });
        let code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        (code, self.transcript())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
