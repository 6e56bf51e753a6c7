//! Guest side against real links (veths with chosen MACs, their peers up so they have a
//! carrier; this kernel has no dummy driver), each test in a network namespace of its own.

mod common;

use common::{addresses, array, NetNs};
use hull_net::{guest, NetError};
use hull_protocol::{IpNet, NetInterface, NetRoute, NetworkConfig};
use serde_json::Value;

fn net(text: &str) -> IpNet {
    let (addr, len) = text.split_once('/').expect("ADDR/LEN");
    IpNet {
        addr: addr.parse().expect("address"),
        prefix_len: len.parse().expect("prefix length"),
    }
}

fn route(dest: &str, gateway: Option<&str>, source: Option<&str>, metric: Option<u32>) -> NetRoute {
    NetRoute {
        destination: net(dest),
        gateway: gateway.map(|g| g.parse().expect("gateway")),
        device: "eth0".into(),
        source: source.map(|s| s.parse().expect("source")),
        metric,
    }
}

fn config() -> NetworkConfig {
    NetworkConfig {
        interfaces: vec![NetInterface {
            name: "eth0".into(),
            mac: "02:00:00:00:0A:01".into(),
            device_mac: None,
            mtu: 1400,
            addresses: vec![net("10.88.0.5/16"), net("fd88::5/64")],
        }],
        routes: vec![
            route("10.99.0.0/16", None, None, None),
            route("0.0.0.0/0", Some("10.88.0.1"), None, None),
            route(
                "192.168.60.0/24",
                Some("10.88.0.254"),
                Some("10.88.0.5"),
                Some(50),
            ),
            route("172.30.0.0/16", Some("169.254.1.1"), None, None),
            route("::/0", Some("fd88::1"), None, Some(1024)),
        ],
    }
}

/// A veth `name` with `mac` whose peer (`name` + "p") is up.
fn veth(ns: &NetNs, name: &str, mac: &str) {
    let peer = format!("{name}p");
    ns.ip(&[
        "link", "add", name, "address", mac, "type", "veth", "peer", "name", &peer,
    ]);
    ns.ip(&["link", "set", &peer, "up"]);
}

/// The route to `dst` in `ip -j [-6] route show` output.
fn find_route(routes: &Value, dst: &str) -> Value {
    array(routes)
        .into_iter()
        .find(|r| r["dst"] == dst)
        .unwrap_or_else(|| panic!("no route {dst} in {routes}"))
}

#[test]
fn configure_renames_and_configures_the_link_with_that_mac() {
    let ns = NetNs::new("guest");
    veth(&ns, "virt0", "02:00:00:00:0a:01");
    ns.ip(&["link", "set", "virt0", "up"]);
    veth(&ns, "other0", "02:00:00:00:0a:02");

    ns.run(|| guest::configure(&config())).expect("configure");
    ns.run(|| guest::configure(&config()))
        .expect("configure again");

    assert!(ns.link("virt0").is_none());
    let link = ns.link("eth0").expect("renamed to eth0");
    assert_eq!(link["address"], "02:00:00:00:0a:01");
    assert_eq!(link["mtu"], 1400);
    assert!(array(&link["flags"]).iter().any(|f| f == "UP"), "{link}");
    assert!(ns.link("other0").is_some(), "the other link is untouched");

    let addrs = addresses(&ns, "eth0");
    assert!(addrs.contains(&"10.88.0.5/16".to_owned()), "{addrs:?}");
    assert!(addrs.contains(&"fd88::5/64".to_owned()), "{addrs:?}");
    let info = ns.ip_json(&["addr", "show", "dev", "eth0"]);
    let v4 = array(&info[0]["addr_info"])
        .into_iter()
        .find(|a| a["local"] == "10.88.0.5")
        .expect("v4 address");
    assert_eq!(v4["broadcast"], "10.88.255.255");
    let v6 = array(&info[0]["addr_info"])
        .into_iter()
        .find(|a| a["local"] == "fd88::5")
        .expect("v6 address");
    assert!(v6.get("tentative").is_none(), "nodad: usable at once: {v6}");

    let v4_routes = ns.ip_json(&["route", "show", "dev", "eth0"]);
    assert_eq!(find_route(&v4_routes, "default")["gateway"], "10.88.0.1");
    assert_eq!(find_route(&v4_routes, "10.99.0.0/16")["scope"], "link");
    let static_route = find_route(&v4_routes, "192.168.60.0/24");
    assert_eq!(static_route["gateway"], "10.88.0.254");
    assert_eq!(static_route["prefsrc"], "10.88.0.5");
    assert_eq!(static_route["metric"], 50);
    let onlink = find_route(&v4_routes, "172.30.0.0/16");
    assert_eq!(onlink["gateway"], "169.254.1.1");
    assert!(
        array(&onlink["flags"]).iter().any(|f| f == "onlink"),
        "{onlink}"
    );
    let v6_routes = ns.ip_json(&["-6", "route", "show", "dev", "eth0"]);
    assert_eq!(find_route(&v6_routes, "default")["gateway"], "fd88::1");
}

#[test]
fn configure_finds_a_restored_device_by_its_device_mac_and_gives_it_the_mac() {
    let ns = NetNs::new("guestdev");
    // A clone of a template: the device has the template's placeholder MAC, and is up.
    veth(&ns, "virt0", "02:00:00:00:ff:01");
    ns.ip(&["link", "set", "virt0", "up"]);
    veth(&ns, "other0", "02:00:00:00:0a:02");
    let mut cfg = config();
    cfg.interfaces[0].device_mac = Some("02:00:00:00:FF:01".into());

    ns.run(|| guest::configure(&cfg)).expect("configure");
    // Again: the device now has `mac`, which is found instead.
    ns.run(|| guest::configure(&cfg)).expect("configure again");

    assert!(ns.link("virt0").is_none());
    let link = ns.link("eth0").expect("renamed to eth0");
    assert_eq!(link["address"], "02:00:00:00:0a:01");
    assert_eq!(link["mtu"], 1400);
    assert!(array(&link["flags"]).iter().any(|f| f == "UP"), "{link}");
    let other = ns.link("other0").expect("the other link is untouched");
    assert_eq!(other["address"], "02:00:00:00:0a:02");
    assert!(addresses(&ns, "eth0").contains(&"10.88.0.5/16".to_owned()));
    let routes = ns.ip_json(&["route", "show", "dev", "eth0"]);
    assert_eq!(find_route(&routes, "default")["gateway"], "10.88.0.1");
}

#[test]
fn configure_names_both_macs_when_neither_is_found() {
    let ns = NetNs::new("guestdevmac");
    veth(&ns, "virt0", "02:00:00:00:ff:01");
    let mut cfg = config();
    cfg.interfaces[0].device_mac = Some("02:00:00:00:ff:09".into());

    let err = ns.run(|| guest::configure(&cfg)).expect_err("no such MAC");

    assert!(matches!(err, NetError::MacNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("02:00:00:00:ff:09")
            && text.contains("02:00:00:00:0A:01")
            && text.contains("eth0"),
        "{text}"
    );
    let link = ns.link("virt0").expect("nothing was renamed");
    assert_eq!(
        link["address"], "02:00:00:00:ff:01",
        "nor given another MAC"
    );

    cfg.interfaces[0].device_mac = Some("02:00:00:00:ff".into());
    let err = ns
        .run(|| guest::configure(&cfg))
        .expect_err("malformed device MAC");
    assert!(matches!(err, NetError::InvalidMac { .. }), "{err:?}");
}

#[test]
fn configure_names_an_unknown_mac_and_its_interface() {
    let ns = NetNs::new("guestmac");
    veth(&ns, "virt0", "02:00:00:00:0a:01");
    let mut cfg = config();
    cfg.interfaces[0].mac = "02:00:00:00:0b:99".into();
    cfg.interfaces[0].name = "eth3".into();

    let err = ns.run(|| guest::configure(&cfg)).expect_err("no such MAC");

    assert!(matches!(err, NetError::MacNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("02:00:00:00:0b:99") && text.contains("eth3"),
        "{text}"
    );
    assert!(ns.link("virt0").is_some(), "nothing was renamed");
}

#[test]
fn configure_rejects_a_malformed_mac() {
    let ns = NetNs::new("guestbad");
    let mut cfg = config();
    cfg.interfaces[0].mac = "02:00:00:00:0a".into();

    let err = ns
        .run(|| guest::configure(&cfg))
        .expect_err("malformed MAC");

    assert!(matches!(err, NetError::InvalidMac { .. }), "{err:?}");
    assert!(err.to_string().contains("eth0"), "{err}");
}

#[test]
fn a_failing_route_is_named_with_the_kernels_reason() {
    let ns = NetNs::new("guestroute");
    veth(&ns, "virt0", "02:00:00:00:0a:01");
    let mut cfg = config();
    cfg.routes = vec![NetRoute {
        device: "nosuch0".into(),
        ..route("10.50.0.0/16", Some("10.88.0.1"), None, None)
    }];

    let err = ns
        .run(|| guest::configure(&cfg))
        .expect_err("no such device");

    let text = err.to_string();
    assert!(
        text.contains("10.50.0.0/16 via 10.88.0.1 dev nosuch0"),
        "{text}"
    );
    assert!(text.contains("No such device"), "{text}");
}

#[test]
fn loopback_up_sets_lo_up() {
    let ns = NetNs::new("guestlo");
    let lo = ns.link("lo").expect("lo");
    assert!(!array(&lo["flags"]).iter().any(|f| f == "UP"), "{lo}");

    ns.run(guest::loopback_up).expect("loopback_up");

    let lo = ns.link("lo").expect("lo");
    assert!(array(&lo["flags"]).iter().any(|f| f == "UP"), "{lo}");
    assert!(addresses(&ns, "lo").contains(&"127.0.0.1/8".to_owned()));
}
