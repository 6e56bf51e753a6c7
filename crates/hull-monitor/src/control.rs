//! The monitor's control socket (`ctl.sock`): how `hull-runtime start/kill/pause/...` reach the
//! process that owns the VM. One JSON request line, one JSON reply line per connection.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::Event;

/// Requests the runtime CLI sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CtlRequest {
    Start,
    Kill { signal: i32, all: bool },
    Pause,
    Resume,
    Stats,
    Ps,
}

/// Replies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CtlReply {
    Ok,
    Error { message: String },
    Stats { stats: hull_protocol::Stats },
    Ps { pids: Vec<i32> },
}

/// A request handed to the monitor's main loop, with the way back.
#[derive(Debug)]
pub struct ControlRequest {
    pub request: CtlRequest,
    pub reply: Sender<CtlReply>,
}

/// Serves `listener` on a thread, forwarding requests as events.
pub fn serve(listener: UnixListener, events: Sender<Event>) {
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

fn handle(conn: UnixStream, events: Sender<Event>) {
    let mut line = String::new();
    if BufReader::new(&conn).read_line(&mut line).is_err() {
        return;
    }
    let reply = match serde_json::from_str::<CtlRequest>(&line) {
        Ok(request) => {
            let (tx, rx) = mpsc::channel();
            if events
                .send(Event::Control(ControlRequest { request, reply: tx }))
                .is_err()
            {
                CtlReply::Error {
                    message: "container monitor is shutting down".into(),
                }
            } else {
                rx.recv().unwrap_or(CtlReply::Error {
                    message: "container monitor is shutting down".into(),
                })
            }
        }
        Err(e) => CtlReply::Error {
            message: format!("bad control request: {e}"),
        },
    };
    let mut w = &conn;
    let _ = writeln!(
        w,
        "{}",
        serde_json::to_string(&reply).expect("reply serializes")
    );
}

/// Client side: sends one request to the monitor of a container.
pub fn call(sock: &Path, request: &CtlRequest, timeout: Duration) -> std::io::Result<CtlReply> {
    let conn = UnixStream::connect(sock)?;
    conn.set_read_timeout(Some(timeout))?;
    let mut w = &conn;
    writeln!(
        w,
        "{}",
        serde_json::to_string(request).expect("request serializes")
    )?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
