//! User-mode networking for a container without a network namespace of its own (runc's "host"
//! network): a VM cannot be given the host's interfaces, so it gets QEMU's user-mode stack
//! (libslirp) instead: outbound TCP/UDP through the host's sockets, nothing inbound, no host
//! interface. The guest sees `eth0` with slirp's fixed addresses.

use std::net::{IpAddr, Ipv4Addr};

use hull_oci::publish::PortForward;
use hull_protocol::{IpNet, NetInterface, NetRoute, NetworkConfig};
use hull_qemu::{Device, Netdev, QemuCommand};

use super::VmDevice;

// Also the passt backend's: both give the guest the same configuration.
pub(super) const MAC: &str = "52:54:00:12:34:56";
pub(super) const MTU: u32 = 1500;
pub(super) const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub(super) const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// slirp's DNS forwarder (passt is told to forward there too).
pub(super) const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// The guest's side of the user-mode network (slirp's addresses, whichever the backend).
pub fn guest_config() -> NetworkConfig {
    let net = |addr: Ipv4Addr, prefix_len| IpNet {
        addr: IpAddr::V4(addr),
        prefix_len,
    };
    NetworkConfig {
        interfaces: vec![NetInterface {
            name: "eth0".into(),
            mac: MAC.into(),
            device_mac: None,
            mtu: MTU,
            addresses: vec![net(GUEST, 24)],
        }],
        routes: vec![NetRoute {
            destination: net(Ipv4Addr::UNSPECIFIED, 0),
            gateway: Some(IpAddr::V4(GATEWAY)),
            device: "eth0".into(),
            source: None,
            metric: None,
        }],
    }
}

/// The user-mode NIC, with the ports it publishes.
pub struct UserNet {
    pub publish: Vec<PortForward>,
}

impl VmDevice for UserNet {
    fn add_to(&self, q: &mut QemuCommand) {
        let hostfwd = self
            .publish
            .iter()
            .map(|p| {
                let addr = p.host_addr.map(|a| a.to_string()).unwrap_or_default();
                let (proto, hp, cp) = (p.proto.as_str(), p.host_port, p.container_port);
                format!("{proto}:{addr}:{hp}-:{cp}")
            })
            .collect();
        q.netdevs.push(Netdev::User {
            id: "unet0".into(),
            hostfwd,
        });
        q.devices.push(Device::VirtioNet {
            netdev: "unet0".into(),
            mac: MAC.into(),
            mtu: Some(MTU),
        });
    }
}
