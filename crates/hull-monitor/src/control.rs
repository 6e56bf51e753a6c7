//! The monitor's control socket (`ctl.sock`): how `hull-runtime start/kill/exec/pause/...` reach
//! the process that owns the VM. A client sends one JSON request line (for `exec`, with its
//! stdio fds attached as SCM_RIGHTS) and reads JSON reply lines until the monitor closes the
//! connection: one line for most requests, `started` then `exited` for `exec`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::Event;
use crate::fdpass;

/// Requests the runtime CLI sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CtlRequest {
    Start,
    Kill {
        signal: i32,
        all: bool,
    },
    Pause,
    Resume,
    Stats,
    Ps,
    /// Run another process in the container. Attached fds: stdin, stdout, stderr — or, with a
    /// terminal, the one pty slave.
    Exec {
        process: Box<oci_spec::runtime::Process>,
    },
    /// New window size of an exec'd process's terminal.
    Resize {
        exec_id: u32,
        rows: u16,
        cols: u16,
    },
    /// `update`: write `resources` into the container's cgroup in the guest.
    Update {
        resources: Box<oci_spec::runtime::LinuxResources>,
    },
    /// To the monitor of a pod's VM, from the host process of a later container of the pod
    /// (see `member`): create it in this VM. Attached fds as for `exec`. Replies: `created`,
    /// later `started`, then `exited` (this connection is the member's life).
    CreateMember {
        id: String,
        bundle: std::path::PathBuf,
    },
    /// To the monitor of a pod's VM: `request` for the pod's container `id` (start, kill, exec,
    /// ps, stats...), forwarded by that container's host process from its own `ctl.sock`.
    Member {
        id: String,
        request: Box<CtlRequest>,
    },
}

/// Replies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CtlReply {
    Ok,
    Error {
        message: String,
    },
    Stats {
        stats: hull_protocol::Stats,
    },
    Ps {
        pids: Vec<i32>,
    },
    /// The exec'd process runs (guest PID).
    Started {
        exec_id: u32,
        pid: i32,
    },
    /// The exec'd process ended (shell-style status).
    Exited {
        status: i32,
    },
    /// A pod member was created in the VM: its init has this exec id.
    Created {
        exec_id: u32,
    },
}

/// A request handed to the monitor's main loop, with the way back.
#[derive(Debug)]
pub struct ControlRequest {
    pub request: CtlRequest,
    pub fds: Vec<OwnedFd>,
    /// PID of the connected client (SO_PEERCRED): an exec's host process.
    pub peer_pid: i32,
    /// Every reply line goes here; the connection closes when all senders are dropped.
    pub reply: Sender<CtlReply>,
}

impl From<ControlRequest> for Event {
    fn from(c: ControlRequest) -> Self {
        Event::Control(c)
    }
}

/// Serves `listener` on a thread, forwarding requests as events.
pub fn serve<E: From<ControlRequest> + Send + 'static>(
    listener: UnixListener,
    events: Sender<E>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let events = events.clone();
                std::thread::spawn(move || handle(conn, events));
            }
        })
        .map(drop)
}

/// The longest request line the monitor reads. The biggest request, an exec's process, goes on
/// to the agent in one control frame, which cannot be longer than this either.
pub const MAX_REQUEST_LEN: usize = hull_protocol::MAX_PAYLOAD as usize;

/// The most fds one request may bring (a pod member's stdio and mount trees).
pub const MAX_REQUEST_FDS: usize = fdpass::MAX_FDS;

/// A request line being received: the bytes up to and with the first newline (and whatever
/// came in the same read after it), at most [`MAX_REQUEST_LEN`] bytes without a newline.
#[derive(Debug, Default)]
pub struct RequestLine {
    buf: Vec<u8>,
    complete: bool,
}

impl RequestLine {
    /// Adds received bytes: `Ok(true)` once the line is complete, an error once it is longer
    /// than [`MAX_REQUEST_LEN`] without its newline.
    pub fn push(&mut self, bytes: &[u8]) -> Result<bool, String> {
        if self.complete {
            return Ok(true);
        }
        // Only the new bytes are searched: a line sent a byte at a time stays linear.
        self.complete = bytes.contains(&b'\n');
        if !self.complete && self.buf.len() + bytes.len() > MAX_REQUEST_LEN {
            return Err(format!(
                "control request longer than {MAX_REQUEST_LEN} bytes without a newline"
            ));
        }
        self.buf.extend_from_slice(bytes);
        Ok(self.complete)
    }

    /// The bytes received so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Parses a request line (its newline included) as the socket's server does.
pub fn parse_request(line: &[u8]) -> Result<CtlRequest, serde_json::Error> {
    serde_json::from_slice(line)
}

fn handle<E: From<ControlRequest> + Send + 'static>(conn: UnixStream, events: Sender<E>) {
    let mut w = &conn;
    // A reply is plain data (strings, numbers): serializing it cannot fail; if it did, the
    // client sees the connection close without a reply, as when the monitor exits.
    let mut send = |r: &CtlReply| match serde_json::to_string(r) {
        Ok(line) => writeln!(w, "{line}"),
        Err(e) => Err(std::io::Error::other(e)),
    };
    let (line, fds) = match receive_request(&conn) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(why) => {
            let _ = send(&CtlReply::Error {
                message: format!("bad control request: {why}"),
            });
            return;
        }
    };
    let peer_pid = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
        .map(|c| c.pid())
        .unwrap_or(0);
    match parse_request(line.bytes()) {
        Ok(request) => {
            if let CtlRequest::CreateMember { id, .. } = &request {
                watch_member(&conn, id.clone(), events.clone());
            }
            let (tx, rx) = mpsc::channel();
            let gone = CtlReply::Error {
                message: "container not running".into(),
            };
            let req = ControlRequest {
                request,
                fds,
                peer_pid,
                reply: tx,
            };
            if events.send(E::from(req)).is_err() {
                let _ = send(&gone);
                return;
            }
            let mut any = false;
            for r in rx {
                any = true;
                if send(&r).is_err() {
                    return;
                }
            }
            if !any {
                let _ = send(&gone);
            }
        }
        Err(e) => {
            let _ = send(&CtlReply::Error {
                message: format!("bad control request: {e}"),
            });
        }
    }
}

/// Reads a request line and the fds sent with it: `None` if the client went away first, an
/// error if it sends too much (bytes without a newline, fds).
fn receive_request(conn: &UnixStream) -> Result<Option<(RequestLine, Vec<OwnedFd>)>, String> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut line = RequestLine::default();
    let mut fds = Vec::new();
    loop {
        match fdpass::recv_with_fds(conn, &mut buf) {
            Ok((0, _)) | Err(_) => return Ok(None),
            Ok((n, f)) => {
                fds.extend(f);
                if fds.len() > MAX_REQUEST_FDS {
                    return Err(format!("more than {MAX_REQUEST_FDS} file descriptors"));
                }
                if line.push(&buf[..n])? {
                    return Ok(Some((line, fds)));
                }
            }
        }
    }
}

/// A pod member's `CreateMember` connection is its life: when its host process goes away
/// (SIGKILL included) without the member having ended, the member is killed in the VM (a
/// `kill --all KILL` for it, as `delete --force` would send).
fn watch_member<E: From<ControlRequest> + Send + 'static>(
    conn: &UnixStream,
    id: String,
    events: Sender<E>,
) {
    let Ok(mut watch) = conn.try_clone() else {
        return;
    };
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        // The member's host process never writes after its request: EOF means it is gone.
        while let Ok(n) = std::io::Read::read(&mut watch, &mut byte) {
            if n == 0 {
                break;
            }
        }
        let (reply, _) = mpsc::channel();
        let request = CtlRequest::Member {
            id,
            request: Box::new(CtlRequest::Kill {
                signal: libc::SIGKILL,
                all: true,
            }),
        };
        let _ = events.send(E::from(ControlRequest {
            request,
            fds: Vec::new(),
            peer_pid: 0,
            reply,
        }));
    });
}

/// A client connection to a container's monitor.
pub struct CtlClient {
    conn: UnixStream,
    reader: BufReader<UnixStream>,
}

impl CtlClient {
    /// Connects and sends `request` (with `fds` attached).
    pub fn send(
        sock: &Path,
        request: &CtlRequest,
        fds: &[std::os::fd::RawFd],
    ) -> std::io::Result<Self> {
        let conn = UnixStream::connect(sock)?;
        let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        fdpass::send_with_fds(&conn, &line, fds)?;
        let reader = BufReader::new(conn.try_clone()?);
        Ok(Self { conn, reader })
    }

    /// Next reply line; `None` when the monitor closed the connection.
    pub fn next(&mut self, timeout: Option<Duration>) -> std::io::Result<Option<CtlReply>> {
        self.conn.set_read_timeout(timeout)?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Sends one request and returns its (first) reply.
pub fn call(sock: &Path, request: &CtlRequest, timeout: Duration) -> std::io::Result<CtlReply> {
    let mut c = CtlClient::send(sock, request, &[])?;
    c.next(Some(timeout))?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the monitor closed the connection",
        )
    })
}

/// What the `control_json` fuzz target (`fuzz/fuzz_targets/`) runs, kept here so that the
/// normal test suite replays its corpus through exactly the same code
/// (`tests/fuzz_corpus.rs`). Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::{parse_request, CtlRequest, RequestLine, MAX_REQUEST_LEN};

    /// `data` received on the control socket as the server receives it: the first byte picks
    /// the size of the reads, the rest is what the client sent. The line is accumulated
    /// (bounded) and parsed; a parsed request must encode and parse back to itself.
    pub fn control(data: &[u8]) -> Option<CtlRequest> {
        let (&mode, sent) = data.split_first()?;
        let chunk = 1 + usize::from(mode);
        let mut line = RequestLine::default();
        let mut complete = false;
        for c in sent.chunks(chunk) {
            match line.push(c) {
                Ok(true) => {
                    complete = true;
                    break;
                }
                Ok(false) => {}
                Err(_) => return None,
            }
            assert!(
                line.bytes().len() <= MAX_REQUEST_LEN,
                "unbounded request line"
            );
        }
        if !complete {
            // The client went away before its newline: nothing is parsed.
            return None;
        }
        let request = parse_request(line.bytes()).ok()?;
        let Ok(mut json) = serde_json::to_vec(&request) else {
            panic!("a parsed request does not encode");
        };
        json.push(b'\n');
        match parse_request(&json) {
            Ok(back) => {
                let (a, b) = (serde_json::to_value(&request), serde_json::to_value(&back));
                assert!(
                    matches!((&a, &b), (Ok(a), Ok(b)) if a == b),
                    "request changed through encode/parse: {a:?} {b:?}"
                );
            }
            Err(e) => panic!(
                "a re-encoded request does not parse: {e}: {}",
                String::from_utf8_lossy(&json)
            ),
        }
        Some(request)
    }
}
