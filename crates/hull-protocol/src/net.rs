//! The network the guest must configure: the engine's interfaces, copied from the host netns.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One interface of the container's network namespace on the host, as the guest must show it:
/// the VM gets a virtio-net device with the same MAC, and the agent gives it the same name,
/// MTU, addresses and routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    /// Name in the guest (the host interface's name, e.g. `eth0`).
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff` (lower case). The guest finds its device by it.
    pub mac: String,
    /// The MAC the guest's virtio-net device has, when it is not `mac` (a VM restored from a
    /// template keeps the template's placeholder MAC): the agent finds the device by it and
    /// sets `mac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_mac: Option<String>,
    pub mtu: u32,
    /// IPv4 and IPv6 addresses (IPv6 link-local ones are left to the guest kernel).
    pub addresses: Vec<IpNet>,
}

/// An address with its prefix length, e.g. `10.88.0.2/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// A route of the container's network namespace that the kernel does not make by itself from
/// an address (default routes, static routes of the engine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRoute {
    /// Destination network; `0.0.0.0/0` or `::/0` for a default route.
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    /// Output interface, by its name in the guest.
    pub device: String,
    /// Preferred source address, if the host route has one.
    pub source: Option<IpAddr>,
    pub metric: Option<u32>,
}

/// Everything the agent configures before the container is created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub interfaces: Vec<NetInterface>,
    /// Applied after every interface is up, in order.
    pub routes: Vec<NetRoute>,
}
