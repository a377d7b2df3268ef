//! Client source addresses on loopback: `127.1.x.y`, one allocator for the
//! lab, the load generator and the bench.
//!
//! # Why 127.1.x.y
//!
//! A client socket is one 4-tuple (source address, source port, server
//! address, server port). With one source address, every connection to one
//! server draws its source port from the same ephemeral range
//! (`net.ipv4.ip_local_port_range`, about 28 000 ports by default), and a
//! client that closes first keeps each port in TIME-WAIT for 60 s: a churn of
//! a few hundred connections a second runs out of ports within a minute, and
//! every `connect()` searches past the TIME-WAIT entries for a free one. Each
//! source address has an ephemeral port space of its own, and Linux routes all
//! of 127.0.0.0/8 to the loopback interface, so spreading the clients over
//! many addresses means the client side never runs out of ports, however many
//! TIME-WAIT entries it keeps (peer-first leaves every one with the client).
//!
//! The addresses come from 127.1.0.0/16, never from 127.0.0.0/16: the servers
//! listen on 127.0.0.1, and a census can tell the clients' sockets from
//! everything else on the machine by address ([`is_source`]).
//!
//! # Which addresses
//!
//! [`source`] counts `127.1.0.1`, `127.1.0.2`, … `127.1.0.254`, `127.1.1.1`,
//! … up to `127.1.255.254`: [`COUNT`] addresses, then it starts over. The
//! last octet is never 0 or 255, so no address looks like a network or a
//! broadcast address to a tool (or a reader) that assumes /24 subnets.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Host octets per third octet: 1 to 254.
const PER_BLOCK: usize = 254;

/// How many distinct source addresses [`source`] yields before it starts over.
pub const COUNT: usize = PER_BLOCK * 256;

/// The `i`-th client source address: `127.1.0.1` for 0, `127.1.0.254` for
/// 253, `127.1.1.1` for 254, …; `i` counts modulo [`COUNT`].
///
/// # Examples
///
/// ```
/// use std::net::Ipv4Addr;
/// use farewell_testkit::support::addr;
///
/// assert_eq!(addr::source(0), Ipv4Addr::new(127, 1, 0, 1));
/// assert_eq!(addr::source(299), Ipv4Addr::new(127, 1, 1, 46));
/// assert_eq!(addr::source(addr::COUNT), addr::source(0));
/// ```
pub fn source(i: usize) -> Ipv4Addr {
    let i = i % COUNT;
    Ipv4Addr::new(127, 1, (i / PER_BLOCK) as u8, (i % PER_BLOCK + 1) as u8)
}

/// The first `n` source addresses (at most [`COUNT`]), in order.
pub fn sources(n: usize) -> impl Iterator<Item = Ipv4Addr> {
    (0..n.min(COUNT)).map(source)
}

/// True for an address [`source`] can yield: in 127.1.0.0/16, last octet 1 to
/// 254. A census uses it to count only the clients' sockets.
pub fn is_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, _, d] = ip.octets();
            a == 127 && b == 1 && d != 0 && d != 255
        }
        IpAddr::V6(_) => false,
    }
}

/// Hands out [`source`] addresses round robin, shared by clones (all the
/// clients of one bench run).
#[derive(Clone, Debug, Default)]
pub struct SourceAddrs {
    next: Arc<AtomicU64>,
}

impl SourceAddrs {
    /// How many distinct source addresses are used in turn ([`COUNT`]).
    pub const COUNT: u64 = COUNT as u64;

    /// The next source address.
    pub fn next(&self) -> IpAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % Self::COUNT;
        IpAddr::V4(source(i as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sources_count_up_from_127_1_0_1_skipping_0_and_255() {
        assert_eq!(source(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source(253), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(source(254), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(source(COUNT - 1), Ipv4Addr::new(127, 1, 255, 254));
    }

    #[test]
    fn every_source_is_distinct_until_the_count_then_they_repeat() {
        let all: HashSet<Ipv4Addr> = sources(usize::MAX).collect();
        assert_eq!(all.len(), COUNT);
        assert_eq!(source(COUNT + 5), source(5));
        assert!(all.iter().all(|ip| is_source(IpAddr::V4(*ip))));
        let last_octets: HashSet<u8> = all.iter().map(|ip| ip.octets()[3]).collect();
        assert!(!last_octets.contains(&0) && !last_octets.contains(&255));
    }

    #[test]
    fn servers_and_other_addresses_are_not_sources() {
        for ip in [
            "127.0.0.1",
            "127.1.0.0",
            "127.1.3.255",
            "127.2.0.1",
            "10.1.0.1",
            "::1",
        ] {
            assert!(!is_source(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn round_robin_is_shared_by_clones() {
        let a = SourceAddrs::default();
        let b = a.clone();
        assert_eq!(a.next(), IpAddr::V4(source(0)));
        assert_eq!(b.next(), IpAddr::V4(source(1)));
        assert_eq!(a.next(), IpAddr::V4(source(2)));
    }
}
