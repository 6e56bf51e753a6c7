//! Frames really flow through the redirect filters: an "engine" namespace holds one end of a
//! veth pair with an address, the "container" namespace the other end (`eth0`), attached to a
//! tap whose fd the test reads and writes in place of QEMU. Only addresses inside the two
//! namespaces the test made are used; one datagram is sent, every wait is bounded.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use common::NetNs;
use hull_net::host;

const ENGINE_IP: [u8; 4] = [10, 77, 9, 1];
const CONTAINER_IP: [u8; 4] = [10, 77, 9, 2];
const CONTAINER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x09, 0x02];
const PAYLOAD: &[u8] = b"hull-net traffic check";
/// `struct virtio_net_hdr` in front of every frame (the tap has IFF_VNET_HDR).
const VNET_HDR: usize = 10;
const ETH_ARP: [u8; 2] = [0x08, 0x06];
const ETH_IPV4: [u8; 2] = [0x08, 0x00];

#[test]
fn frames_flow_between_the_veth_and_the_tap_both_ways() {
    let engine = NetNs::new("engine");
    let ctr = NetNs::new("ctr");
    engine.ip(&[
        "link",
        "add",
        "vethA",
        "address",
        "02:00:00:00:09:01",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "address",
        "02:00:00:00:09:02",
        "netns",
        &ctr.name,
    ]);
    engine.ip(&["addr", "add", "10.77.9.1/24", "dev", "vethA"]);
    engine.ip(&["link", "set", "vethA", "up"]);
    ctr.ip(&["addr", "add", "10.77.9.2/24", "dev", "eth0"]);
    ctr.ip(&["link", "set", "eth0", "up"]);

    ctr.run(|| {
        let ifaces = host::inspect().expect("inspect");
        let tap = host::attach(&ifaces[0], "hulltap0").expect("attach");
        set_nonblocking(tap.fd.as_fd());

        engine.run(send_datagram);
        let request = read_frame(tap.fd.as_fd(), is_arp_request_for_container)
            .expect("the engine's ARP request came out of the tap");
        write_frame(tap.fd.as_fd(), &arp_reply(&request));
        let datagram = read_frame(tap.fd.as_fd(), is_our_datagram)
            .expect("the datagram came out of the tap once the reply went in");
        assert_eq!(
            &datagram[0..6],
            &CONTAINER_MAC,
            "sent to the MAC the reply gave"
        );
    });

    let neigh = engine.ip_json(&["neigh", "show", "10.77.9.2", "dev", "vethA"]);
    assert_eq!(neigh[0]["lladdr"], "02:00:00:00:09:02", "{neigh}");
}

fn send_datagram() {
    let sock = UdpSocket::bind((Ipv4Addr::from(ENGINE_IP), 0)).expect("bind in the engine netns");
    sock.send_to(PAYLOAD, (Ipv4Addr::from(CONTAINER_IP), 9))
        .expect("send");
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    // SAFETY: fcntl on a descriptor that `fd` keeps open; F_GETFL/F_SETFL take no pointers.
    let rc = unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK)
    };
    assert!(rc >= 0, "{}", std::io::Error::last_os_error());
}

/// Reads frames (without the vnet header) until one satisfies `want`, for at most 5 s.
fn read_frame(fd: BorrowedFd<'_>, want: fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes; `fd` is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let frame = buf.get(VNET_HDR..n as usize).unwrap_or_default();
        if want(frame) {
            return Some(frame.to_vec());
        }
    }
    None
}

fn write_frame(fd: BorrowedFd<'_>, frame: &[u8]) {
    let mut packet = vec![0u8; VNET_HDR];
    packet.extend_from_slice(frame);
    // SAFETY: `packet` is a live buffer of `packet.len()` bytes; `fd` is open.
    let n = unsafe { libc::write(fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
    assert_eq!(
        n,
        packet.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
}

fn is_arp_request_for_container(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == ETH_ARP && f[20..22] == [0, 1] && f[38..42] == CONTAINER_IP
}

fn is_our_datagram(f: &[u8]) -> bool {
    f.len() > 42 && f[12..14] == ETH_IPV4 && f[23] == 17 && f.ends_with(PAYLOAD)
}

/// The guest's answer to `request`: CONTAINER_IP is at CONTAINER_MAC.
fn arp_reply(request: &[u8]) -> Vec<u8> {
    let (asker_mac, asker_ip) = (&request[22..28], &request[28..32]);
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(asker_mac);
    f.extend_from_slice(&CONTAINER_MAC);
    f.extend_from_slice(&ETH_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&CONTAINER_MAC);
    f.extend_from_slice(&CONTAINER_IP);
    f.extend_from_slice(asker_mac);
    f.extend_from_slice(asker_ip);
    f
}
