//! Network interfaces: each interface the engine configured in the container's network
//! namespace gets a tap joined to it by tc mirred redirects (Kata's `tcfilter` model, see
//! `hull-net`) and a virtio-net NIC with the same MAC and MTU; the agent gives the guest side
//! the same name, addresses and routes (`NetworkConfig`).

use std::os::fd::{AsRawFd, RawFd};

use hull_net::host::{HostInterface, Tap};
use hull_protocol::NetworkConfig;
use hull_qemu::{Device, Netdev, QemuCommand};

use super::{HostCtx, VmDevice};
use crate::{log, MonitorError};

/// The network of one VM: the interfaces found in the container's network namespace and the
/// configuration the guest gets for them.
#[derive(Debug, Default)]
pub struct NetSetup {
    pub interfaces: Vec<HostInterface>,
    pub guest: NetworkConfig,
}

impl NetSetup {
    /// Reads the current network namespace (the container's: the monitor has joined it).
    pub fn inspect() -> Result<Self, MonitorError> {
        let interfaces = hull_net::host::inspect()?;
        let routes = hull_net::host::routes(&interfaces)?;
        let guest = hull_net::host::network_config(&interfaces, &routes);
        Ok(Self { interfaces, guest })
    }

    /// Names of the host interfaces the VM is wired to (kept in the state for `delete`).
    pub fn names(&self) -> Vec<String> {
        self.interfaces.iter().map(|i| i.name.clone()).collect()
    }
}

/// One NIC per interface.
pub fn devices(setup: NetSetup, template: bool) -> Vec<Box<dyn super::VmDevice>> {
    setup
        .interfaces
        .into_iter()
        .enumerate()
        .map(|(index, iface)| {
            Box::new(NetIf {
                index,
                iface,
                tap: None,
                template,
            }) as Box<dyn super::VmDevice>
        })
        .collect()
}

/// The MAC of NIC `index` in a template (and so in its clones, whose device state is the
/// template's): `02:68:75:6c:6c:<index>` ("hull", locally administered). The agent finds the
/// device by it and gives it the interface's own MAC.
pub fn placeholder_mac(index: usize) -> String {
    format!("02:68:75:6c:6c:{:02x}", index as u8)
}

struct NetIf {
    index: usize,
    iface: HostInterface,
    tap: Option<Tap>,
    /// A clone of a template: placeholder MAC, no MTU feature (the agent sets both).
    template: bool,
}

impl NetIf {
    fn netdev_id(&self) -> String {
        format!("net{}", self.index)
    }
}

impl VmDevice for NetIf {
    fn start_backend(&mut self, _ctx: &HostCtx) -> Result<(), MonitorError> {
        let name = hull_net::host::tap_name(self.index);
        self.tap = Some(hull_net::host::attach(&self.iface, &name)?);
        Ok(())
    }

    fn add_to(&self, q: &mut QemuCommand) {
        let Some(tap) = &self.tap else { return };
        q.netdevs.push(Netdev::TapFd {
            id: self.netdev_id(),
            fd: tap.fd.as_raw_fd(),
        });
        let (mac, mtu) = match self.template {
            true => (placeholder_mac(self.index), None),
            false => (hull_net::format_mac(&self.iface.mac), Some(self.iface.mtu)),
        };
        q.devices.push(Device::VirtioNet {
            netdev: self.netdev_id(),
            mac,
            mtu,
        });
    }

    fn qemu_fds(&self) -> Vec<RawFd> {
        self.tap.iter().map(|t| t.fd.as_raw_fd()).collect()
    }

    fn stop(&mut self) {
        // The tap goes with its last fd; the redirect on the engine's interface goes with its
        // ingress qdisc.
        self.tap = None;
        if let Err(e) = hull_net::host::detach(&self.iface.name) {
            log::error(&format!(
                "removing the tc redirect of {}: {e}",
                self.iface.name
            ));
        }
    }
}

impl Drop for NetIf {
    fn drop(&mut self) {
        if self.tap.is_some() {
            self.stop();
        }
    }
}
