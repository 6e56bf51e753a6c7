//! The traffic-control objects of the tcfilter model: an `ingress` qdisc per device and a u32
//! match-all filter whose `mirred egress redirect` action sends every frame to the peer.

use std::io;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirror, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::nl::Netlink;

const INGRESS_KIND: &str = "ingress";
/// The ingress qdisc's handle, `ffff:`.
const INGRESS_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};
/// `protocol all`: ETH_P_ALL in network byte order, as the kernel reads `tcm_info`'s low half.
const PROTOCOL_ALL: u16 = (libc::ETH_P_ALL as u16).to_be();

fn ingress_message(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle::INGRESS;
    msg.header.handle = INGRESS_HANDLE;
    msg
}

/// `tc qdisc add dev <index> ingress`; fails with EEXIST if there already is one.
pub(crate) fn add_ingress(nl: &mut Netlink, index: u32) -> io::Result<()> {
    let mut msg = ingress_message(index);
    msg.attributes
        .push(TcAttribute::Kind(INGRESS_KIND.to_owned()));
    nl.ack(
        RouteNetlinkMessage::NewQueueDiscipline(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// `tc qdisc del dev <index> ingress` (its filters go with it).
pub(crate) fn del_ingress(nl: &mut Netlink, index: u32) -> io::Result<()> {
    nl.ack(
        RouteNetlinkMessage::DelQueueDiscipline(ingress_message(index)),
        0,
    )
}

/// Whether the device with `index` has an ingress qdisc.
pub(crate) fn has_ingress(nl: &mut Netlink, index: u32) -> io::Result<bool> {
    let replies = nl.dump(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()))?;
    Ok(replies.iter().any(|m| match m {
        RouteNetlinkMessage::NewQueueDiscipline(q) => {
            q.header.index == index as i32 && q.header.parent == TcHandle::INGRESS
        }
        _ => false,
    }))
}

/// `tc filter add dev <from> parent ffff: protocol all u32 match u32 0 0
///  action mirred egress redirect dev <to>`.
pub(crate) fn add_redirect(nl: &mut Netlink, from: u32, to: u32) -> io::Result<()> {
    let mut msg = TcMessage::with_index(from as i32);
    msg.header.parent = INGRESS_HANDLE;
    msg.header.info = u32::from(PROTOCOL_ALL); // priority 0: the kernel picks one
    msg.attributes
        .push(TcAttribute::Kind(TcFilterU32::KIND.to_owned()));
    msg.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Selector(match_all())),
        TcOption::U32(TcFilterU32Option::Action(vec![redirect_to(to)])),
    ]));
    nl.ack(
        RouteNetlinkMessage::NewTrafficFilter(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// A terminal u32 selector with one key that matches everything (`match u32 0 0`).
fn match_all() -> TcU32Selector {
    let mut sel = TcU32Selector::default();
    sel.flags = TcU32SelectorFlags::Terminal;
    sel.nkeys = 1;
    sel.keys = vec![TcU32Key::default()];
    sel
}

/// `action mirred egress redirect dev <to>` (the frame is stolen from its device).
fn redirect_to(to: u32) -> TcAction {
    let mut mirror = TcMirror::default();
    mirror.generic.action = TcActionType::Stolen;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = to;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind(TcActionMirror::KIND.to_owned()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_all_is_big_endian() {
        assert_eq!(PROTOCOL_ALL.to_ne_bytes(), [0x00, 0x03]);
    }

    #[test]
    fn match_all_has_one_zero_key() {
        let sel = match_all();
        assert_eq!(sel.nkeys, 1);
        assert_eq!(sel.keys, vec![TcU32Key::default()]);
        assert_eq!(sel.keys[0].mask, 0);
    }
}
