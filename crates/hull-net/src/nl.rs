//! A blocking rtnetlink socket: one request at a time, replies read until the kernel's ack,
//! `NLMSG_DONE` or error. The socket belongs to the network namespace of the thread that
//! opened it.

use std::io;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Large enough for any datagram of a dump (the kernel fills at most 32 KiB by default).
const RECV_BUF: usize = 64 * 1024;

pub(crate) struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// Opens an rtnetlink socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self { socket, seq: 0 })
    }

    /// Sends a request that changes something and waits for its ack.
    pub(crate) fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        self.receive(|_| ())
    }

    /// Sends a request for one object (e.g. a link by name) and returns the replies.
    pub(crate) fn get(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.send(msg, NLM_F_REQUEST | NLM_F_ACK)?;
        let mut out = Vec::new();
        self.receive(|m| out.push(m))?;
        Ok(out)
    }

    /// Sends a dump request and returns every object of the reply.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.receive(|m| out.push(m))?;
        Ok(out)
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        let sent = self.socket.send(&buf, 0)?;
        if sent != buf.len() {
            return Err(io::Error::other("short netlink send"));
        }
        Ok(())
    }

    /// Reads the replies to the last request, handing each object to `each`, until the
    /// request is finished (ack or end of dump) or failed (the kernel's errno).
    fn receive(&mut self, mut each: impl FnMut(RouteNetlinkMessage)) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
        loop {
            buf.clear();
            let len = self.socket.recv(&mut buf, libc::MSG_TRUNC)?;
            if len > buf.len() {
                return Err(io::Error::other(
                    "netlink reply larger than the receive buffer",
                ));
            }
            if let Some(done) = self.process(&buf, &mut each)? {
                return done;
            }
        }
    }

    /// Handles one datagram; `Some` once the request is finished.
    fn process(
        &self,
        mut data: &[u8],
        each: &mut impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<Option<io::Result<()>>> {
        while !data.is_empty() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = aligned(msg.header.length as usize).min(data.len());
            if len == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "empty netlink message",
                ));
            }
            data = &data[len..];
            if msg.header.sequence_number != self.seq {
                continue;
            }
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => each(m),
                NetlinkPayload::Error(e) if e.code.is_some() => return Ok(Some(Err(e.to_io()))),
                NetlinkPayload::Error(_) => return Ok(Some(Ok(()))),
                NetlinkPayload::Done(d) if d.code != 0 => {
                    return Ok(Some(Err(io::Error::from_raw_os_error(d.code.abs()))))
                }
                NetlinkPayload::Done(_) => return Ok(Some(Ok(()))),
                _ => {}
            }
        }
        Ok(None)
    }
}

fn aligned(len: usize) -> usize {
    (len + 3) & !3
}

/// `true` for the errno of a missing device.
pub(crate) fn is_no_device(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENODEV)
}
