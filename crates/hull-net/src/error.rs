//! The crate's error type: every variant names the interface, tap, route or namespace and the
//! operation that failed, and carries the errno (`io::Error`) the kernel returned.

use std::io;
use std::path::PathBuf;

/// Why a host- or guest-side network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The rtnetlink socket could not be opened or used.
    #[error("rtnetlink socket: {0}")]
    Socket(#[source] io::Error),
    /// Listing links, addresses, routes or qdiscs failed.
    #[error("listing {what}: {source}")]
    Dump {
        what: &'static str,
        source: io::Error,
    },
    /// An operation on a named interface failed.
    #[error("interface {iface}: {op}: {source}")]
    Interface {
        iface: String,
        op: String,
        source: io::Error,
    },
    /// No link of that name exists in the current network namespace.
    #[error("interface {0}: no such link in this network namespace")]
    NoSuchInterface(String),
    /// The guest has no link with the MAC the host interface has.
    #[error("interface {name}: no link with MAC {mac}")]
    MacNotFound { mac: String, name: String },
    /// A MAC address string is not of the form `aa:bb:cc:dd:ee:ff`.
    #[error("interface {name}: invalid MAC address {mac:?}")]
    InvalidMac { mac: String, name: String },
    /// Creating or configuring a tap device failed.
    #[error("tap {tap}: {op}: {source}")]
    Tap {
        tap: String,
        op: &'static str,
        source: io::Error,
    },
    /// Adding a route failed.
    #[error("route {route}: {source}")]
    Route { route: String, source: io::Error },
    /// Entering or using a network namespace failed.
    #[error("network namespace {}: {op}: {source}", path.display())]
    Netns {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

impl NetError {
    pub(crate) fn iface(iface: &str, op: impl Into<String>, source: io::Error) -> Self {
        Self::Interface {
            iface: iface.to_owned(),
            op: op.into(),
            source,
        }
    }
}
