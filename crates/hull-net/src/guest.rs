//! Guest side: the agent (PID 1 in the VM) gives each virtio-net device the identity of the
//! host interface it stands for. The device is found by MAC (the monitor gave QEMU the veth's
//! MAC; a VM restored from a template has the template's MAC, `device_mac`, and gets the veth's),
//! renamed to the host name, given the MTU and addresses, set up; then the routes are
//! added in order. IPv6 addresses skip duplicate address detection (`IFA_F_NODAD`) so they
//! are usable at once; link-local addresses are left to the guest kernel.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

use hull_protocol::{IpNet, NetInterface, NetRoute, NetworkConfig};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::route::{
    RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::link::{self, Link, LinkChange};
use crate::mac::{format_mac, parse_mac};
use crate::nl::Netlink;
use crate::NetError;

fn open_netlink() -> Result<Netlink, NetError> {
    Netlink::open().map_err(NetError::Socket)
}

/// Sets the loopback interface `lo` up.
pub fn loopback_up() -> Result<(), NetError> {
    let mut nl = open_netlink()?;
    let lo = link::by_name(&mut nl, "lo")
        .map_err(|e| NetError::iface("lo", "look up", e))?
        .ok_or_else(|| NetError::NoSuchInterface("lo".into()))?;
    let up = LinkChange {
        up: Some(true),
        ..LinkChange::default()
    };
    link::set(&mut nl, lo.index, &up).map_err(|e| NetError::iface("lo", "set up", e))
}

/// Configures every interface of `cfg` (found by MAC), then adds its routes in order.
pub fn configure(cfg: &NetworkConfig) -> Result<(), NetError> {
    let mut nl = open_netlink()?;
    let links = link::dump(&mut nl).map_err(|source| NetError::Dump {
        what: "links",
        source,
    })?;
    let mut indexes = HashMap::new();
    for iface in &cfg.interfaces {
        let index = configure_interface(&mut nl, &links, iface)?;
        indexes.insert(iface.name.as_str(), index);
    }
    for route in &cfg.routes {
        add_route(&mut nl, &indexes, route)?;
    }
    Ok(())
}

/// Finds the interface's link and configures it; returns its index. The link is the one with
/// `device_mac` when the interface has one (a VM restored from a template: the device still has
/// the template's MAC), which then gets `mac`; else the one with `mac`. A link that already got
/// `mac` (configured before) is accepted too.
fn configure_interface(
    nl: &mut Netlink,
    links: &[Link],
    iface: &NetInterface,
) -> Result<u32, NetError> {
    let parse = |text: &String| {
        parse_mac(text).ok_or_else(|| NetError::InvalidMac {
            mac: text.clone(),
            name: iface.name.clone(),
        })
    };
    let mac = parse(&iface.mac)?;
    let device_mac = iface.device_mac.as_ref().map(parse).transpose()?;
    let by_mac = |m: [u8; 6]| links.iter().find(|l| l.mac == Some(m));
    let link = device_mac
        .and_then(by_mac)
        .or_else(|| by_mac(mac))
        .ok_or_else(|| NetError::MacNotFound {
            mac: match &iface.device_mac {
                Some(device) => format!("{device} or {}", iface.mac),
                None => iface.mac.clone(),
            },
            name: iface.name.clone(),
        })?;
    let err = |op: String| move |e| NetError::iface(&iface.name, op, e);
    let mut up = link.up;
    if link.mac != Some(mac) {
        if up {
            link::set(nl, link.index, &down()).map_err(err("set down".into()))?;
            up = false;
        }
        let address = LinkChange {
            address: Some(mac),
            ..LinkChange::default()
        };
        let op = format!(
            "change MAC {} to {}",
            link.mac.as_ref().map(format_mac).unwrap_or_default(),
            iface.mac
        );
        link::set(nl, link.index, &address).map_err(err(op))?;
    }
    if link.name != iface.name {
        if up {
            link::set(nl, link.index, &down()).map_err(err("set down".into()))?;
        }
        let rename = LinkChange {
            name: Some(&iface.name),
            ..LinkChange::default()
        };
        let op = format!("rename {} to {}", link.name, iface.name);
        link::set(nl, link.index, &rename).map_err(err(op))?;
    }
    let mtu = LinkChange {
        mtu: Some(iface.mtu),
        ..LinkChange::default()
    };
    link::set(nl, link.index, &mtu).map_err(err(format!("set MTU {}", iface.mtu)))?;
    for net in &iface.addresses {
        let op = format!("add address {}/{}", net.addr, net.prefix_len);
        add_address(nl, link.index, net).map_err(err(op))?;
    }
    let up = LinkChange {
        up: Some(true),
        ..LinkChange::default()
    };
    link::set(nl, link.index, &up).map_err(err("set up".into()))?;
    Ok(link.index)
}

fn down() -> LinkChange<'static> {
    LinkChange {
        up: Some(false),
        ..LinkChange::default()
    }
}

/// `ip address replace ADDR/LEN dev INDEX` (IPv4 with its broadcast, IPv6 `nodad`).
fn add_address(nl: &mut Netlink, index: u32, net: &IpNet) -> io::Result<()> {
    let mut msg = AddressMessage::default();
    msg.header.prefix_len = net.prefix_len;
    msg.header.index = index;
    msg.header.scope = AddressScope::Universe;
    match net.addr {
        IpAddr::V4(v4) => {
            msg.header.family = AddressFamily::Inet;
            msg.attributes.push(AddressAttribute::Local(net.addr));
            msg.attributes.push(AddressAttribute::Address(net.addr));
            if let Some(brd) = broadcast(v4, net.prefix_len) {
                msg.attributes.push(AddressAttribute::Broadcast(brd));
            }
        }
        IpAddr::V6(_) => {
            msg.header.family = AddressFamily::Inet6;
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes.push(AddressAttribute::Address(net.addr));
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    nl.ack(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// The broadcast address of `addr/prefix_len`; none for /31, /32 and invalid lengths.
fn broadcast(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    if prefix_len > 30 {
        return None;
    }
    let host_mask = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(addr) | host_mask))
}

/// Adds one route; `device` is looked up among the configured interfaces, then by name. A
/// gateway route that the kernel rejects as unreachable is retried `onlink` (as the host may
/// have had it: the gateway outside every prefix of the device).
fn add_route(
    nl: &mut Netlink,
    indexes: &HashMap<&str, u32>,
    route: &NetRoute,
) -> Result<(), NetError> {
    let err = |source| NetError::Route {
        route: describe(route),
        source,
    };
    let index = match indexes.get(route.device.as_str()) {
        Some(i) => *i,
        None => {
            link::by_name(nl, &route.device)
                .map_err(err)?
                .ok_or_else(|| err(io::Error::from_raw_os_error(libc::ENODEV)))?
                .index
        }
    };
    let msg = route_message(route, index);
    match nl.ack(
        RouteNetlinkMessage::NewRoute(msg.clone()),
        NLM_F_CREATE | NLM_F_REPLACE,
    ) {
        Err(e) if route.gateway.is_some() && e.raw_os_error() == Some(libc::ENETUNREACH) => {
            let mut onlink = msg;
            onlink.header.flags = RouteFlags::Onlink;
            nl.ack(
                RouteNetlinkMessage::NewRoute(onlink),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .map_err(err)
        }
        other => other.map_err(err),
    }
}

/// The RTM_NEWROUTE message for `route` through the link with `index`.
fn route_message(route: &NetRoute, index: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = match route.destination.addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    h.destination_prefix_length = route.destination.prefix_len;
    h.table = RouteHeader::RT_TABLE_MAIN;
    h.protocol = RouteProtocol::Boot;
    h.kind = RouteType::Unicast;
    h.scope = match (route.gateway, route.destination.addr) {
        (None, IpAddr::V4(_)) => RouteScope::Link,
        _ => RouteScope::Universe,
    };
    let attrs = &mut msg.attributes;
    if route.destination.prefix_len > 0 {
        attrs.push(RouteAttribute::Destination(route.destination.addr.into()));
    }
    attrs.push(RouteAttribute::Oif(index));
    if let Some(gw) = route.gateway {
        attrs.push(RouteAttribute::Gateway(gw.into()));
    }
    if let Some(src) = route.source {
        attrs.push(RouteAttribute::PrefSource(src.into()));
    }
    if let Some(metric) = route.metric {
        attrs.push(RouteAttribute::Priority(metric));
    }
    msg
}

/// `DEST/LEN [via GW] dev DEV [src SRC] [metric M]`, as `ip route` prints it.
fn describe(route: &NetRoute) -> String {
    let d = &route.destination;
    let mut text = if d.prefix_len == 0 {
        "default".to_owned()
    } else {
        format!("{}/{}", d.addr, d.prefix_len)
    };
    if let Some(gw) = route.gateway {
        text.push_str(&format!(" via {gw}"));
    }
    text.push_str(&format!(" dev {}", route.device));
    if let Some(src) = route.source {
        text.push_str(&format!(" src {src}"));
    }
    if let Some(metric) = route.metric {
        text.push_str(&format!(" metric {metric}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn broadcast_of_common_prefixes() {
        let a: Ipv4Addr = "10.88.0.5".parse().expect("test address");
        assert_eq!(
            broadcast(a, 16),
            Some("10.88.255.255".parse().expect("brd"))
        );
        assert_eq!(broadcast(a, 24), Some("10.88.0.255".parse().expect("brd")));
        assert_eq!(broadcast(a, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(broadcast(a, 31), None);
        assert_eq!(broadcast(a, 32), None);
        assert_eq!(broadcast(a, 40), None);
    }

    #[test]
    fn describes_routes_like_ip() {
        let route = NetRoute {
            destination: IpNet {
                addr: ip("0.0.0.0"),
                prefix_len: 0,
            },
            gateway: Some(ip("10.88.0.1")),
            device: "eth0".into(),
            source: Some(ip("10.88.0.5")),
            metric: Some(100),
        };
        assert_eq!(
            describe(&route),
            "default via 10.88.0.1 dev eth0 src 10.88.0.5 metric 100"
        );
        let net = NetRoute {
            destination: IpNet {
                addr: ip("fd00:1::"),
                prefix_len: 64,
            },
            gateway: None,
            device: "eth1".into(),
            source: None,
            metric: None,
        };
        assert_eq!(describe(&net), "fd00:1::/64 dev eth1");
    }

    #[test]
    fn route_message_scopes_and_attributes() {
        let link_route = NetRoute {
            destination: IpNet {
                addr: ip("192.168.7.0"),
                prefix_len: 24,
            },
            gateway: None,
            device: "eth0".into(),
            source: None,
            metric: None,
        };
        let msg = route_message(&link_route, 4);
        assert_eq!(msg.header.scope, RouteScope::Link);
        assert_eq!(msg.header.destination_prefix_length, 24);
        assert!(msg.attributes.contains(&RouteAttribute::Oif(4)));
        let default = NetRoute {
            destination: IpNet {
                addr: ip("::"),
                prefix_len: 0,
            },
            gateway: Some(ip("fd00::1")),
            ..link_route
        };
        let msg = route_message(&default, 4);
        assert_eq!(msg.header.scope, RouteScope::Universe);
        assert_eq!(msg.header.address_family, AddressFamily::Inet6);
        assert!(!msg
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))));
    }
}
