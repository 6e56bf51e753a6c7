//! The management API's backend (`<state>/api.sock`, served by `hull_api`): each call becomes
//! an [`ApiCall`] event for the monitor's main loop, the one thread that owns QMP and the
//! agent, and waits for its reply with a deadline. A monitor loop or VM that is gone answers
//! `503` at once; [`hull_api::Backend::health`] reads a flag and never blocks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hull_api::{ApiError, Backend, MemoryResize, Metrics, VcpuResize, VmInfo};

use crate::agent::Event;

/// How long a call waits for the main loop (the server answers 504 after its own 60 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(45);
/// How often a waiting call looks at the liveness flag.
const POLL: Duration = Duration::from_millis(100);

/// What the API asks of the main loop.
#[derive(Debug, Clone, Copy)]
pub enum ApiOp {
    Info,
    Metrics,
    Pause,
    Resume,
    ResizeMemory(MemoryResize),
    SetVcpus(VcpuResize),
}

/// What the main loop answers.
#[derive(Debug)]
pub enum ApiAnswer {
    Info(Box<VmInfo>),
    Metrics(Box<Metrics>),
}

/// One API call, handed to the main loop with the way back.
#[derive(Debug)]
pub struct ApiCall {
    pub op: ApiOp,
    pub reply: Sender<Result<ApiAnswer, ApiError>>,
}

/// The monitor's [`Backend`]: forwards every call to the main loop.
pub struct MonitorBackend {
    events: Mutex<Sender<Event>>,
    alive: Arc<AtomicBool>,
}

impl MonitorBackend {
    /// `alive` is cleared by the main loop when the VM is gone or the loop ends.
    pub fn new(events: Sender<Event>, alive: Arc<AtomicBool>) -> Self {
        Self {
            events: Mutex::new(events),
            alive,
        }
    }

    fn gone() -> ApiError {
        ApiError::Unavailable("the VM is gone (QEMU exited or the container ended)".into())
    }

    fn call(&self, op: ApiOp) -> Result<ApiAnswer, ApiError> {
        if !self.alive.load(Ordering::SeqCst) {
            return Err(Self::gone());
        }
        let (tx, rx) = mpsc::channel();
        let sent = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Event::Api(ApiCall { op, reply: tx }));
        if sent.is_err() {
            return Err(Self::gone());
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match rx.recv_timeout(POLL) {
                Ok(r) => return r,
                Err(RecvTimeoutError::Disconnected) => return Err(Self::gone()),
                Err(RecvTimeoutError::Timeout) => {
                    if !self.alive.load(Ordering::SeqCst) {
                        return Err(Self::gone());
                    }
                    if Instant::now() >= deadline {
                        return Err(ApiError::Timeout(format!(
                            "the monitor did not answer within {CALL_TIMEOUT:?}"
                        )));
                    }
                }
            }
        }
    }

    fn info_of(&self, op: ApiOp) -> Result<VmInfo, ApiError> {
        match self.call(op)? {
            ApiAnswer::Info(i) => Ok(*i),
            other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
        }
    }
}

impl Backend for MonitorBackend {
    fn health(&self) -> Result<(), ApiError> {
        match self.alive.load(Ordering::SeqCst) {
            true => Ok(()),
            false => Err(Self::gone()),
        }
    }

    fn info(&self) -> Result<VmInfo, ApiError> {
        self.info_of(ApiOp::Info)
    }

    fn metrics(&self) -> Result<Metrics, ApiError> {
        match self.call(ApiOp::Metrics)? {
            ApiAnswer::Metrics(m) => Ok(*m),
            other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    fn pause(&self) -> Result<VmInfo, ApiError> {
        self.info_of(ApiOp::Pause)
    }

    fn resume(&self) -> Result<VmInfo, ApiError> {
        self.info_of(ApiOp::Resume)
    }

    fn resize_memory(&self, request: MemoryResize) -> Result<VmInfo, ApiError> {
        self.info_of(ApiOp::ResizeMemory(request))
    }

    fn set_vcpus(&self, request: VcpuResize) -> Result<VmInfo, ApiError> {
        self.info_of(ApiOp::SetVcpus(request))
    }
}

/// Proportional set size of `pid` in KiB (`/proc/PID/smaps_rollup`), `None` if it is gone.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `pid` and its children (virtiofsd forks its sandboxed worker), with their names.
pub fn with_children(name: &str, pid: u32) -> Vec<(String, u32)> {
    let mut out = vec![(name.to_owned(), pid)];
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        out.push((name.to_owned(), c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_loop_answers_unavailable_at_once() {
        let (tx, rx) = mpsc::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let b = MonitorBackend::new(tx, alive.clone());
        drop(rx);
        let t = Instant::now();
        assert!(matches!(b.info(), Err(ApiError::Unavailable(_))));
        assert!(t.elapsed() < Duration::from_secs(1));
        alive.store(false, Ordering::SeqCst);
        assert!(matches!(b.health(), Err(ApiError::Unavailable(_))));
    }

    #[test]
    fn a_loop_that_stops_answering_is_noticed_through_the_flag() {
        let (tx, rx) = mpsc::channel::<Event>();
        let alive = Arc::new(AtomicBool::new(true));
        let b = MonitorBackend::new(tx, alive.clone());
        let a = alive.clone();
        let t = std::thread::spawn(move || {
            let _held = rx.recv().unwrap(); // never answered
            a.store(false, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(2));
        });
        let start = Instant::now();
        assert!(matches!(b.info(), Err(ApiError::Unavailable(_))));
        assert!(start.elapsed() < Duration::from_secs(2));
        t.join().unwrap();
    }

    #[test]
    fn pss_of_ourselves_is_read() {
        assert!(pss_kib(std::process::id()).unwrap() > 0);
    }
}
