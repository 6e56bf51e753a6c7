//! Phase 3: the agent's `Hello` (within the boot deadline of the accelerator), then the
//! guest's network.

use std::time::Duration;

use hull_protocol::{HostRequest, Reply, PROTOCOL_VERSION};
use hull_qemu::Accel;

use super::prepare::Host;
use super::vmm::Vmm;
use super::{env_u64, guest_gone, guest_timeout, Monitor, REQUEST_TIMEOUT};
use crate::agent::RequestError;
use crate::timings::ns_to_ms;
use crate::MonitorError;

pub(super) fn boot_timeout(accel: Accel) -> Duration {
    let default = match accel {
        Accel::Kvm => 20,
        Accel::Tcg => 90,
    };
    Duration::from_secs(env_u64("HULL_BOOT_TIMEOUT_SECS").unwrap_or(default))
}

impl Monitor {
    pub(super) fn boot_handshake(
        &mut self,
        host: &Host,
        vmm: &mut Vmm,
    ) -> Result<(), MonitorError> {
        let accel = host.accel.accel;
        let boot = boot_timeout(accel);
        let hello = HostRequest::Hello {
            version: PROTOCOL_VERSION,
        };
        match vmm.agent.request(hello, boot) {
            Ok(Reply::Hello {
                agent_start_ns,
                agent_ready_ns,
                ..
            }) => {
                self.timings.guest_agent_start_ms = ns_to_ms(agent_start_ns);
                self.timings.guest_agent_ready_ms = ns_to_ms(agent_ready_ns);
            }
            Ok(other) => {
                return Err(MonitorError::Agent(format!(
                    "unexpected reply to hello: {other:?}"
                )))
            }
            Err(RequestError::Timeout) => {
                let what = "the guest agent to boot and answer";
                return Err(guest_timeout(&host.sd, &self.opts.id, accel, what, boot));
            }
            Err(RequestError::Gone) => {
                return Err(guest_gone(
                    &host.sd,
                    &self.opts.id,
                    accel,
                    "booting the guest",
                ))
            }
            Err(RequestError::Agent(e)) => {
                return Err(MonitorError::Agent(format!(
                    "the guest agent in {} refused this host: {}",
                    host.assets.initrd.display(),
                    e.message
                )))
            }
        }
        self.timings.agent_ready_ms = self.ms();
        if vmm.restored {
            self.refresh_clone(host, vmm)?;
        }
        self.initial_balloon(host, vmm)?;
        self.configure_network(host, vmm)
    }

    /// A VM with room to grow (`org.hull.vm.max_memory_mib`) has all of it as RAM; the balloon
    /// takes the difference away before the container starts, so the guest starts with its
    /// planned memory.
    fn initial_balloon(&mut self, host: &Host, vmm: &mut Vmm) -> Result<(), MonitorError> {
        let (planned, max) = (host.plan.memory_mib, host.plan.max_memory_mib);
        if planned >= max {
            return Ok(());
        }
        vmm.qmp.balloon(u64::from(planned) << 20)?;
        let boot = boot_timeout(host.accel.accel);
        if vmm.qmp.wait_balloon(u64::from(planned), boot)?.is_err() {
            let what = format!("the guest to give {} MiB to its balloon", max - planned);
            return Err(guest_timeout(
                &host.sd,
                &self.opts.id,
                host.accel.accel,
                &what,
                boot,
            ));
        }
        self.timings.balloon_ms = self.ms();
        Ok(())
    }

    /// A clone starts with its template's RNG state and clock: fresh host entropy, reseed, time.
    fn refresh_clone(&mut self, host: &Host, vmm: &mut Vmm) -> Result<(), MonitorError> {
        let mut entropy = vec![0u8; 64];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut entropy))
            .map_err(MonitorError::sys("read /dev/urandom"))?;
        let unix_time_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let req = HostRequest::Restored {
            entropy,
            unix_time_ns,
        };
        self.agent_request(host, vmm, req, "refreshing the clone's entropy and clock")
    }

    /// A request during boot that is answered `Ok`; errors say `what` was being done.
    fn agent_request(
        &mut self,
        host: &Host,
        vmm: &mut Vmm,
        req: HostRequest,
        what: &str,
    ) -> Result<(), MonitorError> {
        let accel = host.accel.accel;
        match vmm.agent.request(req, REQUEST_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(RequestError::Agent(e)) => {
                Err(MonitorError::Agent(format!("{what}: {}", e.message)))
            }
            Err(RequestError::Timeout) => Err(guest_timeout(
                &host.sd,
                &self.opts.id,
                accel,
                &format!("the guest agent ({what})"),
                REQUEST_TIMEOUT,
            )),
            Err(RequestError::Gone) => Err(guest_gone(&host.sd, &self.opts.id, accel, what)),
        }
    }

    /// Gives the guest the interfaces' addresses and routes (`lo` is up without asking).
    fn configure_network(&mut self, host: &Host, vmm: &mut Vmm) -> Result<(), MonitorError> {
        if host.network.interfaces.is_empty() {
            return Ok(());
        }
        let req = HostRequest::ConfigureNetwork(Box::new(host.network.clone()));
        self.agent_request(host, vmm, req, "configuring the guest's network")
    }
}
