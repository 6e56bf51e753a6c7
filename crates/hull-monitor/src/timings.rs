//! Phase timestamps of one container start, for the benchmark's breakdown.

use serde::Serialize;

/// Host phases in ms since the monitor started (CLOCK_MONOTONIC), guest ones in guest
/// CLOCK_BOOTTIME ms (time since the guest kernel started).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    /// How the VM started: `clone` (from a template), `clone+build` (the template was built
    /// first), `cold` (booted).
    pub vm_start: String,
    /// Building the template, when this start did.
    pub template_build_ms: f64,
    /// The clone's device state loaded (ms since the monitor started).
    pub restored_ms: f64,
    pub host_prepared_ms: f64,
    pub virtiofsd_spawned_ms: f64,
    pub qemu_spawned_ms: f64,
    pub qmp_ready_ms: f64,
    pub agent_connected_ms: f64,
    pub agent_ready_ms: f64,
    /// The balloon took the memory above the planned size (`org.hull.vm.max_memory_mib`).
    pub balloon_ms: f64,
    pub container_created_ms: f64,
    pub process_started_ms: f64,
    pub process_exited_ms: f64,
    pub teardown_done_ms: f64,
    pub guest_agent_start_ms: f64,
    pub guest_agent_ready_ms: f64,
    pub guest_process_started_ms: f64,
    pub guest_process_exited_ms: f64,
}

pub fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
