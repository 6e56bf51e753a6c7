//! Links (network interfaces) through rtnetlink: list, look up, change, delete.

use std::io;

use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::mac::mac_from_bytes;
use crate::nl::{is_no_device, Netlink};

/// What this crate needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub up: bool,
    pub ether: bool,
    pub kind: Option<InfoKind>,
}

impl Link {
    fn from_message(msg: LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            ether: msg.header.link_layer_type == LinkLayerType::Ether,
            kind: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::Address(addr) => link.mac = mac_from_bytes(&addr),
                LinkAttribute::Mtu(mtu) => link.mtu = mtu,
                LinkAttribute::LinkInfo(infos) => link.kind = info_kind(infos),
                _ => {}
            }
        }
        link
    }
}

fn info_kind(infos: Vec<LinkInfo>) -> Option<InfoKind> {
    infos.into_iter().find_map(|info| match info {
        LinkInfo::Kind(kind) => Some(kind),
        _ => None,
    })
}

fn links_of(replies: Vec<RouteNetlinkMessage>) -> Vec<Link> {
    replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
            _ => None,
        })
        .collect()
}

/// Every link of the socket's network namespace.
pub(crate) fn dump(nl: &mut Netlink) -> io::Result<Vec<Link>> {
    let replies = nl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    Ok(links_of(replies))
}

/// The link called `name`, `None` if there is none.
pub(crate) fn by_name(nl: &mut Netlink, name: &str) -> io::Result<Option<Link>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    match nl.get(RouteNetlinkMessage::GetLink(msg)) {
        Ok(replies) => Ok(links_of(replies).into_iter().next()),
        Err(e) if is_no_device(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A change to a link's state; `None` fields are left as they are.
#[derive(Debug, Default)]
pub(crate) struct LinkChange<'a> {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub name: Option<&'a str>,
    /// The link-layer (MAC) address; most drivers want the link down for it.
    pub address: Option<[u8; 6]>,
}

/// Applies `change` to the link with `index` (RTM_SETLINK).
pub(crate) fn set(nl: &mut Netlink, index: u32, change: &LinkChange<'_>) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if let Some(up) = change.up {
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
    }
    if let Some(mtu) = change.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(name) = change.name {
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    }
    if let Some(mac) = change.address {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    nl.ack(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Deletes the link with `index`.
pub(crate) fn delete(nl: &mut Netlink, index: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    nl.ack(RouteNetlinkMessage::DelLink(msg), 0)
}
