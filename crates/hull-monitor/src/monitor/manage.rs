//! The management API's calls, answered by the main loop (the thread that owns QMP and the
//! agent): VM info, metrics, pause/resume, memory (balloon target) and vCPUs (guest CPUs put
//! online/offline by the agent). See `crate::api` for the server side.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hull_api::{
    ApiError, ApiServer, GuestMemory, HostProcess, HostUsage, MemoryMib, Metrics, Vcpus, VmInfo,
    VmStart, VmState,
};
use hull_protocol::{GuestStatus, HostRequest, Reply};
use hull_qemu::QmpError;
use hull_state::{ContainerState, StateDir};

use super::prepare::Host;
use super::vmm::Vmm;
use super::Monitor;
use crate::agent::RequestError;
use crate::api::{pss_kib, ApiAnswer, ApiCall, ApiOp, MonitorBackend};
use crate::{log, MonitorError};

/// The guest's answer to a status request (it reads three /proc files).
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Putting CPUs online or offline (stop_machine in the guest; slow under TCG).
const CPUS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a resize waits for the balloon to reach its target.
const BALLOON_TIMEOUT: Duration = Duration::from_secs(30);
/// What the guest keeps available after the balloon inflated.
const HEADROOM_MIB: u64 = 32;

/// The API server and its liveness flag. Dropping it clears the flag first (calls waiting on
/// the main loop answer 503), then stops the server and removes `api.sock`: it is dropped
/// before the state directory goes (the first field of [`Host`]; explicitly at teardown).
pub struct ApiHandle {
    alive: Arc<AtomicBool>,
    server: Option<ApiServer>,
}

impl Drop for ApiHandle {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
        drop(self.server.take());
    }
}

/// What the API reports that does not change, and what the monitor set.
pub(super) struct Facts {
    alive: Arc<AtomicBool>,
    configured_mib: u64,
    target_mib: u64,
    max_vcpus: u32,
    /// The last count the guest reported (answered while paused).
    online_vcpus: u32,
    kernel: String,
    started_at: String,
    started: Instant,
    vm_start: VmStart,
    accel: String,
    /// The VM's host processes besides QEMU (virtiofsd, passt) and the monitor.
    host_procs: Vec<(String, u32)>,
}

impl Facts {
    /// The VM is gone: calls answer 503 from now on.
    pub(super) fn gone(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

fn qmp_error(e: QmpError) -> ApiError {
    match e {
        QmpError::Io(e) => ApiError::Unavailable(format!("QEMU's QMP connection failed: {e}")),
        other => ApiError::Internal(other.to_string()),
    }
}

fn agent_error(e: RequestError) -> ApiError {
    match e {
        RequestError::Agent(e) => ApiError::Internal(format!("the guest agent: {}", e.message)),
        RequestError::Timeout => ApiError::Timeout("the guest agent did not answer in time".into()),
        RequestError::Gone => ApiError::Unavailable("the guest agent's channel is closed".into()),
    }
}

fn guest_status(vm: &Vmm, req: HostRequest, timeout: Duration) -> Result<GuestStatus, ApiError> {
    match vm.agent.request(req, timeout) {
        Ok(Reply::GuestStatus(s)) => Ok(s),
        Ok(other) => Err(ApiError::Internal(format!(
            "unexpected reply from the guest agent: {other:?}"
        ))),
        Err(e) => Err(agent_error(e)),
    }
}

impl Monitor {
    /// Serves `<state>/api.sock` from now on (the create phase) until teardown.
    pub(super) fn serve_api(&mut self, host: &mut Host, vm: &Vmm) -> Result<(), MonitorError> {
        let alive = Arc::new(AtomicBool::new(true));
        let backend = Arc::new(MonitorBackend::new(host.ev_tx.clone(), alive.clone()));
        let path = host.sd.path("api.sock");
        let server = hull_api::serve(&path, backend).map_err(|e| MonitorError::Sys {
            what: format!("serve the management API on {}", path.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        let (kernel, online) = match guest_status(vm, HostRequest::GuestStatus, STATUS_TIMEOUT) {
            Ok(s) => (s.kernel_release, s.cpus_online),
            Err(e) => {
                log::debug(&format!("guest status at create: {e}"));
                (String::new(), host.plan.vcpus)
            }
        };
        let age = Duration::from_secs_f64(self.ms() / 1000.0);
        let since_epoch = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::now())
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut host_procs = vec![("hull-monitor".to_owned(), std::process::id())];
        host_procs.extend(host.devices.iter().flat_map(|d| d.host_pids()));
        self.facts = Some(Facts {
            alive: alive.clone(),
            configured_mib: u64::from(host.plan.max_memory_mib),
            target_mib: u64::from(host.plan.memory_mib),
            max_vcpus: host.plan.max_vcpus,
            online_vcpus: online,
            kernel,
            started_at: hull_state::rfc3339(since_epoch.as_secs() as i64, 0),
            started: Instant::now().checked_sub(age).unwrap_or(Instant::now()),
            vm_start: if vm.restored {
                VmStart::Clone
            } else {
                VmStart::Cold
            },
            accel: host.accel.accel.to_string(),
            host_procs,
        });
        host.api = Some(ApiHandle {
            alive,
            server: Some(server),
        });
        Ok(())
    }

    /// Answers one API call.
    pub(super) fn api_call(
        &mut self,
        vm: &mut Vmm,
        state: &mut ContainerState,
        sd: &StateDir,
        call: ApiCall,
    ) {
        let r = self.api_op(vm, state, sd, call.op);
        if let Err(e) = &r {
            log::debug(&format!("API {:?}: {e}", call.op));
        }
        let _ = call.reply.send(r);
    }

    fn api_op(
        &mut self,
        vm: &mut Vmm,
        state: &mut ContainerState,
        sd: &StateDir,
        op: ApiOp,
    ) -> Result<ApiAnswer, ApiError> {
        let Some(f) = self.facts.as_mut() else {
            return Err(ApiError::Unavailable("the VM is not created yet".into()));
        };
        let info = |f: &mut Facts, vm: &Vmm, paused: bool, guest: Option<GuestStatus>| {
            let guest = match (guest, paused) {
                (Some(g), _) => Some(g),
                (None, true) => None,
                // What the guest cannot tell now (an agent timeout) is null.
                (None, false) => match guest_status(vm, HostRequest::GuestStatus, STATUS_TIMEOUT) {
                    Ok(g) => Some(g),
                    Err(e @ ApiError::Unavailable(_)) => return Err(e),
                    Err(_) => None,
                },
            };
            Ok(ApiAnswer::Info(Box::new(vm_info(
                f,
                &self.opts.id,
                paused,
                guest,
            ))))
        };
        match op {
            ApiOp::Info => info(f, vm, state.paused, None),
            ApiOp::Metrics => {
                let guest = match state.paused {
                    true => None,
                    false => Some(guest_status(vm, HostRequest::GuestStatus, STATUS_TIMEOUT)?),
                };
                Ok(ApiAnswer::Metrics(Box::new(metrics(f, vm, guest))))
            }
            ApiOp::Pause | ApiOp::Resume => {
                let pause = matches!(op, ApiOp::Pause);
                if state.paused != pause {
                    match pause {
                        true => vm.qmp.stop(),
                        false => vm.qmp.cont(),
                    }
                    .map_err(qmp_error)?;
                    state.paused = pause;
                    let _ = sd.save(state);
                }
                info(f, vm, pause, None)
            }
            ApiOp::SetVcpus(r) => {
                if r.vcpus > f.max_vcpus {
                    return Err(ApiError::OutOfRange(format!(
                        "vcpus {} is above the VM's maximum of {} (annotation {})",
                        r.vcpus,
                        f.max_vcpus,
                        hull_oci::ANNOTATION_MAX_VCPUS
                    )));
                }
                if state.paused {
                    return Err(ApiError::Conflict(
                        "the VM is paused: resume it first".into(),
                    ));
                }
                let req = HostRequest::SetOnlineCpus { online: r.vcpus };
                let g = guest_status(vm, req, CPUS_TIMEOUT)?;
                info(f, vm, false, Some(g))
            }
            ApiOp::ResizeMemory(r) => {
                let m = r.memory_mib;
                if m > f.configured_mib {
                    return Err(ApiError::OutOfRange(format!(
                        "memory_mib {m} is above the VM's configured {} MiB (start the \
                         container with annotation {} for more)",
                        f.configured_mib,
                        hull_oci::ANNOTATION_MAX_MEMORY_MIB
                    )));
                }
                if state.paused {
                    return Err(ApiError::Conflict(
                        "the VM is paused: resume it first".into(),
                    ));
                }
                if m < f.target_mib {
                    let g = guest_status(vm, HostRequest::GuestStatus, STATUS_TIMEOUT)?;
                    let available = g.mem_available_kib / 1024;
                    let shrink = f.target_mib - m;
                    if shrink + HEADROOM_MIB > available {
                        let least = f.target_mib.saturating_sub(available) + HEADROOM_MIB;
                        return Err(ApiError::Conflict(format!(
                            "the guest has {available} MiB of its {} MiB available: \
                             memory_mib {m} is below what it uses (at least {least} MiB, \
                             keeping {HEADROOM_MIB} MiB free)",
                            f.target_mib
                        )));
                    }
                }
                if m != f.target_mib {
                    vm.qmp.balloon(m << 20).map_err(qmp_error)?;
                    f.target_mib = m;
                    wait_for_balloon(vm, m)?;
                }
                info(f, vm, false, None)
            }
        }
    }
}

/// Waits until the balloon holds what the target asks (the guest follows asynchronously). A
/// guest that is slow to follow is not an error: the target stays set.
fn wait_for_balloon(vm: &mut Vmm, target_mib: u64) -> Result<(), ApiError> {
    if let Err(actual) = vm
        .qmp
        .wait_balloon(target_mib, BALLOON_TIMEOUT)
        .map_err(qmp_error)?
    {
        log::info(&format!(
            "the balloon has not reached {target_mib} MiB within {BALLOON_TIMEOUT:?} \
             (guest at {actual} MiB)"
        ));
    }
    Ok(())
}

fn vm_info(f: &mut Facts, id: &str, paused: bool, guest: Option<GuestStatus>) -> VmInfo {
    if let Some(g) = &guest {
        f.online_vcpus = g.cpus_online;
        if f.kernel.is_empty() {
            f.kernel = g.kernel_release.clone();
        }
    }
    VmInfo {
        id: id.to_owned(),
        accelerator: f.accel.clone(),
        machine: "microvm".into(),
        state: if paused {
            VmState::Paused
        } else {
            VmState::Running
        },
        vcpus: Vcpus {
            online: f.online_vcpus.max(1),
            max: f.max_vcpus,
        },
        memory_mib: MemoryMib {
            configured: f.configured_mib,
            target: f.target_mib,
            guest_total: guest.as_ref().map(|g| g.mem_total_kib / 1024),
            guest_available: guest.as_ref().map(|g| g.mem_available_kib / 1024),
        },
        kernel: f.kernel.clone(),
        started_at: f.started_at.clone(),
        uptime_s: f.started.elapsed().as_secs(),
        vm_start: f.vm_start,
    }
}

fn metrics(f: &Facts, vm: &Vmm, guest: Option<GuestStatus>) -> Metrics {
    let qemu = ("qemu-system-x86_64".to_owned(), vm.qemu.id());
    let processes: Vec<HostProcess> = std::iter::once(&qemu)
        .chain(f.host_procs.iter())
        .filter_map(|(name, pid)| {
            Some(HostProcess {
                name: name.clone(),
                pid: *pid,
                pss_kib: pss_kib(*pid)?,
            })
        })
        .collect();
    Metrics {
        guest_memory: guest.as_ref().map(|g| GuestMemory {
            total_kib: g.mem_total_kib,
            free_kib: g.mem_free_kib,
            available_kib: g.mem_available_kib,
            disk_caches_kib: Some(g.cached_kib),
            swap_in_kib: None,
            swap_out_kib: None,
            major_faults: g.major_faults,
            minor_faults: g.minor_faults,
        }),
        guest_cpu_time_ns: guest.as_ref().map(|g| g.cpu_time_ns),
        host: HostUsage {
            pss_kib: processes.iter().map(|p| p.pss_kib).sum(),
            processes,
        },
        block: Vec::new(),
        net: Vec::new(),
    }
}
