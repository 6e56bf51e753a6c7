//! Host side: read the engine's interfaces in the container's network namespace and wire each
//! into the VM through a tap device (Kata Containers' "tcfilter" model).
//!
//! For an interface `eth0` (usually a veth whose peer is on the engine's bridge) [`attach`]
//! creates `hulltap<N>` in the same namespace and adds
//!
//! ```text
//! tc qdisc add dev eth0 ingress
//! tc qdisc add dev hulltap<N> ingress
//! tc filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 \
//!     action mirred egress redirect dev hulltap<N>
//! tc filter add dev hulltap<N> parent ffff: protocol all u32 match u32 0 0 \
//!     action mirred egress redirect dev eth0
//! ```
//!
//! so every frame arriving on the veth leaves through the tap (to QEMU's virtio-net device,
//! whose MAC is the veth's) and every frame QEMU writes leaves through the veth. The host-side
//! addresses stay where the engine put them (nothing in the namespace uses them once the VM
//! runs); [`network_config`] copies them, with the routes, for the guest agent.
//!
//! The tap is not persistent: it disappears with the last descriptor (the monitor's and
//! QEMU's), taking its own qdisc and filter with it. [`detach`] removes the veth's ingress
//! qdisc and filter; [`cleanup_netns`] does both for a monitor that died without cleaning up.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::Path;

use hull_protocol::{IpNet, NetInterface, NetRoute, NetworkConfig};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::InfoKind;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::link::{self, Link, LinkChange};
use crate::mac::format_mac;
use crate::nl::Netlink;
use crate::{netns, tc, tun, NetError};

/// Name prefix of the taps hull creates; [`cleanup_netns`] deletes any link named so.
pub const TAP_PREFIX: &str = "hulltap";

/// The tap name for the interface at `index` in [`inspect`]'s list: `hulltap<index>`.
pub fn tap_name(index: usize) -> String {
    format!("{TAP_PREFIX}{index}")
}

/// An Ethernet interface of the container's network namespace, as the engine configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// IPv4 and IPv6 addresses, without IPv6 link-local ones.
    pub addresses: Vec<IpNet>,
}

/// A tap wired to a host interface. `fd` is close-on-exec; hand QEMU a duplicate
/// (`-netdev tap,fd=N`). The device disappears when the last descriptor is closed.
#[derive(Debug)]
pub struct Tap {
    pub fd: OwnedFd,
    pub name: String,
    pub ifindex: u32,
}

fn open_netlink() -> Result<Netlink, NetError> {
    Netlink::open().map_err(NetError::Socket)
}

fn dump_err(what: &'static str) -> impl FnOnce(io::Error) -> NetError {
    move |source| NetError::Dump { what, source }
}

/// The Ethernet interfaces (veths and other `ARPHRD_ETHER` links, except `lo`, tun/tap devices
/// and links named [`TAP_PREFIX`]…) of the calling thread's network namespace, by ifindex.
pub fn inspect() -> Result<Vec<HostInterface>, NetError> {
    let mut nl = open_netlink()?;
    let links = link::dump(&mut nl).map_err(dump_err("links"))?;
    let mut addrs = addresses(&mut nl)?;
    let mut out: Vec<HostInterface> = links
        .into_iter()
        .filter(is_engine_interface)
        .filter_map(|l| {
            let mac = l.mac?;
            Some(HostInterface {
                addresses: addrs.remove(&l.index).unwrap_or_default(),
                index: l.index,
                name: l.name,
                mac,
                mtu: l.mtu,
            })
        })
        .collect();
    out.sort_by_key(|i| i.index);
    Ok(out)
}

fn is_engine_interface(link: &Link) -> bool {
    link.ether
        && link.name != "lo"
        && !link.name.starts_with(TAP_PREFIX)
        && link.kind != Some(InfoKind::Tun)
}

/// Every global address of the namespace (no IPv6 link-local), by ifindex.
fn addresses(nl: &mut Netlink) -> Result<HashMap<u32, Vec<IpNet>>, NetError> {
    let replies = nl
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
        .map_err(dump_err("addresses"))?;
    let mut out: HashMap<u32, Vec<IpNet>> = HashMap::new();
    for reply in replies {
        if let RouteNetlinkMessage::NewAddress(msg) = reply {
            if let Some(net) = address_of(&msg).filter(|n| !is_link_local(&n.addr)) {
                out.entry(msg.header.index).or_default().push(net);
            }
        }
    }
    Ok(out)
}

/// The interface's own address (`IFA_LOCAL`, else `IFA_ADDRESS`) with its prefix length.
fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    let find = |local: bool| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if local => Some(*ip),
            AddressAttribute::Address(ip) if !local => Some(*ip),
            _ => None,
        })
    };
    let addr = find(true).or_else(|| find(false))?;
    Some(IpNet {
        addr,
        prefix_len: msg.header.prefix_len,
    })
}

/// IPv6 link-local (`fe80::/10`); the guest kernel makes its own.
fn is_link_local(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

/// The main table's unicast routes through `ifaces` that the kernel did not make itself from
/// an address (no `proto kernel`, no local/broadcast/multicast entries, no IPv6 link-local
/// destinations), IPv4 then IPv6. Routes without a gateway come first, so that a gateway is
/// reachable when the guest adds the routes through it in order.
pub fn routes(ifaces: &[HostInterface]) -> Result<Vec<NetRoute>, NetError> {
    let names: HashMap<u32, &str> = ifaces.iter().map(|i| (i.index, i.name.as_str())).collect();
    let mut nl = open_netlink()?;
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        let replies = nl
            .dump(RouteNetlinkMessage::GetRoute(req))
            .map_err(dump_err("routes"))?;
        out.extend(replies.into_iter().filter_map(|r| match r {
            RouteNetlinkMessage::NewRoute(msg) => engine_route(&msg, &names),
            _ => None,
        }));
    }
    out.sort_by_key(|r| r.gateway.is_some());
    Ok(out)
}

/// The route as the guest must add it, if it is one hull copies.
fn engine_route(msg: &RouteMessage, names: &HashMap<u32, &str>) -> Option<NetRoute> {
    let h = &msg.header;
    if route_table(msg) != u32::from(RouteHeader::RT_TABLE_MAIN)
        || h.kind != RouteType::Unicast
        || h.protocol == RouteProtocol::Kernel
    {
        return None;
    }
    let mut route = NetRoute {
        destination: unspecified(h.address_family, h.destination_prefix_length)?,
        gateway: None,
        device: String::new(),
        source: None,
        metric: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => route.destination.addr = route_ip(a)?,
            RouteAttribute::Gateway(a) => route.gateway = Some(route_ip(a)?),
            RouteAttribute::PrefSource(a) => route.source = Some(route_ip(a)?),
            RouteAttribute::Oif(i) => route.device = (*names.get(i)?).to_owned(),
            RouteAttribute::Priority(m) => route.metric = Some(*m),
            _ => {}
        }
    }
    let keep = !route.device.is_empty() && !is_link_local(&route.destination.addr);
    keep.then_some(route)
}

/// The route's table: `RTA_TABLE` if present (ids above 255), else the header's.
fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

fn unspecified(family: AddressFamily, prefix_len: u8) -> Option<IpNet> {
    let addr = match family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    Some(IpNet { addr, prefix_len })
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The guest's network configuration: each interface with its MAC (lower case), MTU and
/// addresses, and the routes in order.
pub fn network_config(ifaces: &[HostInterface], routes: &[NetRoute]) -> NetworkConfig {
    NetworkConfig {
        interfaces: ifaces
            .iter()
            .map(|i| NetInterface {
                name: i.name.clone(),
                mac: format_mac(&i.mac),
                device_mac: None,
                mtu: i.mtu,
                addresses: i.addresses.clone(),
            })
            .collect(),
        routes: routes.to_vec(),
    }
}

/// Creates the tap `tap_name` in the current network namespace and wires it to `iface`:
/// MTU of `iface`, up, ingress qdiscs on both and a redirect filter each way. On failure
/// nothing is left behind (the tap goes with its descriptor, the veth's qdisc is deleted).
pub fn attach(iface: &HostInterface, tap_name: &str) -> Result<Tap, NetError> {
    let mut nl = open_netlink()?;
    let veth = link::by_name(&mut nl, &iface.name)
        .map_err(|e| NetError::iface(&iface.name, "look up", e))?
        .ok_or_else(|| NetError::NoSuchInterface(iface.name.clone()))?;
    let (fd, tap) = create_tap(&mut nl, tap_name, veth.mtu)?;
    wire(&mut nl, &veth, &tap)?;
    Ok(Tap {
        fd,
        name: tap.name,
        ifindex: tap.index,
    })
}

/// A tap wired to nothing (the NIC of a VM template being built, whose traffic goes nowhere);
/// it disappears with its descriptor.
pub fn unwired_tap(tap_name: &str) -> Result<Tap, NetError> {
    let mut nl = open_netlink()?;
    let (fd, tap) = create_tap(&mut nl, tap_name, 1500)?;
    Ok(Tap {
        fd,
        name: tap.name,
        ifindex: tap.index,
    })
}

/// Opens the tap `tap_name` and sets its MTU and up; closing the descriptor removes it.
fn create_tap(nl: &mut Netlink, tap_name: &str, mtu: u32) -> Result<(OwnedFd, Link), NetError> {
    let tap_err = |op| {
        move |source| NetError::Tap {
            tap: tap_name.to_owned(),
            op,
            source,
        }
    };
    let (fd, name) = tun::open_tap(tap_name).map_err(tap_err("create"))?;
    let tap = link::by_name(nl, &name)
        .map_err(tap_err("look up"))?
        .ok_or_else(|| tap_err("look up")(io::Error::from_raw_os_error(libc::ENODEV)))?;
    let change = LinkChange {
        up: Some(true),
        mtu: Some(mtu),
        ..LinkChange::default()
    };
    link::set(nl, tap.index, &change).map_err(tap_err("set MTU and up"))?;
    Ok((fd, tap))
}

/// The qdiscs and filters of [`attach`]; deletes the veth's qdisc again if a later step fails
/// (the tap's go with the tap).
fn wire(nl: &mut Netlink, veth: &Link, tap: &Link) -> Result<(), NetError> {
    tc::add_ingress(nl, veth.index)
        .map_err(|e| NetError::iface(&veth.name, "add ingress qdisc", e))?;
    let rest = wire_rest(nl, veth, tap);
    if rest.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = tc::del_ingress(nl, veth.index);
    }
    rest
}

fn wire_rest(nl: &mut Netlink, veth: &Link, tap: &Link) -> Result<(), NetError> {
    tc::add_ingress(nl, tap.index)
        .map_err(|e| NetError::iface(&tap.name, "add ingress qdisc", e))?;
    tc::add_redirect(nl, veth.index, tap.index).map_err(|e| {
        NetError::iface(
            &veth.name,
            format!("add redirect filter to {}", tap.name),
            e,
        )
    })?;
    tc::add_redirect(nl, tap.index, veth.index).map_err(|e| {
        NetError::iface(
            &tap.name,
            format!("add redirect filter to {}", veth.name),
            e,
        )
    })
}

/// Removes the ingress qdisc (and so the redirect filter) from `iface_name`. Idempotent: no
/// qdisc, or no such interface any more, is `Ok`.
pub fn detach(iface_name: &str) -> Result<(), NetError> {
    let mut nl = open_netlink()?;
    let err = |op: &'static str| move |e| NetError::iface(iface_name, op, e);
    let Some(link) = link::by_name(&mut nl, iface_name).map_err(err("look up"))? else {
        return Ok(());
    };
    if !tc::has_ingress(&mut nl, link.index).map_err(err("list qdiscs"))? {
        return Ok(());
    }
    tc::del_ingress(&mut nl, link.index).map_err(err("delete ingress qdisc"))
}

/// Undoes [`attach`] in the network namespace at `netns_path` for a monitor that could not:
/// [`detach`] for each of `iface_names` and deletes every link named [`TAP_PREFIX`]…. Runs on
/// a short-lived thread; the caller's namespace does not change. A missing path is `Ok`.
/// Every step is tried; the first error is returned.
pub fn cleanup_netns(netns_path: &Path, iface_names: &[String]) -> Result<(), NetError> {
    match netns_path.try_exists() {
        Ok(false) => return Ok(()),
        Ok(true) => {}
        Err(source) => {
            return Err(NetError::Netns {
                path: netns_path.to_owned(),
                op: "stat",
                source,
            })
        }
    }
    netns::in_netns(netns_path, || cleanup_here(iface_names))?
}

fn cleanup_here(iface_names: &[String]) -> Result<(), NetError> {
    let mut results: Vec<Result<(), NetError>> = iface_names.iter().map(|n| detach(n)).collect();
    results.push(delete_taps());
    results.into_iter().collect()
}

/// Deletes every link named [`TAP_PREFIX`]… in the current namespace.
fn delete_taps() -> Result<(), NetError> {
    let mut nl = open_netlink()?;
    let links = link::dump(&mut nl).map_err(dump_err("links"))?;
    for tap in links.iter().filter(|l| l.name.starts_with(TAP_PREFIX)) {
        match link::delete(&mut nl, tap.index) {
            Err(e) if !crate::nl::is_no_device(&e) => {
                return Err(NetError::iface(&tap.name, "delete", e))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_are_numbered() {
        assert_eq!(tap_name(0), "hulltap0");
        assert_eq!(tap_name(12), "hulltap12");
    }

    #[test]
    fn link_local_is_fe80_slash_10() {
        for (a, want) in [
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", false),
            ("fd00::1", false),
            ("10.0.0.1", false),
        ] {
            let ip: IpAddr = a.parse().expect("test address");
            assert_eq!(is_link_local(&ip), want, "{a}");
        }
    }

    #[test]
    fn network_config_formats_macs_and_keeps_order() {
        let iface = HostInterface {
            index: 3,
            name: "eth0".into(),
            mac: [0x0A, 0xBB, 0, 1, 2, 3],
            mtu: 1450,
            addresses: vec![IpNet {
                addr: "10.88.0.2".parse().expect("test address"),
                prefix_len: 16,
            }],
        };
        let route = NetRoute {
            destination: unspecified(AddressFamily::Inet, 0).expect("inet"),
            gateway: Some("10.88.0.1".parse().expect("test address")),
            device: "eth0".into(),
            source: None,
            metric: None,
        };
        let cfg = network_config(&[iface], std::slice::from_ref(&route));
        assert_eq!(cfg.interfaces[0].mac, "0a:bb:00:01:02:03");
        assert_eq!(cfg.interfaces[0].mtu, 1450);
        assert_eq!(cfg.routes, vec![route]);
    }
}
