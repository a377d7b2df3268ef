//! The sock_diag netlink source: one blocking `NETLINK_SOCK_DIAG` socket,
//! requests built with `netlink-packet-sock-diag`, replies walked with
//! `netlink-packet-core`'s buffer types.
//!
//! Replies are decoded header-only ([`InetResponseHeader`]): no extensions are
//! requested, and skipping the attributes the kernel appends anyway
//! (`INET_DIAG_SHUTDOWN`, cgroup id, ...) saves an allocation per socket.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable, Parseable, NLMSG_DONE, NLMSG_ERROR, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::{
    SockDiagDestroy, SockDiagMessage, AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};

use crate::TcpState;

use super::{CensusError, Filter, SocketEntry};

/// `INET_DIAG_NOCOOKIE`: "match any socket with this 4-tuple".
const NO_COOKIE: [u8; 8] = [0xff; 8];

/// Receive buffer size. The kernel sizes dump datagrams after the largest
/// buffer we have offered, capped just under 32 KiB
/// (`netlink_recvmsg` → `max_recvmsg_len`), so 64 KiB is never truncated.
const RECV_BUF: usize = 64 * 1024;

/// How a request failed: here, or in the kernel (with its errno), which the
/// caller names according to the request.
pub(super) enum Failure {
    /// A local failure (socket i/o, decoding).
    Local(CensusError),
    /// The kernel answered with this errno.
    Refused(io::Error),
}

impl From<CensusError> for Failure {
    fn from(e: CensusError) -> Failure {
        Failure::Local(e)
    }
}

impl Failure {
    /// The error for a refusal of request `op` with no more specific name.
    pub(super) fn into_census(self, op: &'static str) -> CensusError {
        match self {
            Failure::Local(e) => e,
            Failure::Refused(source) => CensusError::Kernel { op, source },
        }
    }
}

/// A connected sock_diag socket with its receive buffer.
pub(super) struct DiagSocket {
    socket: Socket,
    buf: Vec<u8>,
    seq: u32,
}

impl DiagSocket {
    /// Opens and connects a `NETLINK_SOCK_DIAG` socket.
    pub(super) fn open() -> Result<DiagSocket, CensusError> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(CensusError::NetlinkUnavailable)?;
        socket
            .bind_auto()
            .map_err(CensusError::NetlinkUnavailable)?;
        socket
            .connect(&NetlinkAddr::new(0, 0))
            .map_err(CensusError::NetlinkUnavailable)?;
        Ok(DiagSocket {
            socket,
            buf: vec![0; RECV_BUF],
            seq: 0,
        })
    }

    /// Dumps the TCP sockets of every family `filter` covers, calling `each`
    /// for those that pass it. One request per family; states are filtered by
    /// the kernel, the rest here.
    pub(super) fn dump(
        &mut self,
        filter: &Filter,
        each: &mut dyn FnMut(SocketEntry),
    ) -> Result<(), Failure> {
        let states = filter.kernel_states();
        if states == 0 {
            return Ok(());
        }
        for (family, v6) in [(AF_INET, false), (AF_INET6, true)] {
            if !filter.family.covers(v6) {
                continue;
            }
            let request = InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                // `from_bits_retain`: the crate's flags stop at CLOSING, but
                // the kernel also takes bit 12 (TCP_NEW_SYN_RECV).
                states: StateFlags::from_bits_retain(states),
                socket_id: if v6 {
                    SocketId::new_v6()
                } else {
                    SocketId::new_v4()
                },
            };
            self.send(
                NLM_F_REQUEST | NLM_F_DUMP,
                SockDiagMessage::InetRequest(request),
            )?;
            self.receive(false, &mut |header| {
                if let Some(entry) = entry_from(header) {
                    if filter.matches(&entry) {
                        each(entry);
                    }
                }
            })?;
        }
        Ok(())
    }

    /// Asks the kernel for the one socket with this 4-tuple (any state).
    ///
    /// The kernel's lookup falls back to a listener when no connection has
    /// the 4-tuple (`inet_lookup` is the same lookup a SYN takes), so the
    /// answer is checked against the 4-tuple asked for.
    pub(super) fn lookup(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Option<SocketEntry>, CensusError> {
        let request = InetRequest {
            family: family_of(local, remote)?,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: socket_id(local, remote, 0),
        };
        self.send(NLM_F_REQUEST, SockDiagMessage::InetRequest(request))?;
        let mut found = None;
        match self.receive(true, &mut |header| found = entry_from(header)) {
            Ok(()) => {}
            Err(Failure::Refused(e)) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(failure) => return Err(failure.into_census("lookup")),
        }
        Ok(found.filter(|e| same_endpoint(e.local, local) && same_endpoint(e.remote, remote)))
    }

    /// Sends `SOCK_DESTROY` for the socket with this 4-tuple and cookie
    /// (0: any cookie) and waits for the kernel's acknowledgement.
    pub(super) fn destroy(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        cookie: u64,
    ) -> Result<(), Failure> {
        let request = InetRequest {
            family: family_of(local, remote)?,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: socket_id(local, remote, cookie),
        };
        // The crate's `SockDiagDestroy` is the same `inet_diag_req_v2` body
        // with the netlink message type set to SOCK_DESTROY (21).
        self.send(
            NLM_F_REQUEST | NLM_F_ACK,
            SockDiagDestroy::new(SockDiagMessage::InetRequest(request)),
        )?;
        self.receive(false, &mut |_| {})
    }

    fn send<M>(&mut self, flags: u16, message: M) -> Result<(), CensusError>
    where
        M: NetlinkSerializable,
    {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        loop {
            match self.socket.send(&bytes, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(CensusError::NetlinkIo { op: "send", source }),
            }
        }
    }

    /// Reads the replies to the last request until `NLMSG_DONE`, an
    /// `NLMSG_ERROR`, or (for a single-socket answer) the end of the datagram
    /// that carried it. Each `SOCK_DIAG_BY_FAMILY` message goes to `each`.
    fn receive(
        &mut self,
        single: bool,
        each: &mut dyn FnMut(&InetResponseHeader),
    ) -> Result<(), Failure> {
        loop {
            let len = loop {
                // MSG_TRUNC: return the datagram's real length, so a
                // truncated read is detected rather than misparsed.
                match self.socket.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => return Err(CensusError::NetlinkIo { op: "recv", source }.into()),
                }
            };
            if len > self.buf.len() {
                return Err(CensusError::Decode(format!(
                    "a {len}-byte datagram does not fit the {}-byte buffer",
                    self.buf.len()
                ))
                .into());
            }
            let mut datagram = &self.buf[..len];
            let mut answered = false;
            while !datagram.is_empty() {
                let message = NetlinkBuffer::new_checked(&datagram).map_err(decode)?;
                let size = message.length() as usize;
                let payload = message.payload();
                if message.sequence_number() == self.seq {
                    match message.message_type() {
                        SOCK_DIAG_BY_FAMILY => {
                            each(&InetResponseHeader::parse(payload).map_err(decode)?);
                            answered = true;
                        }
                        NLMSG_DONE => {
                            // A dump that failed part-way ends with a
                            // negative errno in the DONE message.
                            let code = DoneBuffer::new_checked(&payload)
                                .map(|done| done.code())
                                .unwrap_or(0);
                            return if code < 0 {
                                Err(Failure::Refused(io::Error::from_raw_os_error(-code)))
                            } else {
                                Ok(())
                            };
                        }
                        NLMSG_ERROR => {
                            let error = ErrorBuffer::new_checked(&payload).map_err(decode)?;
                            return match error.code() {
                                // Code 0 is the acknowledgement.
                                None => Ok(()),
                                Some(code) => {
                                    Err(Failure::Refused(io::Error::from_raw_os_error(-code.get())))
                                }
                            };
                        }
                        NLMSG_OVERRUN => {
                            return Err(CensusError::Decode(
                                "the kernel reported a netlink overrun".into(),
                            )
                            .into())
                        }
                        _ => {}
                    }
                }
                // Messages are padded to 4 bytes.
                let next = (size + 3) & !3;
                datagram = datagram.get(next..).unwrap_or(&[]);
            }
            // A single-socket answer is not followed by DONE.
            if answered && single {
                return Ok(());
            }
        }
    }
}

/// The request family for a 4-tuple.
fn family_of(local: SocketAddr, remote: SocketAddr) -> Result<u8, CensusError> {
    match (local, remote) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => Ok(AF_INET),
        (SocketAddr::V6(_), SocketAddr::V6(_)) => Ok(AF_INET6),
        _ => Err(CensusError::MixedFamilies { local, remote }),
    }
}

/// The `inet_diag_sockid` for a 4-tuple. A v6 scope id goes in
/// `idiag_if`, which the kernel needs to find link-local sockets.
fn socket_id(local: SocketAddr, remote: SocketAddr, cookie: u64) -> SocketId {
    let interface_id = match local {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    };
    SocketId {
        source_port: local.port(),
        destination_port: remote.port(),
        source_address: local.ip(),
        destination_address: remote.ip(),
        interface_id,
        cookie: if cookie == 0 {
            NO_COOKIE
        } else {
            cookie_to_kernel(cookie)
        },
    }
}

/// The kernel stores the 64-bit cookie as two native `u32`s, low word first
/// (`sock_diag_save_cookie`).
fn cookie_from_kernel(raw: [u8; 8]) -> u64 {
    let low = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let high = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
    u64::from(low) | (u64::from(high) << 32)
}

fn cookie_to_kernel(cookie: u64) -> [u8; 8] {
    let mut raw = [0; 8];
    raw[..4].copy_from_slice(&(cookie as u32).to_ne_bytes());
    raw[4..].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
    raw
}

/// Turns one reply into an entry; `None` for a state number this crate does
/// not know (a newer kernel), which is skipped.
fn entry_from(header: &InetResponseHeader) -> Option<SocketEntry> {
    let Some(state) = TcpState::from_kernel(header.state) else {
        tracing::debug!(
            state = header.state,
            "skipping a socket in an unknown TCP state"
        );
        return None;
    };
    let id = &header.socket_id;
    Some(SocketEntry {
        local: endpoint(id.source_address, id.source_port, id.interface_id),
        remote: endpoint(id.destination_address, id.destination_port, id.interface_id),
        state,
        recv_queue: header.recv_queue,
        send_queue: header.send_queue,
        inode: u64::from(header.inode),
        uid: header.uid,
        cookie: cookie_from_kernel(id.cookie),
    })
}

/// A socket address; the bound interface becomes the scope id of link-local
/// IPv6 addresses only, where it is part of the address.
fn endpoint(ip: IpAddr, port: u16, interface: u32) -> SocketAddr {
    match ip {
        // fe80::/10 (`Ipv6Addr::is_unicast_link_local` is newer than our MSRV).
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, interface))
        }
        ip => SocketAddr::new(ip, port),
    }
}

/// Equality of endpoints that ignores the IPv6 flow info, and the scope id
/// when the caller left it 0.
fn same_endpoint(got: SocketAddr, wanted: SocketAddr) -> bool {
    match (got, wanted) {
        (SocketAddr::V6(g), SocketAddr::V6(w)) => {
            g.ip() == w.ip()
                && g.port() == w.port()
                && (w.scope_id() == 0 || g.scope_id() == w.scope_id())
        }
        _ => got == wanted,
    }
}

fn decode(e: netlink_packet_core::DecodeError) -> Failure {
    CensusError::Decode(e.to_string()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trips_through_the_kernel_layout() {
        for c in [1u64, 0xdead_beef, 0x1234_5678_9abc_def0, u64::MAX - 1] {
            assert_eq!(cookie_from_kernel(cookie_to_kernel(c)), c);
        }
    }

    #[test]
    fn unknown_cookie_is_sent_as_nocookie() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(socket_id(a, a, 0).cookie, NO_COOKIE);
    }

    #[test]
    fn mixed_families_are_refused() {
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert!(matches!(
            family_of(v4, v6),
            Err(CensusError::MixedFamilies { .. })
        ));
        assert_eq!(family_of(v6, v6).unwrap(), AF_INET6);
    }
}
