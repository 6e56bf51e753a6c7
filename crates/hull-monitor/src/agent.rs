//! The host end of the agent channel: requests with replies, stdio streams, events.
//!
//! One reader thread owns the read half: replies go to whoever waits for that request id, data
//! frames go to the registered sink of their stream, events go to the monitor's event channel.
//! Writers share one `FrameWriter` behind a mutex (whole frames per write).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// An event of the agent, with its place in the queue (freed when the event is dropped).
    Agent(AgentEvent, Queued),
    /// The channel closed or broke: the VM is gone.
    Disconnected(String),
    /// A signal the monitor received.
    Signal(i32),
    /// A request on the control socket (see `control`).
    Control(crate::control::ControlRequest),
    /// A call of the management API (see `api`).
    Api(crate::api::ApiCall),
}

/// The most agent events that may wait in the monitor's queue unhandled. Each is a process's
/// exit, handled at once by the event loop: a guest that sends more is flooding it, and its
/// channel is dropped as broken (the VM is treated as gone), so a guest cannot grow the
/// monitor's memory without bound. Data frames need no such limit: the reader thread writes them
/// to their sinks itself, so a slow reader back-pressures the guest.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// An agent event's place in the monitor's queue, given back when the event is dropped.
#[derive(Debug)]
pub struct Queued(Arc<AtomicUsize>);

impl Queued {
    /// Takes a place, or `None` when `MAX_QUEUED_EVENTS` are queued already.
    fn take(count: &Arc<AtomicUsize>) -> Option<Self> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_QUEUED_EVENTS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type Pending = Arc<Mutex<HashMap<u64, Sender<Result<Reply, AgentError>>>>>;
type Sinks = Arc<Mutex<HashMap<u32, Box<dyn Write + Send>>>>;
/// A lock that outlives a panicked holder: the maps it guards stay usable (a panic is caught by
/// the hook and ends the monitor anyway).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

type ReplyRx = mpsc::Receiver<Result<Reply, AgentError>>;

/// How often [`AgentConn::request_watching`] looks at its watch while it waits.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);

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
        lock(&self.sinks).insert(stream.0, sink);
    }

    /// Forgets the sink of `stream` (closing it), e.g. when its process never started.
    pub fn remove_sink(&self, stream: StreamId) {
        lock(&self.sinks).remove(&stream.0);
    }

    /// Sends a request; the reply comes on the returned channel.
    fn send(&self, request: HostRequest) -> Result<(u64, ReplyRx), RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let json = serde_json::to_vec(&HostMessage { id, request }).map_err(|e| {
            RequestError::Agent(AgentError::new(format!(
                "the request does not serialize: {e}"
            )))
        })?;
        let (tx, rx) = mpsc::channel();
        lock(&self.pending).insert(id, tx);
        if lock(&self.writer).write_control(&json).is_err() {
            lock(&self.pending).remove(&id);
            return Err(RequestError::Gone);
        }
        Ok((id, rx))
    }

    /// Like [`Self::request`], but calls `watch` every [`WATCH_EVERY`] while it waits and gives
    /// up with its answer when it has one (e.g. a backend process that died: a guest request
    /// that needs its file server would otherwise wait for the timeout).
    pub fn request_watching<T>(
        &self,
        request: HostRequest,
        timeout: Duration,
        mut watch: impl FnMut() -> Option<T>,
    ) -> Result<Result<Reply, RequestError>, T> {
        let (id, rx) = match self.send(request) {
            Ok(sent) => sent,
            Err(e) => return Ok(Err(e)),
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left.min(WATCH_EVERY)) {
                Ok(Ok(r)) => return Ok(Ok(r)),
                Ok(Err(e)) => return Ok(Err(RequestError::Agent(e))),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(Err(RequestError::Gone)),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let verdict = watch();
                    if verdict.is_some() || left <= WATCH_EVERY {
                        lock(&self.pending).remove(&id);
                    }
                    if let Some(v) = verdict {
                        return Err(v);
                    }
                    if left <= WATCH_EVERY {
                        return Ok(Err(RequestError::Timeout));
                    }
                }
            }
        }
    }

    /// Sends a request and waits up to `timeout` for its reply.
    pub fn request(&self, request: HostRequest, timeout: Duration) -> Result<Reply, RequestError> {
        match self.request_watching(request, timeout, || None::<std::convert::Infallible>) {
            Ok(reply) => reply,
            Err(never) => match never {},
        }
    }

    /// Sends stdin bytes of a process.
    pub fn send_data(&self, stream: StreamId, bytes: &[u8]) -> Result<(), MonitorError> {
        Ok(lock(&self.writer).write_data(stream.0, bytes)?)
    }

    /// Closes a process's stdin.
    pub fn send_eof(&self, stream: StreamId) -> Result<(), MonitorError> {
        Ok(lock(&self.writer).write_eof(stream.0)?)
    }
}

fn reader_loop(stream: UnixStream, pending: Pending, sinks: Sinks, events: Sender<Event>) {
    let mut r = FrameReader::new(std::io::BufReader::with_capacity(256 * 1024, stream));
    let queued = Arc::new(AtomicUsize::new(0));
    let why = loop {
        match r.read_frame() {
            Ok(None) => break "the agent channel closed".to_string(),
            Err(e) => break format!("agent channel error: {e}"),
            Ok(Some(Frame::Data { stream, bytes })) => {
                let mut s = lock(&sinks);
                if let Some(sink) = s.get_mut(&stream) {
                    // A reader that went away (EPIPE) loses the rest of its stream, like a pipe.
                    if sink.write_all(&bytes).and_then(|_| sink.flush()).is_err() {
                        s.remove(&stream);
                    }
                }
            }
            Ok(Some(Frame::Eof { stream })) => {
                lock(&sinks).remove(&stream);
            }
            Ok(Some(Frame::Control(json))) => match serde_json::from_slice::<AgentMessage>(&json) {
                Ok(AgentMessage::Reply { id, result }) => {
                    if let Some(tx) = lock(&pending).remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                Ok(AgentMessage::Event(ev)) => match Queued::take(&queued) {
                    Some(place) => {
                        let _ = events.send(Event::Agent(ev, place));
                    }
                    None => {
                        break format!(
                            "the agent flooded the monitor with events ({MAX_QUEUED_EVENTS} \
                             unhandled)"
                        )
                    }
                },
                Err(e) => break format!("malformed message from the agent: {e}"),
            },
        }
    };
    lock(&sinks).clear();
    lock(&pending).clear();
    let _ = events.send(Event::Disconnected(why));
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_protocol::{AgentMessage, ExitStatus, FrameWriter};

    fn exited(exec_id: u32) -> Vec<u8> {
        serde_json::to_vec(&AgentMessage::Event(AgentEvent::Exited {
            exec_id,
            status: ExitStatus::Code(0),
            exited_ns: 0,
        }))
        .unwrap()
    }

    /// A guest that sends exit events faster than they are handled fills the queue up to
    /// `MAX_QUEUED_EVENTS`, and is then cut off as broken; handled events free their places.
    #[test]
    fn a_guest_flooding_events_is_cut_off_at_the_queue_limit() {
        let (host, guest) = UnixStream::pair().unwrap();
        let (tx, rx) = mpsc::channel();
        let _conn = AgentConn::start(host, tx).unwrap();
        let mut w = FrameWriter::new(guest);
        // Handled one by one: no limit is reached.
        for id in 0..(MAX_QUEUED_EVENTS as u32 + 10) {
            w.write_control(&exited(id)).unwrap();
            let ev = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert!(matches!(ev, Event::Agent(..)), "{ev:?}");
        }
        // Left in the queue: the reader gives up one event past the limit.
        for id in 0..(MAX_QUEUED_EVENTS as u32 + 1) {
            if w.write_control(&exited(id)).is_err() {
                break; // the reader has gone: its end of the socket is closed
            }
        }
        let mut queued = Vec::new();
        let why = loop {
            match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                ev @ Event::Agent(..) => queued.push(ev),
                Event::Disconnected(why) => break why,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(queued.len(), MAX_QUEUED_EVENTS);
        assert!(why.contains("flooded"), "{why}");
    }
}
