//! Host side against real links, each test in network namespaces of its own.

mod common;

use std::net::IpAddr;

use common::{addresses, NetNs};
use hull_net::host::{self, HostInterface};
use hull_net::NetError;
use hull_protocol::{IpNet, NetRoute};

fn net(text: &str) -> IpNet {
    let (addr, len) = text.split_once('/').expect("ADDR/LEN");
    IpNet {
        addr: addr.parse().expect("address"),
        prefix_len: len.parse().expect("prefix length"),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// `eth0` (MAC 02:00:00:aa:bb:01, MTU `mtu`) ↔ `peer0`, both up, in `ns`.
fn veth_pair(ns: &NetNs, mtu: &str) {
    ns.ip(&[
        "link",
        "add",
        "eth0",
        "address",
        "02:00:00:aa:bb:01",
        "mtu",
        mtu,
        "type",
        "veth",
        "peer",
        "name",
        "peer0",
    ]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns.ip(&["link", "set", "peer0", "up"]);
}

fn eth0(ns: &NetNs) -> HostInterface {
    let ifaces = ns.run(host::inspect).expect("inspect");
    ifaces
        .into_iter()
        .find(|i| i.name == "eth0")
        .expect("eth0 inspected")
}

#[test]
fn inspect_reports_ethernet_interfaces_and_skips_lo_tun_and_taps() {
    let ns = NetNs::new("inspect");
    veth_pair(&ns, "1400");
    ns.ip(&["addr", "add", "10.77.1.2/24", "dev", "eth0"]);
    ns.ip(&["addr", "add", "fd77:1::2/64", "dev", "eth0", "nodad"]);
    ns.ip(&["tuntap", "add", "tunx", "mode", "tap"]);
    ns.ip(&["tuntap", "add", "hulltap9", "mode", "tap"]);
    ns.ip(&["link", "set", "lo", "up"]);
    assert!(
        addresses(&ns, "eth0")
            .iter()
            .any(|a| a.starts_with("fe80:")),
        "the kernel gave eth0 a link-local address"
    );

    let ifaces = ns.run(host::inspect).expect("inspect");

    let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"eth0") && names.contains(&"peer0"),
        "{names:?}"
    );
    let eth0 = ifaces.iter().find(|i| i.name == "eth0").expect("eth0");
    assert_eq!(eth0.mac, [0x02, 0, 0, 0xaa, 0xbb, 0x01]);
    assert_eq!(eth0.mtu, 1400);
    let index = ns.link("eth0").expect("eth0")["ifindex"].as_u64();
    assert_eq!(Some(u64::from(eth0.index)), index);
    assert_eq!(
        eth0.addresses,
        vec![net("10.77.1.2/24"), net("fd77:1::2/64")]
    );
}

#[test]
fn routes_are_the_engines_not_the_kernels() {
    let ns = NetNs::new("routes");
    veth_pair(&ns, "1500");
    ns.ip(&["addr", "add", "10.77.2.2/24", "dev", "eth0"]);
    ns.ip(&["addr", "add", "fd77:2::2/64", "dev", "eth0", "nodad"]);
    ns.ip(&["route", "add", "default", "via", "10.77.2.1"]);
    ns.ip(&[
        "route",
        "add",
        "192.168.50.0/24",
        "via",
        "10.77.2.254",
        "metric",
        "50",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.99.0.0/16",
        "dev",
        "eth0",
        "src",
        "10.77.2.2",
    ]);
    ns.ip(&["-6", "route", "add", "default", "via", "fd77:2::1"]);

    let routes = ns
        .run(|| host::inspect().and_then(|i| host::routes(&i)))
        .expect("routes");

    let route = |dest: &str, gw: Option<&str>, src: Option<&str>, metric: Option<u32>| NetRoute {
        destination: net(dest),
        gateway: gw.map(ip),
        device: "eth0".into(),
        source: src.map(ip),
        metric,
    };
    let want = [
        route("10.99.0.0/16", None, Some("10.77.2.2"), None),
        route("0.0.0.0/0", Some("10.77.2.1"), None, None),
        route("192.168.50.0/24", Some("10.77.2.254"), None, Some(50)),
        route("::/0", Some("fd77:2::1"), None, Some(1024)),
    ];
    assert_eq!(routes, want, "{routes:#?}");
}

#[test]
fn attach_wires_a_tap_and_detach_and_close_remove_everything() {
    let ns = NetNs::new("attach");
    veth_pair(&ns, "1400");
    let iface = eth0(&ns);

    let tap = ns.run(|| host::attach(&iface, "hulltap0")).expect("attach");

    assert_eq!(tap.name, "hulltap0");
    let link = ns.link("hulltap0").expect("the tap exists");
    assert_eq!(link["mtu"], 1400);
    assert_eq!(Some(u64::from(tap.ifindex)), link["ifindex"].as_u64());
    assert!(
        common::array(&link["flags"]).iter().any(|f| f == "UP"),
        "{link}"
    );
    assert!(ns.has_ingress("eth0") && ns.has_ingress("hulltap0"));
    assert_eq!(ns.redirect_targets("eth0"), vec!["hulltap0"]);
    assert_eq!(ns.redirect_targets("hulltap0"), vec!["eth0"]);
    let text = ns.tc(&["filter", "show", "dev", "eth0", "ingress"]);
    assert!(
        text.contains("protocol all") && text.contains("match 00000000/00000000 at 0"),
        "{text}"
    );

    ns.run(|| host::detach("eth0")).expect("detach");
    assert!(!ns.has_ingress("eth0"));
    assert!(ns.redirect_targets("eth0").is_empty());
    ns.run(|| host::detach("eth0"))
        .expect("detach again is a no-op");
    ns.run(|| host::detach("nosuch0"))
        .expect("detach of a missing link is a no-op");

    drop(tap);
    assert!(ns.link("hulltap0").is_none(), "the tap went with its fd");
}

#[test]
fn attach_to_a_missing_interface_fails_and_leaves_nothing() {
    let ns = NetNs::new("attachbad");
    veth_pair(&ns, "1500");
    let mut iface = eth0(&ns);
    iface.name = "nosuch0".into();

    let err = ns
        .run(|| host::attach(&iface, "hulltap0"))
        .expect_err("attach to a missing link");

    assert!(
        matches!(err, NetError::NoSuchInterface(ref n) if n == "nosuch0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("nosuch0"), "{err}");
    assert!(ns.link("hulltap0").is_none());
    assert!(!ns.has_ingress("eth0"));
}

#[test]
fn attach_keeps_an_ingress_qdisc_it_did_not_create() {
    let ns = NetNs::new("attachkeep");
    veth_pair(&ns, "1500");
    let iface = eth0(&ns);
    ns.tc(&["qdisc", "add", "dev", "eth0", "ingress"]);

    let err = ns
        .run(|| host::attach(&iface, "hulltap0"))
        .expect_err("the veth already has an ingress qdisc");

    let text = err.to_string();
    assert!(
        text.contains("eth0") && text.contains("ingress qdisc"),
        "{text}"
    );
    assert!(text.contains("exists"), "the errno text: {text}");
    assert!(ns.link("hulltap0").is_none(), "the tap went with its fd");
    assert!(
        ns.has_ingress("eth0"),
        "the existing qdisc is not ours to delete"
    );
}

#[test]
fn attach_undoes_the_veth_qdisc_when_a_later_step_fails() {
    let ns = NetNs::new("attachundo");
    veth_pair(&ns, "1500");
    let iface = eth0(&ns);
    // A persistent tap of that name that already has an ingress qdisc: TUNSETIFF attaches to
    // it, the veth's qdisc is added, then the tap's fails.
    ns.ip(&["tuntap", "add", "hulltap0", "mode", "tap", "vnet_hdr"]);
    ns.tc(&["qdisc", "add", "dev", "hulltap0", "ingress"]);

    let err = ns
        .run(|| host::attach(&iface, "hulltap0"))
        .expect_err("the tap already has an ingress qdisc");

    assert!(err.to_string().contains("hulltap0"), "{err}");
    assert!(!ns.has_ingress("eth0"), "attach deleted the qdisc it added");
    assert!(ns.redirect_targets("eth0").is_empty());
    assert!(
        ns.link("hulltap0").is_some(),
        "the persistent tap was not attach's"
    );
}

#[test]
fn cleanup_netns_removes_what_a_killed_monitor_left() {
    let ns = NetNs::new("cleanup");
    veth_pair(&ns, "1500");
    ns.ip(&["tuntap", "add", "hulltap3", "mode", "tap"]);
    ns.tc(&["qdisc", "add", "dev", "eth0", "ingress"]);
    ns.tc(&[
        "filter", "add", "dev", "eth0", "parent", "ffff:", "protocol", "all", "u32", "match",
        "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "hulltap3",
    ]);
    let before = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");

    host::cleanup_netns(&ns.path(), &["eth0".to_owned(), "gone0".to_owned()]).expect("cleanup");

    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").expect("own netns"),
        before
    );
    assert!(!ns.has_ingress("eth0"));
    assert!(ns.link("hulltap3").is_none());
    assert!(ns.link("eth0").is_some() && ns.link("peer0").is_some());
    let missing = std::path::Path::new("/run/netns/hullnet-this-does-not-exist");
    host::cleanup_netns(missing, &["eth0".to_owned()]).expect("a missing netns is Ok");
}
