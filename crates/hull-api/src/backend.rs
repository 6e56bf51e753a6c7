//! What the server asks of the VM: the monitor implements [`Backend`].

use crate::error::ApiError;
use crate::types::{MemoryResize, Metrics, VcpuResize, VmInfo};

/// One VM, as the API drives it. Implemented by the monitor (QMP + agent).
///
/// The methods are synchronous: the server runs each on tokio's blocking pool, one at a time
/// per server (an async mutex held across the call), so an implementation never sees two
/// calls interleave and may block (on QMP, on the agent) freely. A call that outlives the
/// server's request deadline is answered 504 to its client but keeps the lock until it
/// returns, so the next call still starts after it.
///
/// [`Backend::health`] is the exception: it is called without the lock, so it must not block.
///
/// Contract, for every method: an error changes nothing in the VM; return
/// [`ApiError::Conflict`] for what cannot be met now (less memory than the guest uses, a resize
/// while paused), [`ApiError::OutOfRange`] for more than the VM's maximum,
/// [`ApiError::Unavailable`] as soon as the VM is known to be gone (QEMU exited, a channel
/// closed: never wait for it), [`ApiError::Internal`] otherwise. The server has already
/// refused 0 vCPUs and 0 MiB.
pub trait Backend: Send + Sync {
    /// Whether the VM is alive, without blocking (e.g. a flag the monitor's threads keep).
    /// The default says it is.
    fn health(&self) -> Result<(), ApiError> {
        Ok(())
    }

    /// What the VM is and how it is sized. Must answer while paused (guest fields null).
    fn info(&self) -> Result<VmInfo, ApiError>;

    /// What the VM uses.
    fn metrics(&self) -> Result<Metrics, ApiError>;

    /// Stops the vCPUs; pausing a paused VM succeeds. Returns the VM's info afterwards.
    fn pause(&self) -> Result<VmInfo, ApiError>;

    /// Runs the vCPUs again; resuming a running VM succeeds. Returns the VM's info afterwards.
    fn resume(&self) -> Result<VmInfo, ApiError>;

    /// Gives the guest `memory_mib` MiB (balloon target). Returns the VM's info afterwards.
    fn resize_memory(&self, request: MemoryResize) -> Result<VmInfo, ApiError>;

    /// Puts `vcpus` vCPUs online in the guest. Returns the VM's info afterwards.
    fn set_vcpus(&self, request: VcpuResize) -> Result<VmInfo, ApiError>;
}
