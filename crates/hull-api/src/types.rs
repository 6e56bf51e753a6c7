//! The API's bodies: what the server answers and what it accepts.
//!
//! Responses are plain data; request bodies refuse unknown fields (`deny_unknown_fields`), so
//! a misspelt field is a 400 that names it, never a silently ignored request.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Whether the VM's vCPUs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// The vCPUs run.
    Running,
    /// The vCPUs are stopped (`POST /v1/vm/pause`); the guest does not answer meanwhile.
    Paused,
}

/// How the VM came to life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VmStart {
    /// Restored copy-on-write from a VM template (see ARCHITECTURE.md, "VM templates").
    Clone,
    /// Booted its kernel.
    Cold,
}

/// The VM's vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Vcpus {
    /// vCPUs the guest has online (what `nproc` counts).
    #[schema(minimum = 1)]
    pub online: u32,
    /// vCPUs the VM was started with: the most that can be online.
    #[schema(minimum = 1)]
    pub max: u32,
}

/// The VM's memory, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemoryMib {
    /// RAM the VM was started with: the most the guest can be given.
    pub configured: u64,
    /// What the guest is meant to have: `configured` less the balloon's target size.
    pub target: u64,
    /// `MemTotal` as the guest sees it, or null when the guest cannot answer (paused).
    #[schema(required = true)]
    pub guest_total: Option<u64>,
    /// `MemAvailable` as the guest sees it, or null when the guest cannot answer (paused).
    #[schema(required = true)]
    pub guest_available: Option<u64>,
}

/// What the VM is and how it is sized (`GET /v1/vm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmInfo {
    /// The container's id.
    #[schema(example = "web-1")]
    pub id: String,
    /// QEMU's accelerator.
    #[schema(example = "kvm")]
    pub accelerator: String,
    /// QEMU's machine type.
    #[schema(example = "microvm")]
    pub machine: String,
    /// Whether the vCPUs run.
    pub state: VmState,
    /// vCPUs online and at most.
    pub vcpus: Vcpus,
    /// Memory configured, targeted and seen by the guest.
    pub memory_mib: MemoryMib,
    /// The guest kernel's release.
    #[schema(example = "6.1.0-hull")]
    pub kernel: String,
    /// When the VM started, RFC 3339 in UTC.
    #[schema(format = DateTime, example = "2026-12-02T07:47:50Z")]
    pub started_at: String,
    /// Seconds since the VM started.
    pub uptime_s: u64,
    /// Cloned from a template or booted.
    pub vm_start: VmStart,
}

/// Guest memory as the guest reports it (virtio-balloon statistics), in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GuestMemory {
    /// `MemTotal`.
    pub total_kib: u64,
    /// `MemFree`.
    pub free_kib: u64,
    /// `MemAvailable`.
    pub available_kib: u64,
    /// Page cache (`Cached`), where reported.
    #[schema(required = true)]
    pub disk_caches_kib: Option<u64>,
    /// Swapped in since boot, where reported.
    #[schema(required = true)]
    pub swap_in_kib: Option<u64>,
    /// Swapped out since boot, where reported.
    #[schema(required = true)]
    pub swap_out_kib: Option<u64>,
    /// Major page faults since boot, where reported.
    #[schema(required = true)]
    pub major_faults: Option<u64>,
    /// Minor page faults since boot, where reported.
    #[schema(required = true)]
    pub minor_faults: Option<u64>,
}

/// One host process that serves the VM (QEMU, virtiofsd, passt, the monitor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostProcess {
    /// The process's name.
    #[schema(example = "qemu-system-x86_64")]
    pub name: String,
    /// Its PID.
    pub pid: u32,
    /// Its proportional set size (`/proc/PID/smaps_rollup`), KiB.
    pub pss_kib: u64,
}

/// What the VM costs the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostUsage {
    /// Sum of `processes[].pss_kib`.
    pub pss_kib: u64,
    /// Each process that serves the VM.
    pub processes: Vec<HostProcess>,
}

/// Counters of one block device, since the VM started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockCounters {
    /// QEMU's device name.
    pub device: String,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub read_ops: u64,
    /// Write operations.
    pub write_ops: u64,
}

/// Counters of one network interface as the guest sees it, since the VM started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetCounters {
    /// The interface's name in the guest.
    #[schema(example = "eth0")]
    pub interface: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// What the VM uses (`GET /v1/vm/metrics`). What cannot be read now is null or empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Metrics {
    /// Guest memory, null when the guest cannot answer (paused, no statistics yet).
    #[schema(required = true)]
    pub guest_memory: Option<GuestMemory>,
    /// CPU time the guest spent (all vCPUs, user + system), nanoseconds.
    #[schema(required = true)]
    pub guest_cpu_time_ns: Option<u64>,
    /// What the VM costs the host.
    pub host: HostUsage,
    /// Block devices, where the VM has any.
    pub block: Vec<BlockCounters>,
    /// Network interfaces, where the VM has any.
    pub net: Vec<NetCounters>,
}

/// `PUT /v1/vm/memory`: the memory the guest should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryResize {
    /// MiB the guest should have, at least 1 and at most `memory_mib.configured`.
    #[schema(minimum = 1, example = 512)]
    pub memory_mib: u64,
}

/// `PUT /v1/vm/vcpus`: how many vCPUs the guest should have online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VcpuResize {
    /// vCPUs online, at least 1 and at most `vcpus.max`.
    #[schema(minimum = 1, example = 2)]
    pub vcpus: u32,
}

impl MemoryResize {
    /// What the server checks before the backend sees the request.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.memory_mib == 0 {
            return Err(ApiError::BadRequest("memory_mib must be at least 1".into()));
        }
        Ok(())
    }
}

impl VcpuResize {
    /// What the server checks before the backend sees the request.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.vcpus == 0 {
            return Err(ApiError::BadRequest("vcpus must be at least 1".into()));
        }
        Ok(())
    }
}

/// `GET /v1/health`: the API answers and the VM is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` (a VM that is gone answers 503 instead).
    pub status: HealthStatus,
}

/// The one healthy status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Healthy.
    Ok,
}
