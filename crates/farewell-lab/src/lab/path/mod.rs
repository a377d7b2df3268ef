//! Real network paths between a server and its clients, for the lab, the
//! tests and the load generator: loopback has no round-trip time, no rate
//! limit and no loss, and hides what a teardown does to a peer on a network.
//!
//! | path | what it is | mechanism |
//! |---|---|---|
//! | [`loopback`](PathKind::Loopback) | 127.0.0.1 of this process's namespace | none |
//! | [`slow`](PathKind::Slow) | two namespaces joined by a veth pair | htb rate limit on both ends' egress, small pfifo queue |
//! | [`wan`](PathKind::Wan) | server, middle and client namespaces, the middle joined to each by a veth pair | a user-space [`forwarder`] in the middle holds every frame for the one-way delay; nftables drops at random |
//!
//! A [`PathSpec`] says which path to make, with its settings; it parses
//! from and prints as `slow:rate=500kbit` or `wan:delay=50ms,loss=2%`. A
//! [`NetPath`] owns its namespaces and threads and removes them when
//! dropped. It reports the mechanism it uses ([`NetPath::mechanism`]) and
//! the round-trip time it measured ([`NetPath::rtt`]: the fastest of a few
//! TCP connects, SYN to SYN-ACK). Sockets keep the namespace they were
//! created in, so a caller makes them with [`NetPath::server`] and
//! [`NetPath::client`] (a closure run on a thread inside that end's
//! namespace) and may then use them from any thread or runtime; the census
//! is read through [`NetPath::server`] too, as it answers for the calling
//! thread's namespace.
//!
//! On every path but loopback the server is [`SERVER_IP`] and the client
//! [`CLIENT_IP`], a private /30 that exists only inside the path's own
//! namespaces: no frame ever leaves them. The veth ends of the server and
//! the client have TX checksum, TCP segmentation and generic segmentation
//! offload off, so every frame is a real one: no larger than the MTU, its
//! checksum complete (the forwarder needs that, see [`forwarder`]; the rate
//! limit then queues frames, not 64 KiB super-packets).
//!
//! Why this way, on a kernel without `sch_netem`: the delay is a user-space
//! forwarder because nothing else in this kernel holds a frame back; the
//! loss is nftables (`numgen random`) because a frame dropped by the kernel
//! on its way is what TCP meets on a real network (the sender learns of it
//! only from the ACKs that do not come), and the rule's counters say how
//! many it dropped ([`NetPath::dropped`]). The loss rule sits on the egress
//! of the middle's two ends, so the server and client namespaces stay plain
//! hosts.
//!
//! Making and deleting a path runs `ip`, `tc` and `nft` (forks): see the
//! fork hazard in [`netns`]. Needs `CAP_NET_ADMIN` and `CAP_SYS_ADMIN`,
//! and the Debian packages `iproute2` (`ip`, `tc`) and `nftables` (`nft`,
//! for `wan`); [`PathKind::unavailable`] says what is missing.
//!
//! # Example
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use std::time::Duration;
//!
//! use farewell_lab::lab::path::{NetPath, PathKind};
//!
//! # fn main() -> std::io::Result<()> {
//! let path = NetPath::new(PathKind::Wan.into())?; // 20 ms each way, 1% loss
//! eprintln!("{path}"); // wan: veth + user-space forwarder 20 ms each way + …, RTT 40.38 ms
//!
//! let listener = path.server(|| TcpListener::bind((path.server_ip(), 0)))??;
//! let to = listener.local_addr()?;
//! let mut client = path.client(|| TcpStream::connect_timeout(&to, Duration::from_secs(5)))??;
//! let (mut server, _) = listener.accept()?;
//! server.write_all(b"hello")?;
//! let mut got = [0u8; 5];
//! client.read_exact(&mut got)?;
//!
//! // The census answers for the namespace of the thread that reads it.
//! let table = path.server(|| farewell::census::dump(&farewell::census::Filter::all()))?;
//! # drop(table);
//! # Ok(())
//! # }
//! ```

pub mod forwarder;
mod shape;
mod spec;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use forwarder::ForwarderStats;
pub use spec::{PathKind, PathSpec, PathSpecError, Slow, Wan};

use super::netns::{self, Netns};
use crate::sys::packet as sys;
use forwarder::Forwarder;
use sys::Offload;

/// The server's address on every path but loopback.
pub const SERVER_IP: Ipv4Addr = netns::ADDR_A;
/// The client's address on every path but loopback.
pub const CLIENT_IP: Ipv4Addr = netns::ADDR_B;

/// The server's veth end (in the server's namespace).
const SERVER_END: &str = netns::VETH_A;
/// The client's veth end (in the client's namespace).
const CLIENT_END: &str = netns::VETH_B;
/// The middle's end towards the server (`wan`).
const MIDDLE_SERVER_END: &str = "fw-ma";
/// The middle's end towards the client (`wan`).
const MIDDLE_CLIENT_END: &str = "fw-mb";

/// How many TCP connects measure a path's round-trip time.
const RTT_PROBES: usize = 5;
/// How long one probe connect may take (a lost SYN is sent again after 1 s, 3 s).
const PROBE_BOUND: Duration = Duration::from_secs(5);

static NEXT_PATH: AtomicUsize = AtomicUsize::new(0);

/// The namespaces of a path other than loopback.
#[derive(Debug)]
struct Hosts {
    server: Netns,
    client: Netns,
    middle: Option<Netns>,
}

/// A network path made for a run: its namespaces, its shaping and its
/// forwarder, all removed on drop (the forwarder's threads stop and are
/// joined first, then the namespaces are deleted).
///
/// Dropping blocks briefly: it joins the forwarder's threads (within about
/// [`forwarder::TICK`]) and runs `ip netns del`; from async code, drop it in
/// `spawn_blocking` where that matters. Sockets made in the path's
/// namespaces that are still open when it is dropped keep working as far as
/// their own namespace goes, but the link is gone: drop them first.
#[derive(Debug)]
pub struct NetPath {
    spec: PathSpec,
    rtt: Duration,
    forwarder: Option<Forwarder>,
    hosts: Option<Hosts>,
}

impl NetPath {
    /// Makes the path and measures its round-trip time. Blocks (it runs
    /// `ip`, `tc` and `nft`, and probes the path): from async code, call it
    /// in `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for impossible settings; otherwise when a namespace,
    /// a link, the shaping or the forwarder cannot be made (no privileges,
    /// a missing tool: see [`PathKind::unavailable`]), or when no probe
    /// connection crosses the finished path. Whatever was made is removed.
    pub fn new(spec: PathSpec) -> io::Result<NetPath> {
        spec.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut path = NetPath {
            spec,
            rtt: Duration::ZERO,
            forwarder: None,
            hosts: None,
        };
        match spec {
            PathSpec::Loopback => {}
            PathSpec::Slow(slow) => path.make_slow(slow)?,
            PathSpec::Wan(wan) => path.make_wan(wan)?,
        }
        path.rtt = path.measure_rtt().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the {} path carries no TCP connection: {e}", spec.kind()),
            )
        })?;
        Ok(path)
    }

    fn make_slow(&mut self, slow: Slow) -> io::Result<()> {
        let hosts = self.hosts.insert(Hosts {
            server: Netns::new("slow-srv")?,
            client: Netns::new("slow-cli")?,
            middle: None,
        });
        hosts
            .server
            .add_veth(SERVER_END, &hosts.client, CLIENT_END)?;
        host_end(&hosts.server, SERVER_END, SERVER_IP)?;
        host_end(&hosts.client, CLIENT_END, CLIENT_IP)?;
        shape::limit_rate(&hosts.server, SERVER_END, slow.rate, slow.queue)?;
        shape::limit_rate(&hosts.client, CLIENT_END, slow.rate, slow.queue)
    }

    fn make_wan(&mut self, wan: Wan) -> io::Result<()> {
        let hosts = self.hosts.insert(Hosts {
            server: Netns::new("wan-srv")?,
            client: Netns::new("wan-cli")?,
            middle: None,
        });
        let middle = hosts.middle.insert(Netns::new("wan-mid")?);
        hosts
            .server
            .add_veth(SERVER_END, middle, MIDDLE_SERVER_END)?;
        hosts
            .client
            .add_veth(CLIENT_END, middle, MIDDLE_CLIENT_END)?;
        for end in [MIDDLE_SERVER_END, MIDDLE_CLIENT_END] {
            // No IPv6 link-local address either: the middle never speaks.
            middle.ip(&["link", "set", "dev", end, "addrgenmode", "none"])?;
            middle.ip(&["link", "set", "dev", end, "up"])?;
        }
        host_end(&hosts.server, SERVER_END, SERVER_IP)?;
        host_end(&hosts.client, CLIENT_END, CLIENT_IP)?;
        if let Some(rate) = wan.rate {
            shape::limit_rate(&hosts.server, SERVER_END, rate, Slow::default().queue)?;
            shape::limit_rate(&hosts.client, CLIENT_END, rate, Slow::default().queue)?;
        }
        let per_10000 = (wan.loss_percent * 100.0).round() as u32;
        if per_10000 > 0 {
            shape::drop_at_random(middle, &[MIDDLE_SERVER_END, MIDDLE_CLIENT_END], per_10000)?;
        }
        let name = format!("fwd{}", NEXT_PATH.fetch_add(1, Ordering::Relaxed) % 100_000);
        self.forwarder = Some(Forwarder::start(
            middle,
            [MIDDLE_SERVER_END, MIDDLE_CLIENT_END],
            wan.delay,
            &name,
        )?);
        Ok(())
    }

    /// The path's kind.
    pub fn kind(&self) -> PathKind {
        self.spec.kind()
    }

    /// The settings the path was made with.
    pub fn spec(&self) -> &PathSpec {
        &self.spec
    }

    /// How the path is made, for people: "veth + htb 4 Mbit/s each way,
    /// 32-frame queue".
    pub fn mechanism(&self) -> String {
        self.spec.mechanism()
    }

    /// The round-trip time measured when the path was made: the fastest of
    /// a few TCP connects from the client to the server (a connect takes one
    /// SYN → SYN-ACK round trip).
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// Measures the round-trip time again, as [`rtt`](Self::rtt) describes.
    /// Every probe connection is reset by the client, and whatever reached
    /// the listener is dropped with it: nothing stays in either socket table.
    ///
    /// # Errors
    ///
    /// When no probe connects within its bound (5 s each).
    pub fn measure_rtt(&self) -> io::Result<Duration> {
        let listener = self.server(|| TcpListener::bind((self.server_ip(), 0)))??;
        let to = listener.local_addr()?;
        self.client(|| probe_rtt(to))?
    }

    /// The address a client connects to: 127.0.0.1 on loopback, [`SERVER_IP`] otherwise.
    pub fn server_ip(&self) -> IpAddr {
        match self.hosts {
            None => Ipv4Addr::LOCALHOST.into(),
            Some(_) => SERVER_IP.into(),
        }
    }

    /// The client's own address: 127.0.0.1 on loopback, [`CLIENT_IP`] otherwise.
    pub fn client_ip(&self) -> IpAddr {
        match self.hosts {
            None => Ipv4Addr::LOCALHOST.into(),
            Some(_) => CLIENT_IP.into(),
        }
    }

    /// Runs `f` in the server's namespace (on a new thread that entered it,
    /// and blocks until it returns; on loopback, on the calling thread) and
    /// returns its result. Sockets `f` creates stay in that namespace; the
    /// census `f` reads is the server's.
    ///
    /// # Errors
    ///
    /// When the thread cannot enter the namespace.
    pub fn server<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        match &self.hosts {
            None => Ok(f()),
            Some(hosts) => hosts.server.run(f),
        }
    }

    /// Runs `f` in the client's namespace, as [`server`](Self::server) does.
    ///
    /// # Errors
    ///
    /// When the thread cannot enter the namespace.
    pub fn client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        match &self.hosts {
            None => Ok(f()),
            Some(hosts) => hosts.client.run(f),
        }
    }

    /// Gives the client a second address, `ip`, next to [`CLIENT_IP`]: a /32
    /// on the client's veth end, and a route to it on the server's (on `wan`
    /// the forwarder carries the frames as it carries the others). A client
    /// socket bound to `ip` then reaches the server as another host would.
    /// Forks `ip` (see the fork hazard in [`netns`]): call it before any
    /// socket of the run exists.
    ///
    /// # Errors
    ///
    /// `Unsupported` on loopback (bind to another 127.0.0.0/8 address
    /// instead); when an `ip` command fails.
    pub fn add_client_ip(&self, ip: Ipv4Addr) -> io::Result<()> {
        let Some(hosts) = &self.hosts else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a loopback path has every 127.0.0.0/8 address already",
            ));
        };
        hosts
            .client
            .ip(&["addr", "add", &format!("{ip}/32"), "dev", CLIENT_END])?;
        hosts
            .server
            .ip(&["route", "add", &format!("{ip}/32"), "dev", SERVER_END])
    }

    /// The server's namespace (none on loopback), e.g. for `ip` commands.
    pub fn server_netns(&self) -> Option<&Netns> {
        self.hosts.as_ref().map(|hosts| &hosts.server)
    }

    /// The client's namespace (none on loopback).
    pub fn client_netns(&self) -> Option<&Netns> {
        self.hosts.as_ref().map(|hosts| &hosts.client)
    }

    /// The names of every namespace the path made (none on loopback).
    pub fn namespaces(&self) -> Vec<String> {
        let Some(hosts) = &self.hosts else {
            return Vec::new();
        };
        [
            Some(&hosts.server),
            hosts.middle.as_ref(),
            Some(&hosts.client),
        ]
        .into_iter()
        .flatten()
        .map(|ns| ns.name().to_owned())
        .collect()
    }

    /// Makes the client vanish, as [`VethPair::vanish_b`](super::netns::VethPair::vanish_b)
    /// does: its address is removed, so its kernel drops whatever reaches it
    /// and never answers again (no ACK, no FIN, no RST). The path carries
    /// nothing to the client after this. Forks `ip` (see the fork hazard in
    /// [`netns`]).
    ///
    /// # Errors
    ///
    /// `Unsupported` on loopback (both ends are one kernel, which always
    /// answers); when `ip addr flush` fails.
    pub fn vanish_client(&self) -> io::Result<()> {
        match &self.hosts {
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a loopback peer cannot vanish",
            )),
            Some(hosts) => hosts.client.ip(&["addr", "flush", "dev", CLIENT_END]),
        }
    }

    /// What the forwarder has done so far (`wan` only).
    pub fn forwarder_stats(&self) -> Option<ForwarderStats> {
        self.forwarder.as_ref().map(Forwarder::stats)
    }

    /// The names of the threads the path runs (the `wan` forwarder's), as
    /// `/proc/<pid>/task/*/comm` shows them; they end when the path is dropped.
    pub fn thread_names(&self) -> Vec<String> {
        self.forwarder
            .as_ref()
            .map(|f| f.thread_names().to_vec())
            .unwrap_or_default()
    }

    /// How many frames the random loss has dropped so far, both directions
    /// (the nftables rule's counters); `None` on a path without loss.
    /// Forks `nft` (see the fork hazard in [`netns`]).
    ///
    /// # Errors
    ///
    /// When `nft` fails.
    pub fn dropped(&self) -> io::Result<Option<u64>> {
        match (
            &self.spec,
            self.hosts.as_ref().and_then(|h| h.middle.as_ref()),
        ) {
            (PathSpec::Wan(wan), Some(middle)) if wan.loss_percent > 0.0 => {
                shape::dropped(middle).map(Some)
            }
            _ => Ok(None),
        }
    }
}

impl fmt::Display for NetPath {
    /// `wan: veth + user-space forwarder 20 ms each way + …, RTT 40.61 ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}, RTT {:.2} ms",
            self.kind(),
            self.mechanism(),
            self.rtt.as_secs_f64() * 1e3
        )
    }
}

impl Drop for NetPath {
    fn drop(&mut self) {
        // The threads first: they read from links the namespaces hold.
        self.forwarder.take();
        self.hosts.take();
    }
}

/// Sets up a host's veth end: offloads off (see the [module docs](self)),
/// no IPv6 link-local address (the paths carry IPv4 only, and a host's
/// neighbour discovery would cross them too), `addr`/30, up.
fn host_end(ns: &Netns, end: &str, addr: Ipv4Addr) -> io::Result<()> {
    ns.run(|| {
        for offload in [Offload::TxChecksum, Offload::Tso, Offload::Gso] {
            sys::set_offload(end, offload, false)?;
            if sys::offload(end, offload)? {
                return Err(io::Error::other(format!(
                    "{offload:?} offload of {end} stays on"
                )));
            }
        }
        Ok(())
    })??;
    ns.ip(&["link", "set", "dev", end, "addrgenmode", "none"])?;
    ns.ip(&["addr", "add", &format!("{addr}/30"), "dev", end])?;
    ns.ip(&["link", "set", "dev", end, "up"])
}

/// The fastest of [`RTT_PROBES`] connects to `to`, each reset at once. A
/// path on which the first probe cannot connect is broken: that error is
/// returned at once (within [`PROBE_BOUND`], which covers two lost SYNs).
fn probe_rtt(to: SocketAddr) -> io::Result<Duration> {
    let mut best: Option<Duration> = None;
    for _ in 0..RTT_PROBES {
        let start = Instant::now();
        match TcpStream::connect_timeout(&to, PROBE_BOUND) {
            Ok(stream) => {
                let took = start.elapsed();
                best = Some(best.map_or(took, |b| b.min(took)));
                // RST: no TIME-WAIT on either side.
                let socket = socket2::Socket::from(stream);
                socket.set_linger(Some(Duration::ZERO))?;
            }
            Err(e) if best.is_none() => return Err(e),
            Err(_) => {} // a later probe lost its SYNs to the path's loss
        }
    }
    best.ok_or_else(|| io::Error::other("no probe ran"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_namespace() {
        let path = NetPath::new(PathSpec::Loopback).expect("loopback path");
        assert_eq!(path.server_ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
        assert!(path.namespaces().is_empty());
        assert!(path.rtt() > Duration::ZERO);
        assert_eq!(path.dropped().unwrap(), None);
    }
}
