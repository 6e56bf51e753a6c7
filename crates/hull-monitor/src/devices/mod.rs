//! The VM's devices, each a host backend plus what QEMU gets for it, built from the plan.
//!
//! Every device kind is one module implementing [`VmDevice`]; [`from_plan`] lists the devices
//! of one container's VM. The monitor walks that list in its phases: `stage` (host files,
//! before any backend), `start_backend` (daemons, sockets, taps), `add_to` (QEMU's command
//! line), `dead_backend` (a backend that died), `stop` (after QEMU has exited). A new device
//! is one new module plus one line in [`from_plan`].

mod balloon;
mod fs;
mod net;
mod passt;
mod serial;
mod user_net;

use std::io::IsTerminal;
use std::os::fd::RawFd;
use std::path::PathBuf;

use hull_oci::{FsCache, NetBackend, VmPlan};
use hull_qemu::QemuCommand;
use hull_state::StateDir;

use crate::assets::Assets;
use crate::MonitorError;

pub use net::{placeholder_mac, NetSetup};
pub use user_net::guest_config as user_net_config;

/// What the devices' host sides may use.
pub struct HostCtx<'a> {
    pub sd: &'a StateDir,
    pub assets: &'a Assets,
    pub plan: &'a VmPlan,
}

/// A backend process that exited while QEMU still needed it.
#[derive(Debug)]
pub struct DeadBackend {
    pub program: &'static str,
    pub status: String,
    pub log: PathBuf,
}

/// One device of the VM: its host side and its part of QEMU's command line.
pub trait VmDevice: Send {
    /// Host files the backend serves (before any backend starts).
    fn stage(&mut self, _ctx: &HostCtx) -> Result<(), MonitorError> {
        Ok(())
    }
    /// Starts the host side: daemons, listening sockets, taps.
    fn start_backend(&mut self, _ctx: &HostCtx) -> Result<(), MonitorError> {
        Ok(())
    }
    /// Adds the device's chardevs, netdevs and devices.
    fn add_to(&self, q: &mut QemuCommand);
    /// File descriptors QEMU must inherit (at the same numbers).
    fn qemu_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }
    /// `Some` if a backend process has exited.
    fn dead_backend(&mut self) -> Option<DeadBackend> {
        None
    }
    /// Stops the host side once QEMU has exited.
    fn stop(&mut self) {}
    /// The host processes of the backend (name, PID), for the VM's host usage.
    fn host_pids(&self) -> Vec<(String, u32)> {
        Vec::new()
    }
}

/// What decides the device list besides the plan.
pub struct DeviceOptions {
    /// A guest console on `<state>/console.log`.
    pub console: bool,
    /// A second virtio-fs share for bind-mount sources.
    pub volumes: bool,
    /// The VM is a clone of a template: shares over 9p (both, always: the template's device
    /// set is fixed), NICs with placeholder MACs.
    pub template: bool,
    /// The interfaces of the container's network namespace that the VM gets.
    pub net: NetSetup,
    /// User-mode networking (a container without a network namespace of its own), with its
    /// backend ([`user_net_backend`]).
    pub user_net: Option<UserNetBackend>,
}

/// The backend of user-mode networking, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserNetBackend {
    /// passt, at this path.
    Passt(PathBuf),
    /// QEMU's built-in stack.
    Slirp,
}

/// The backend when neither the bundle nor `HULL_NET_BACKEND` names one. slirp, measured: the
/// same time to workload and throughput under TCG, 29 MiB less PSS per container, and Debian
/// 12's passt (0.0~git20230309) does not ACK the guest's SYN-ACK on a published port until
/// the client sends (server-first protocols hang) and stalls host→guest bulk transfers.
pub const DEFAULT_NET_BACKEND: NetBackend = NetBackend::Slirp;

/// The user-mode network's backend: the bundle's `org.hull.net.backend`, else
/// `HULL_NET_BACKEND`, else [`DEFAULT_NET_BACKEND`]. passt asked for but not installed is an
/// error; passt as the default falls back to slirp with a notice.
pub fn user_net_backend(plan: &VmPlan) -> Result<UserNetBackend, MonitorError> {
    let env = std::env::var("HULL_NET_BACKEND").unwrap_or_default();
    let (backend, explicit) = match (plan.net_backend, env.as_str()) {
        (Some(b), _) => (b, true),
        (None, "") => (DEFAULT_NET_BACKEND, false),
        (None, v) => match NetBackend::parse(v) {
            Some(b) => (b, true),
            None => {
                return Err(MonitorError::Setting {
                    name: "HULL_NET_BACKEND",
                    value: v.into(),
                    problem: "must be \"passt\" or \"slirp\"",
                })
            }
        },
    };
    match (backend, passt::locate()) {
        (NetBackend::Slirp, _) => Ok(UserNetBackend::Slirp),
        (NetBackend::Passt, Some(path)) => Ok(UserNetBackend::Passt(path)),
        (NetBackend::Passt, None) if explicit => Err(MonitorError::MissingProgram {
            program: "passt".into(),
            install: format!(
                "{} (or choose slirp: annotation {} / HULL_NET_BACKEND)",
                passt::INSTALL,
                hull_oci::ANNOTATION_NET_BACKEND
            ),
        }),
        (NetBackend::Passt, None) => {
            let notice = format!(
                "hull: passt not found ({}): using QEMU's user-mode network (slirp)",
                passt::INSTALL
            );
            crate::log::info(&notice);
            if std::io::stderr().is_terminal() {
                eprintln!("{notice}");
            }
            Ok(UserNetBackend::Slirp)
        }
    }
}

/// The devices of one container's VM, in the order QEMU gets them.
pub fn from_plan(plan: &VmPlan, opts: DeviceOptions) -> Vec<Box<dyn VmDevice>> {
    let mut d: Vec<Box<dyn VmDevice>> = vec![Box::new(serial::Serial::new(opts.console))];
    let transport = match opts.template {
        true => fs::Transport::NineP,
        false => fs::Transport::VirtioFs,
    };
    d.push(Box::new(fs::FsShare::rootfs(transport, plan.rootfs_cache)));
    if opts.volumes || opts.template {
        d.push(Box::new(fs::FsShare::volumes(transport, FsCache::Auto)));
    }
    d.extend(net::devices(opts.net, opts.template));
    d.push(Box::new(balloon::Balloon));
    match opts.user_net {
        None => {}
        Some(UserNetBackend::Slirp) => d.push(Box::new(user_net::UserNet {
            publish: plan.publish.clone(),
        })),
        Some(UserNetBackend::Passt(binary)) => {
            d.push(Box::new(passt::Passt::new(binary, plan.publish.clone())))
        }
    }
    d
}
