//! The host end of the agent channel: requests with replies, stdio streams, events.
//!
//! One reader thread owns the read half: replies go to whoever waits for that request id, data
//! frames go to the registered sink of their stream, events go to the monitor's event channel.
//! Writers share one `FrameWriter` behind a mutex (whole frames per write).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hull_protocol::{
    AgentError, AgentEvent, AgentMessage, Frame, FrameReader, FrameWriter, HostMessage,
    HostRequest, Reply, StreamId,
};

use crate::MonitorError;

/// Something the monitor's main loop reacts to.
#[derive(Debug)]
pub enum Event {
    Agent(AgentEvent),
    /// The channel closed or broke: the VM is gone.
    Disconnected(String),
    /// A signal the monitor received.
    Signal(i32),
    /// A request on the control socket (see `control`).
    Control(crate::control::ControlRequest),
    /// A call of the management API (see `api`).
    Api(crate::api::ApiCall),
}

type Pending = Arc<Mutex<HashMap<u64, Sender<Result<Reply, AgentError>>>>>;
type Sinks = Arc<Mutex<HashMap<u32, Box<dyn Write + Send>>>>;

/// A connected agent.
#[derive(Clone)]
pub struct AgentConn {
    writer: Arc<Mutex<FrameWriter<UnixStream>>>,
    pending: Pending,
    sinks: Sinks,
    next_id: Arc<AtomicU64>,
}

/// Why a request did not get a successful reply.
#[derive(Debug)]
pub enum RequestError {
    /// The agent answered with an error.
    Agent(AgentError),
    /// No answer within the deadline.
    Timeout,
    /// The channel is gone.
    Gone,
}

impl AgentConn {
    /// Starts the reader thread; events go to `events`.
    pub fn start(stream: UnixStream, events: Sender<Event>) -> Result<Self, MonitorError> {
        let read_half = stream
            .try_clone()
            .map_err(MonitorError::sys("dup agent socket"))?;
        let conn = Self {
            writer: Arc::new(Mutex::new(FrameWriter::new(stream))),
            pending: Arc::default(),
            sinks: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
        };
        let (pending, sinks) = (conn.pending.clone(), conn.sinks.clone());
        std::thread::Builder::new()
            .name("agent-reader".into())
            .spawn(move || reader_loop(read_half, pending, sinks, events))
            .map_err(MonitorError::sys("spawn agent reader"))?;
        Ok(conn)
    }

    /// Routes the data of `stream` to `sink` (closed on the stream's Eof).
    pub fn add_sink(&self, stream: StreamId, sink: Box<dyn Write + Send>) {
        self.sinks.lock().unwrap().insert(stream.0, sink);
    }

    /// Forgets the sink of `stream` (closing it), e.g. when its process never started.
    pub fn remove_sink(&self, stream: StreamId) {
        self.sinks.lock().unwrap().remove(&stream.0);
    }

    /// Sends a request and waits up to `timeout` for its reply.
    pub fn request(&self, request: HostRequest, timeout: Duration) -> Result<Reply, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let json = serde_json::to_vec(&HostMessage { id, request }).expect("request serializes");
        if self.writer.lock().unwrap().write_control(&json).is_err() {
            self.pending.lock().unwrap().remove(&id);
            return Err(RequestError::Gone);
        }
        match rx.recv_timeout(timeout) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RequestError::Agent(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.pending.lock().unwrap().remove(&id);
                Err(RequestError::Timeout)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(RequestError::Gone),
        }
    }

    /// Sends stdin bytes of a process.
    pub fn send_data(&self, stream: StreamId, bytes: &[u8]) -> Result<(), MonitorError> {
        Ok(self.writer.lock().unwrap().write_data(stream.0, bytes)?)
    }

    /// Closes a process's stdin.
    pub fn send_eof(&self, stream: StreamId) -> Result<(), MonitorError> {
        Ok(self.writer.lock().unwrap().write_eof(stream.0)?)
    }
}

fn reader_loop(stream: UnixStream, pending: Pending, sinks: Sinks, events: Sender<Event>) {
    let mut r = FrameReader::new(std::io::BufReader::with_capacity(256 * 1024, stream));
    let why = loop {
        match r.read_frame() {
            Ok(None) => break "the agent channel closed".to_string(),
            Err(e) => break format!("agent channel error: {e}"),
            Ok(Some(Frame::Data { stream, bytes })) => {
                let mut s = sinks.lock().unwrap();
                if let Some(sink) = s.get_mut(&stream) {
                    // A reader that went away (EPIPE) loses the rest of its stream, like a pipe.
                    if sink.write_all(&bytes).and_then(|_| sink.flush()).is_err() {
                        s.remove(&stream);
                    }
                }
            }
            Ok(Some(Frame::Eof { stream })) => {
                sinks.lock().unwrap().remove(&stream);
            }
            Ok(Some(Frame::Control(json))) => match serde_json::from_slice::<AgentMessage>(&json) {
                Ok(AgentMessage::Reply { id, result }) => {
                    if let Some(tx) = pending.lock().unwrap().remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                Ok(AgentMessage::Event(ev)) => {
                    let _ = events.send(Event::Agent(ev));
                }
                Err(e) => break format!("malformed message from the agent: {e}"),
            },
        }
    };
    sinks.lock().unwrap().clear();
    pending.lock().unwrap().clear();
    let _ = events.send(Event::Disconnected(why));
}
