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
pub fn serve<E: From<ControlRequest> + Send + 'static>(listener: UnixListener, events: Sender<E>) {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let events = events.clone();
                std::thread::spawn(move || handle(conn, events));
            }
        })
        .expect("spawn control thread");
}

fn handle<E: From<ControlRequest> + Send + 'static>(conn: UnixStream, events: Sender<E>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut line = Vec::new();
    let mut fds = Vec::new();
    while !line.contains(&b'\n') {
        match fdpass::recv_with_fds(&conn, &mut buf) {
            Ok((0, _)) | Err(_) => return,
            Ok((n, f)) => {
                line.extend_from_slice(&buf[..n]);
                fds.extend(f);
            }
        }
    }
    let peer_pid = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
        .map(|c| c.pid())
        .unwrap_or(0);
    let mut w = &conn;
    let mut send =
        |r: &CtlReply| writeln!(w, "{}", serde_json::to_string(r).expect("reply serializes"));
    match serde_json::from_slice::<CtlRequest>(&line) {
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
        let mut line = serde_json::to_vec(request).expect("request serializes");
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
