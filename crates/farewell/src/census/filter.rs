//! Which sockets a census asks for.

use std::net::{IpAddr, SocketAddr};

use crate::TcpState;

use super::{SocketEntry, StateSet};

/// Which address families a census covers.
///
/// The kernel files a socket under the family it was created with: an IPv4
/// connection accepted by a dual-stack IPv6 listener is an `AF_INET6` socket
/// with v4-mapped addresses (`[::ffff:127.0.0.1]:80`), so it is counted under
/// [`Families::V6`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Families {
    /// `AF_INET` sockets only (`/proc/net/tcp`).
    V4,
    /// `AF_INET6` sockets only (`/proc/net/tcp6`).
    V6,
    /// Both.
    #[default]
    Both,
}

impl Families {
    /// True when sockets of this family (`v6` = `AF_INET6`) are covered.
    pub(crate) fn covers(self, v6: bool) -> bool {
        match self {
            Families::V4 => !v6,
            Families::V6 => v6,
            Families::Both => true,
        }
    }
}

/// Which TCP sockets a census returns.
///
/// # Where the filtering happens
///
/// * **States** are filtered in the kernel (the `idiag_states` bitmask of
///   the netlink request), so a TIME-WAIT-only census of a busy host does not
///   copy its established sockets, and again in user space against the state
///   each entry reports (see the notes on [`SocketEntry::state`]).
/// * **Ports** and the **family** are filtered in user space, after the
///   dump: the kernel only filters ports with an `INET_DIAG_REQ_BYTECODE`
///   program, which `netlink-packet-sock-diag` cannot encode. Each family is
///   one dump request, and a family not asked for is not requested at all.
/// * The /proc source filters everything in user space.
///
/// # Examples
///
/// ```
/// use farewell::census::{Families, Filter, StateSet};
/// use farewell::TcpState;
///
/// // Our server's TIME-WAIT entries on port 8080, IPv4 only.
/// let filter = Filter::local_port(8080)
///     .states(StateSet::single(TcpState::TimeWait))
///     .family(Families::V4);
/// assert_eq!(filter.local_port, Some(8080));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The states wanted.
    pub states: StateSet,
    /// Only sockets whose local port is this.
    pub local_port: Option<u16>,
    /// Only sockets whose local address is this (a listener on `0.0.0.0` or
    /// `::` accepts connections whose local address is the one dialled).
    pub local_ip: Option<IpAddr>,
    /// Only sockets whose remote port is this.
    pub remote_port: Option<u16>,
    /// Only sockets whose remote address is this.
    pub remote_ip: Option<IpAddr>,
    /// The address families wanted.
    pub family: Families,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter::all()
    }
}

impl Filter {
    /// Every TCP socket of both families.
    pub fn all() -> Filter {
        Filter {
            states: StateSet::all(),
            local_port: None,
            local_ip: None,
            remote_port: None,
            remote_ip: None,
            family: Families::Both,
        }
    }

    /// Every socket whose local port is `port` (a server's listener and the
    /// connections it accepted).
    pub fn local_port(port: u16) -> Filter {
        Filter::all().with_local_port(port)
    }

    /// Every socket whose local address is exactly `addr`: a server's
    /// listener and accepted connections, and nothing else.
    ///
    /// # Notes
    ///
    /// Prefer this to [`Filter::local_port`] when clients bind their own
    /// source addresses: a client socket on `127.1.0.7:8080` has local port
    /// 8080 too, while the server's listener holds `127.0.0.1:8080`.
    pub fn local(addr: SocketAddr) -> Filter {
        Filter::all()
            .with_local_port(addr.port())
            .with_local_ip(addr.ip())
    }

    /// Every socket whose remote port is `port` (a client's connections to
    /// a server on that port).
    pub fn remote_port(port: u16) -> Filter {
        Filter::all().with_remote_port(port)
    }

    /// Every socket whose remote address is exactly `addr`: the client side
    /// of every connection to a server on `addr` (TIME-WAIT kept by clients,
    /// say), and nothing else.
    ///
    /// # Notes
    ///
    /// Prefer this to [`Filter::remote_port`] when other servers may use the
    /// same port number on other loopback addresses.
    pub fn remote(addr: SocketAddr) -> Filter {
        Filter::all()
            .with_remote_port(addr.port())
            .with_remote_ip(addr.ip())
    }

    /// This filter, restricted to the local port `port`.
    #[must_use]
    pub fn with_local_port(mut self, port: u16) -> Filter {
        self.local_port = Some(port);
        self
    }

    /// This filter, restricted to the local address `ip`.
    #[must_use]
    pub fn with_local_ip(mut self, ip: IpAddr) -> Filter {
        self.local_ip = Some(ip);
        self
    }

    /// This filter, restricted to the remote port `port`.
    #[must_use]
    pub fn with_remote_port(mut self, port: u16) -> Filter {
        self.remote_port = Some(port);
        self
    }

    /// This filter, restricted to the remote address `ip`.
    #[must_use]
    pub fn with_remote_ip(mut self, ip: IpAddr) -> Filter {
        self.remote_ip = Some(ip);
        self
    }

    /// This filter, restricted to `states` (replacing the states it had).
    #[must_use]
    pub fn states(mut self, states: impl Into<StateSet>) -> Filter {
        self.states = states.into();
        self
    }

    /// This filter, restricted to `family`.
    #[must_use]
    pub fn family(mut self, family: Families) -> Filter {
        self.family = family;
        self
    }

    /// True when `entry` passes the filter.
    pub fn matches(&self, entry: &SocketEntry) -> bool {
        self.states.contains(entry.state)
            && port_ok(self.local_port, entry.local.port())
            && self.local_ip.map_or(true, |ip| ip == entry.local.ip())
            && port_ok(self.remote_port, entry.remote.port())
            && self.remote_ip.map_or(true, |ip| ip == entry.remote.ip())
            && self.family.covers(entry.local.is_ipv6())
    }

    /// The `idiag_states` mask to send: the states asked for, plus
    /// `TCP_NEW_SYN_RECV` with `SYN-RECEIVED` (and the reverse), because
    /// request sockets are reported as `SYN-RECEIVED`.
    ///
    /// Time-wait entries need no such widening: the kernel filters them by
    /// the sub-state it reports (`FIN-WAIT-2` for an orphan), as the test
    /// `orphaned_fin_wait_2_is_a_reduced_entry_reported_as_fin_wait_2` checks.
    pub(crate) fn kernel_states(&self) -> u32 {
        let mut set = self.states;
        if set.contains(TcpState::SynReceived) || set.contains(TcpState::NewSynReceived) {
            set = set
                .with(TcpState::SynReceived)
                .with(TcpState::NewSynReceived);
        }
        set.bits()
    }
}

fn port_ok(wanted: Option<u16>, port: u16) -> bool {
    wanted.is_none() || wanted == Some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(local: &str, remote: &str, state: TcpState) -> SocketEntry {
        SocketEntry {
            local: local.parse::<SocketAddr>().unwrap(),
            remote: remote.parse::<SocketAddr>().unwrap(),
            state,
            recv_queue: 0,
            send_queue: 0,
            inode: 0,
            uid: 0,
            cookie: 0,
        }
    }

    #[test]
    fn all_matches_everything() {
        let e = entry("127.0.0.1:80", "127.0.0.1:5000", TcpState::Established);
        assert!(Filter::all().matches(&e));
        assert!(Filter::default().matches(&e));
    }

    #[test]
    fn ports_states_and_family() {
        let e = entry("127.0.0.1:80", "127.0.0.1:5000", TcpState::TimeWait);
        assert!(Filter::local_port(80).matches(&e));
        assert!(!Filter::local_port(5000).matches(&e));
        assert!(Filter::remote_port(5000).matches(&e));
        assert!(Filter::local_port(80).with_remote_port(5000).matches(&e));
        assert!(!Filter::local_port(80).with_remote_port(5001).matches(&e));
        assert!(Filter::all().states(TcpState::TimeWait).matches(&e));
        assert!(!Filter::all().states(TcpState::Established).matches(&e));
        assert!(Filter::all().family(Families::V4).matches(&e));
        assert!(!Filter::all().family(Families::V6).matches(&e));

        let mapped = entry(
            "[::ffff:127.0.0.1]:80",
            "[::ffff:127.0.0.1]:5000",
            TcpState::Established,
        );
        assert!(Filter::all().family(Families::V6).matches(&mapped));
        assert!(!Filter::all().family(Families::V4).matches(&mapped));
    }

    #[test]
    fn local_address_tells_a_server_from_a_client_on_the_same_port() {
        let server = entry("127.0.0.1:8080", "127.1.0.7:40000", TcpState::Established);
        // A client that bound its own source address got the same port number.
        let client = entry("127.1.0.7:8080", "127.0.0.1:9090", TcpState::TimeWait);
        let addr = "127.0.0.1:8080".parse().unwrap();
        assert!(Filter::local(addr).matches(&server));
        assert!(!Filter::local(addr).matches(&client));
        assert!(Filter::local_port(8080).matches(&client));
    }

    #[test]
    fn remote_address_tells_a_servers_clients_from_another_servers_on_the_same_port() {
        // Two servers on port 8080 of two loopback addresses; one client each.
        let ours = entry("127.1.0.7:40000", "127.0.0.1:8080", TcpState::TimeWait);
        let theirs = entry("127.1.0.8:40000", "127.0.0.2:8080", TcpState::TimeWait);
        let server = "127.0.0.1:8080".parse().unwrap();
        assert!(Filter::remote(server).matches(&ours));
        assert!(!Filter::remote(server).matches(&theirs));
        assert!(Filter::remote_port(8080).matches(&theirs));
    }

    #[test]
    fn kernel_states_widen_for_request_sockets_only() {
        let syn = Filter::all().states(TcpState::SynReceived).kernel_states();
        assert_eq!(syn, (1 << 3) | (1 << 12));
        let fw2 = Filter::all().states(TcpState::FinWait2).kernel_states();
        assert_eq!(fw2, 1 << 5);
        let tw = Filter::all().states(TcpState::TimeWait).kernel_states();
        assert_eq!(tw, 1 << 6);
    }
}
