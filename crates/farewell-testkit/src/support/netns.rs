//! Test harness for privileged tests: private network namespaces (so no
//! packet ever leaves what the test created, and each namespace has its own
//! socket table and TCP counters), sockets made inside them, and a thread
//! that gives up `CAP_NET_ADMIN`.
//!
//! The namespaces themselves are the library's ([`crate::lab::netns`],
//! which the lab uses for its vanished peers); this harness panics where the
//! library returns errors, and adds what only tests need.
//!
//! A socket keeps the namespace it was created in, so a test makes its
//! sockets on a thread that entered the namespace ([`Netns::run`]) and then
//! uses them from any thread. The census (sock_diag) and
//! `/proc/thread-self/net/*` answer for the namespace of the *calling
//! thread*, so the test reads them through [`Netns::run`] too.
//!
//! Every namespace has a unique name (`farewell-<pid>-<n>-<role>`) and is
//! deleted when its [`Netns`] is dropped, also when an assertion failed.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::lab::netns as lib;
/// Hold from a teardown until its verdict is read: no `ip` command (a fork
/// that would hold a copy of the socket) runs meanwhile.
pub use lib::no_forks;
pub use lib::{ADDR_A, VETH_B};

/// `CAP_NET_ADMIN`: `TCP_REPAIR`, `SOCK_DESTROY`, configuring links.
pub const CAP_NET_ADMIN: u32 = 12;

/// How long connecting and accepting in a namespace may take.
const CONNECT_BOUND: Duration = Duration::from_secs(5);

/// True when the test may run; otherwise prints why it is skipped.
///
/// `needs_netns`: the test creates namespaces, so it also needs
/// `CAP_SYS_ADMIN` and the `ip` tool.
pub fn may_run(test: &str, needs_netns: bool) -> bool {
    let why = if needs_netns {
        lib::unavailable()
    } else {
        (!farewell::census::has_net_admin()).then(|| "needs CAP_NET_ADMIN".to_owned())
    };
    match why {
        None => true,
        Some(why) => super::tools::skip(
            test,
            &format!(
                "{why} (run the tests as root, or in a container with --cap-add NET_ADMIN \
                 --cap-add SYS_ADMIN and iproute2 installed)"
            ),
        ),
    }
}

/// True when the *calling thread's* effective set has capability `cap`
/// (`CapEff:` of /proc/thread-self/status; capabilities are per thread).
pub fn thread_has_cap(cap: u32) -> bool {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|status| {
            let hex = status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

/// A network namespace of this test process, deleted on drop.
pub struct Netns(lib::Netns);

impl Netns {
    /// Creates a namespace named `farewell-<pid>-<n>-<role>`, with its
    /// loopback up; panics when it cannot.
    pub fn new(role: &str) -> Netns {
        Netns(lib::Netns::new(role).unwrap_or_else(|e| panic!("creating namespace {role}: {e}")))
    }

    /// Where `ip netns` binds the namespace; gone once the namespace is deleted.
    pub fn path(&self) -> std::path::PathBuf {
        self.0.path()
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Runs `ip -n <name> args...`; panics when it fails.
    pub fn ip(&self, args: &[&str]) {
        self.0.ip(args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `f` on a new thread that entered this namespace, and returns its
    /// result (a panic in `f` is passed on).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.0.run(f).unwrap_or_else(|e| panic!("{e}"))
    }

    /// This namespace's TCP counters (`Tcp:` of /proc/thread-self/net/snmp, read in it).
    pub fn tcp_counters(&self) -> TcpCounters {
        self.run(TcpCounters::read)
    }

    /// A connection on this namespace's loopback: (listener, server side, client side).
    pub fn loopback_pair(&self) -> Conn {
        self.run(|| {
            let listener =
                TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
            let client = TcpStream::connect_timeout(&listener.local_addr().unwrap(), CONNECT_BOUND)
                .expect("connect on the namespace's loopback");
            Conn::accepted(listener, client)
        })
    }
}

/// Two namespaces joined by a veth pair ([`lib::VethPair`]): A holds
/// [`ADDR_A`] on `fw-a`, B holds `10.200.0.2` on [`VETH_B`].
pub struct VethPair {
    /// The server's namespace.
    pub a: Netns,
    /// The client's namespace.
    pub b: Netns,
}

impl VethPair {
    /// Creates both namespaces and the link, and brings it up; panics when it cannot.
    #[allow(clippy::new_without_default)] // it creates namespaces: not a default value
    pub fn new() -> VethPair {
        let lib::VethPair { a, b } =
            lib::VethPair::new().unwrap_or_else(|e| panic!("creating the veth pair: {e}"));
        VethPair {
            a: Netns(a),
            b: Netns(b),
        }
    }

    /// A connection from B to a listener in A: (listener, server side in A, client side in B).
    pub fn connect(&self) -> Conn {
        let listener = self
            .a
            .run(|| TcpListener::bind((ADDR_A, 0)).expect("bind in namespace A"));
        let to = listener.local_addr().unwrap();
        // SYNs may be lost while the link comes up; connect retries within the bound.
        let client = self.b.run(|| {
            TcpStream::connect_timeout(&to, CONNECT_BOUND)
                .unwrap_or_else(|e| panic!("connect from namespace B to {to}: {e}"))
        });
        Conn::accepted(listener, client)
    }

    /// Makes B vanish by removing its address, as
    /// [`lib::VethPair::vanish_b`] does (see there why not the link).
    pub fn vanish_b(&self) {
        self.b.ip(&["addr", "flush", "dev", VETH_B]);
    }
}

/// One connection made by the harness.
pub struct Conn {
    /// The listener that accepted `server` (kept open for the test's life).
    pub listener: TcpListener,
    /// The accepted, server side of the connection.
    pub server: TcpStream,
    /// The client side.
    pub client: TcpStream,
    /// The server side's local address.
    pub server_addr: SocketAddr,
    /// The client side's local address.
    pub client_addr: SocketAddr,
}

impl Conn {
    /// Accepts `client`'s connection on `listener` (bounded).
    fn accepted(listener: TcpListener, client: TcpStream) -> Conn {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + CONNECT_BOUND;
        let server = loop {
            match listener.accept() {
                Ok((server, _)) => break server,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "accept did not complete");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        server.set_nonblocking(false).unwrap();
        Conn {
            server_addr: server.local_addr().unwrap(),
            client_addr: client.local_addr().unwrap(),
            listener,
            server,
            client,
        }
    }
}

/// The `Tcp:` counters of one namespace (RFC 1213 MIB names: `OutSegs`, `OutRsts`, …).
#[derive(Clone, Debug)]
pub struct TcpCounters(HashMap<String, i64>);

impl TcpCounters {
    /// Reads the calling thread's namespace's counters.
    pub fn read() -> TcpCounters {
        let text = std::fs::read_to_string("/proc/thread-self/net/snmp")
            .expect("read /proc/thread-self/net/snmp");
        let mut tcp = text.lines().filter(|line| line.starts_with("Tcp:"));
        let (names, values) = (
            tcp.next().expect("Tcp header line"),
            tcp.next().expect("Tcp values line"),
        );
        let map = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .map(|(name, value)| (name.to_owned(), value.parse().expect("numeric counter")))
            .collect();
        TcpCounters(map)
    }

    /// One counter; panics on an unknown name.
    pub fn get(&self, name: &str) -> i64 {
        *self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no Tcp counter {name}"))
    }

    /// `later - self` for one counter.
    pub fn delta(&self, later: &TcpCounters, name: &str) -> i64 {
        later.get(name) - self.get(name)
    }
}

/// Removes `CAP_NET_ADMIN` from the calling thread's effective, permitted
/// and inheritable sets, for good (only this thread: capabilities are per
/// thread). Panics when the kernel refuses.
pub fn drop_net_admin_on_this_thread() {
    crate::sys::drop_capability_on_this_thread(CAP_NET_ADMIN)
        .unwrap_or_else(|e| panic!("dropping CAP_NET_ADMIN: {e}"));
}
