//! hull's container networking: the engine's interfaces, wired into the VM.
//!
//! An engine (podman/netavark, docker, containerd + CNI) gives the container a network
//! namespace with one or more veths (`eth0`, addresses, routes). The monitor joins that
//! namespace before it starts QEMU and, for each Ethernet interface, uses the **tcfilter**
//! model of Kata Containers: a tap device in the same namespace, an `ingress` qdisc on both,
//! and a u32 match-all filter with `mirred egress redirect` each way (veth → tap, tap → veth).
//! No bridge, no address moved or changed on the host side. QEMU gets the tap's descriptor
//! (`-netdev tap,fd=N`) and a virtio-net device with the veth's MAC.
//!
//! * [`host`]: [`host::inspect`] and [`host::routes`] read the namespace,
//!   [`host::network_config`] turns that into the protocol's [`NetworkConfig`] for the agent,
//!   [`host::attach`] / [`host::detach`] wire and unwire an interface, and
//!   [`host::cleanup_netns`] removes what a killed monitor left behind.
//! * [`guest`]: the agent finds each device by MAC and gives it the host interface's name,
//!   MTU, addresses and routes ([`guest::configure`]), and sets `lo` up
//!   ([`guest::loopback_up`]).
//! * [`netns`]: run a closure in another network namespace on a short-lived thread.
//!
//! Everything is synchronous rtnetlink (`netlink-packet-route` over `netlink-sys`); nothing
//! runs `ip` or `tc`.
//!
//! [`NetworkConfig`]: hull_protocol::NetworkConfig

// No panics on any input path: errors are returned (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod link;
mod mac;
mod nl;
mod tc;
mod tun;

pub mod guest;
pub mod host;
pub mod netns;

pub use error::NetError;
pub use mac::{format_mac, parse_mac};
