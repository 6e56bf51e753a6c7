//! The host channel: finding the virtio-serial port, waiting for the host, and the shared framed
//! writer.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hull_protocol::{AgentError, AgentEvent, AgentMessage, FrameWriter, Reply, StreamId};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use crate::error::{Error, Result};

const PORTS_DIR: &str = "/sys/class/virtio-ports";

/// Finds the virtio-serial port named `name` and opens its device, polling every `interval`
/// until `timeout` (ports are added asynchronously, possibly after init started).
pub fn open_port(name: &str, interval: Duration, timeout: Duration) -> Result<File> {
    let deadline = Instant::now() + timeout;
    let mut last_err = String::from("no virtio-serial ports");
    loop {
        match try_open_port(name) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => last_err = e,
        }
        if Instant::now() >= deadline {
            return Err(Error::msg(format!(
                "virtio-serial port {name:?} not found within {timeout:?} ({last_err})"
            )));
        }
        std::thread::sleep(interval);
    }
}

fn try_open_port(name: &str) -> std::result::Result<Option<File>, String> {
    let dir = std::fs::read_dir(PORTS_DIR).map_err(|e| format!("{PORTS_DIR}: {e}"))?;
    for entry in dir.flatten() {
        let port_name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if port_name.trim_end() != name {
            continue;
        }
        let dev = Path::new("/dev").join(entry.file_name());
        return match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&dev)
        {
            Ok(f) => {
                debug!("agent channel is {}", dev.display());
                Ok(Some(f))
            }
            // The device node may appear a moment after the sysfs entry.
            Err(e) => Err(format!("{}: {e}", dev.display())),
        };
    }
    Ok(None)
}

/// How long one wait for the host lasts at most: the poll interval should a wake-up be missed.
const HOST_WAIT_MS: u16 = 20;

/// Waits for the host to come to the port. While the host is not connected, reads return 0 and
/// the port polls readable and hung up at once, so a level-triggered poll would spin. This waits
/// edge-triggered instead: epoll reports the port again only after its wait queue was woken,
/// which the virtio-console driver does when the host opens the port (or data comes in).
/// Registered before the first read, so no wake-up is missed between a read that returned 0 and
/// the wait; each wait still ends after `HOST_WAIT_MS` at most.
pub struct HostWait {
    /// `None` if epoll could not be set up: then every wait sleeps `HOST_WAIT_MS`.
    epoll: Option<Epoll>,
}

impl HostWait {
    /// Watches `port` (create it before the first read of the port).
    pub fn new(port: &File) -> Self {
        let epoll = (|| {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
            epoll.add(port.as_fd(), EpollEvent::new(flags, 0))?;
            Ok::<_, nix::Error>(epoll)
        })();
        let epoll = epoll
            .inspect_err(|e| info!("cannot watch the agent port ({e}); polling it instead"))
            .ok();
        Self { epoll }
    }

    /// Returns after the port's next wake-up, or after `HOST_WAIT_MS`.
    pub fn wait(&self) {
        let Some(epoll) = &self.epoll else {
            return std::thread::sleep(Duration::from_millis(HOST_WAIT_MS.into()));
        };
        let mut events = [EpollEvent::empty()];
        if let Err(e) = epoll.wait(&mut events, HOST_WAIT_MS) {
            if e != nix::errno::Errno::EINTR {
                std::thread::sleep(Duration::from_millis(HOST_WAIT_MS.into()));
            }
        }
    }
}

/// The writing half of the channel. Every frame is written whole under one lock.
pub struct Channel {
    writer: Mutex<FrameWriter<File>>,
    broken: AtomicBool,
}

impl Channel {
    pub fn new(port: File) -> Self {
        Self {
            writer: Mutex::new(FrameWriter::new(port)),
            broken: AtomicBool::new(false),
        }
    }

    fn with_writer(
        &self,
        f: impl FnOnce(&mut FrameWriter<File>) -> Result<(), hull_protocol::ProtocolError>,
    ) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f(&mut w) {
            // Log once: a host that went away would otherwise flood the console.
            if !self.broken.swap(true, Ordering::Relaxed) {
                info!("writing to the host failed: {e}");
            }
        }
    }

    pub fn send(&self, msg: &AgentMessage) {
        match serde_json::to_vec(msg) {
            Ok(json) => self.with_writer(|w| w.write_control(&json)),
            Err(e) => info!("cannot encode a message: {e}"),
        }
    }

    pub fn reply(&self, id: u64, result: Result<Reply, AgentError>) {
        self.send(&AgentMessage::Reply { id, result });
    }

    pub fn event(&self, ev: AgentEvent) {
        self.send(&AgentMessage::Event(ev));
    }

    /// Sends output of `stream` unless the stream was already closed.
    pub fn data(&self, stream: StreamId, closed: &AtomicBool, bytes: &[u8]) {
        self.with_writer(|w| {
            if closed.load(Ordering::Acquire) {
                return Ok(());
            }
            w.write_data(stream.0, bytes)
        });
    }

    /// Sends the Eof of `stream`, once.
    pub fn eof(&self, stream: StreamId, closed: &AtomicBool) {
        self.with_writer(|w| {
            if closed.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            w.write_eof(stream.0)
        });
    }
}
