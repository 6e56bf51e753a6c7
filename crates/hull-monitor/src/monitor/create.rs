//! Phase 4: the container prepared in the guest (like runc's `create`), the host's
//! createRuntime/prestart hooks, state `created`, the pid file.

use std::time::Duration;

use hull_oci::Bundle;
use hull_protocol::{BindShare, ContainerConfig, HostRequest};
use hull_state::{ContainerState, Status};
use oci_spec::runtime::Hooks;

use super::prepare::Host;
use super::vmm::Vmm;
use super::{guest_gone, guest_timeout, Monitor, REQUEST_TIMEOUT};
use crate::agent::RequestError;
use crate::{sys, MonitorError};

const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

impl Monitor {
    pub(super) fn create_container(
        &mut self,
        host: &mut Host,
        vmm: &mut Vmm,
    ) -> Result<ContainerState, MonitorError> {
        let bundle = &host.bundle;
        let cfg = container_config(&self.opts.id, bundle, &host.plan, "rootfs", 0);
        // The guest runs the createContainer hooks during create: their time comes on top.
        let create_timeout =
            CREATE_TIMEOUT + hull_oci::hooks::timeout_of(&bundle.spec, Hooks::create_container);
        let accel = host.accel.accel;
        // The guest's create needs the file servers: a backend that dies meanwhile ends the
        // create at once (the agent's mount or file access would hang until the timeout).
        let devices = &mut host.devices;
        let reply = vmm.agent.request_watching(
            HostRequest::CreateContainer(Box::new(cfg)),
            create_timeout,
            || devices.iter_mut().find_map(|d| d.dead_backend()),
        );
        match reply.map_err(MonitorError::from)? {
            Ok(_) => {}
            Err(RequestError::Agent(e)) => return Err(create_error(bundle, e)),
            Err(RequestError::Timeout) => {
                let what = "the guest agent to create the container";
                return Err(guest_timeout(
                    &host.sd,
                    &self.opts.id,
                    accel,
                    what,
                    create_timeout,
                ));
            }
            Err(RequestError::Gone) => {
                let what = "creating the container";
                return Err(guest_gone(&host.sd, &self.opts.id, accel, what));
            }
        }
        self.timings.container_created_ms = self.ms();

        let state = container_state(
            &self.opts.id,
            bundle,
            &host.accel.accel.to_string(),
            host.net_interfaces.clone(),
            Status::Created,
        );
        self.start_timeout =
            REQUEST_TIMEOUT + hull_oci::hooks::timeout_of(&bundle.spec, Hooks::start_container);
        self.poststart = bundle
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().clone())
            .unwrap_or_default();
        host.sd.save(&state)?;
        self.serve_api(host, vmm)?;
        if let Some(p) = &self.opts.pid_file {
            sys::write_pid_file(p, std::process::id() as i32)?;
        }
        Ok(state)
    }
}

/// The agent's refusal of a create: about a spec field (a resource the guest kernel cannot
/// enforce, a value it refuses), it is an invalid bundle (exit 3), like the host's own checks.
fn create_error(bundle: &Bundle, e: hull_protocol::AgentError) -> MonitorError {
    match &e.field {
        Some(field) => MonitorError::Bundle(hull_oci::OciError::Invalid {
            path: bundle.config_path.clone(),
            field: field.clone(),
            problem: e.problem().to_owned(),
        }),
        None => MonitorError::Agent(format!("creating the container: {}", e.message)),
    }
}

/// The container's state as `state` shows it and hooks get it.
pub(crate) fn container_state(
    id: &str,
    bundle: &Bundle,
    accel: &str,
    net_interfaces: Vec<String>,
    status: Status,
) -> ContainerState {
    ContainerState {
        id: id.to_owned(),
        status,
        pid: std::process::id() as i32,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: hull_state::now_rfc3339(),
        owner: String::new(),
        annotations: bundle
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        monitor_pid: std::process::id() as i32,
        exit_status: None,
        accel: accel.to_owned(),
        paused: false,
        netns: bundle.network_namespace().flatten(),
        net_interfaces,
        cgroup: crate::cgroup::of_bundle(bundle).ok().flatten(),
        sandbox: None,
    }
}

/// What the agent needs to set up a container: the spec, where its rootfs is in the rootfs
/// share (`rootfs`), where each bind mount's source is in the volumes share.
pub(super) fn container_config(
    id: &str,
    bundle: &Bundle,
    plan: &hull_oci::VmPlan,
    rootfs: &str,
    init_exec_id: u32,
) -> ContainerConfig {
    ContainerConfig {
        id: id.to_owned(),
        spec: bundle.spec.clone(),
        rootfs: rootfs.to_owned(),
        bundle: bundle.dir.display().to_string(),
        binds: plan
            .shares
            .iter()
            .filter_map(|s| {
                s.mount_index.map(|i| BindShare {
                    mount_index: i,
                    share_path: s.share_path.clone(),
                })
            })
            .collect(),
        init_exec_id,
    }
}
