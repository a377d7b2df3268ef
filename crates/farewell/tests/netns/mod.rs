//! Test harness for privileged tests: private network namespaces (so no
//! packet ever leaves what the test created, and each namespace has its own
//! socket table and TCP counters), sockets made inside them, and a thread
//! that gives up `CAP_NET_ADMIN`.
//!
//! A socket keeps the namespace it was created in, so a test makes its
//! sockets on a thread that entered the namespace ([`Netns::run`]) and then
//! uses them from any thread. The census (sock_diag) and
//! `/proc/thread-self/net/*` answer for the namespace of the *calling
//! thread*, so the test reads them through [`Netns::run`] too.
//!
//! Every namespace has a unique name (`farewell-<pid>-<n>-<role>`) and is
//! deleted when its [`Netns`] is dropped, also when an assertion failed.
#![allow(dead_code)] // helpers for more tests than each one uses

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `CAP_SYS_ADMIN` (`include/uapi/linux/capability.h`): `setns` and `ip netns add` need it.
const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_NET_ADMIN`: `TCP_REPAIR`, `SOCK_DESTROY`, configuring links.
pub const CAP_NET_ADMIN: u32 = 12;

/// How long connecting and accepting in a namespace may take.
const CONNECT_BOUND: Duration = Duration::from_secs(5);

/// Server address inside namespace A of a [`VethPair`] (a private /30 that
/// exists only inside the test's own namespaces).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// Client address inside namespace B of a [`VethPair`].
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The veth end in namespace A; the names are per namespace, so constant.
pub const VETH_A: &str = "fw-a";
/// The veth end in namespace B.
pub const VETH_B: &str = "fw-b";

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// Held while this process forks (every `ip` command), and by a test while
/// it closes a socket and reads the verdict; see [`no_forks`].
static FORKS: Mutex<()> = Mutex::new(());

/// Keeps every other test thread of this process from forking until the
/// guard is dropped.
///
/// A forked child shares all our descriptors until it execs (close-on-exec
/// only takes effect then), so a socket closed while a parallel test is
/// starting `ip` is not released when `close()` returns: the kernel sends
/// the RST, or orphans or frees the socket, only when the child's copy goes.
/// A census read right after the teardown would then still see the socket,
/// established and owned. Hold this from the teardown until the verdict is
/// read; never call [`Netns::new`] or [`Netns::ip`] while holding it.
pub fn no_forks() -> MutexGuard<'static, ()> {
    FORKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `ip args...` with no test thread in a [`no_forks`] section.
fn run_ip(args: &[&str]) -> io::Result<std::process::Output> {
    let _forking = no_forks();
    Command::new("ip").args(args).output()
}

/// True when the test may run; otherwise prints why it is skipped.
///
/// `needs_netns`: the test creates namespaces, so it also needs
/// `CAP_SYS_ADMIN` and the `ip` tool.
pub fn may_run(test: &str, needs_netns: bool) -> bool {
    if !farewell::census::has_net_admin() {
        eprintln!(
            "skipped: {test}: needs CAP_NET_ADMIN (run the tests as root, \
             or in a container with --cap-add NET_ADMIN --cap-add SYS_ADMIN)"
        );
        return false;
    }
    if !needs_netns {
        return true;
    }
    if !thread_has_cap(CAP_SYS_ADMIN) {
        eprintln!(
            "skipped: {test}: needs CAP_SYS_ADMIN to create and enter network namespaces \
             (ip netns add, setns)"
        );
        return false;
    }
    match run_ip(&["-V"]) {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "skipped: {test}: `ip -V` failed ({}); needs a working `ip` from the Debian package iproute2",
                out.status
            );
            false
        }
        Err(e) => {
            eprintln!(
                "skipped: {test}: needs the `ip` tool ({e}); install the Debian package iproute2"
            );
            false
        }
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

/// Runs `ip args...`; panics with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = run_ip(args).unwrap_or_else(|e| panic!("running ip {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A network namespace of this test process, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `farewell-<pid>-<n>-<role>`, with its
    /// loopback up.
    pub fn new(role: &str) -> Netns {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("farewell-{}-{id}-{role}", std::process::id());
        ip(&["netns", "add", &name]);
        // From here on, Drop deletes it whatever fails next.
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Where `ip netns` binds the namespace; gone once the namespace is deleted.
    pub fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.name)
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> args...`; panics when it fails.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Runs `f` on a new thread that entered this namespace, and returns its
    /// result (a panic in `f` is passed on). The thread ends with `f`, so no
    /// other code ever runs in the namespace by accident.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                enter(&path);
                f()
            });
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// This namespace's TCP counters (`Tcp:` of /proc/thread-self/net/snmp, read in it).
    pub fn tcp_counters(&self) -> TcpCounters {
        self.run(TcpCounters::read)
    }

    /// A connection on this namespace's loopback: (listener, server side, client side).
    pub fn loopback_pair(&self) -> Conn {
        self.run(|| {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
            let client = TcpStream::connect_timeout(&listener.local_addr().unwrap(), CONNECT_BOUND)
                .expect("connect on the namespace's loopback");
            Conn::accepted(listener, client)
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // No panic here: this may run while a failed assertion unwinds.
        match run_ip(&["netns", "del", &self.name]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: ip netns del {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
    }
}

/// Moves the calling thread into the namespace bound at `path`.
fn enter(path: &str) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: `file` is an open namespace file for the duration of the call;
    // setns only changes the calling thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({path}): {}", io::Error::last_os_error());
}

/// Two namespaces joined by a veth pair: A holds [`ADDR_A`] on [`VETH_A`], B
/// holds [`ADDR_B`] on [`VETH_B`]. Nothing else is routed: traffic stays
/// between them.
pub struct VethPair {
    /// The server's namespace.
    pub a: Netns,
    /// The client's namespace.
    pub b: Netns,
}

impl VethPair {
    /// Creates both namespaces and the link, and brings it up.
    pub fn new() -> VethPair {
        let pair = VethPair {
            a: Netns::new("a"),
            b: Netns::new("b"),
        };
        // Created in A with its peer directly in B: the host namespace never
        // sees either end.
        pair.a.ip(&[
            "link",
            "add",
            VETH_A,
            "type",
            "veth",
            "peer",
            "name",
            VETH_B,
            "netns",
            pair.b.name(),
        ]);
        pair.a
            .ip(&["addr", "add", &format!("{ADDR_A}/30"), "dev", VETH_A]);
        pair.b
            .ip(&["addr", "add", &format!("{ADDR_B}/30"), "dev", VETH_B]);
        pair.a.ip(&["link", "set", VETH_A, "up"]);
        pair.b.ip(&["link", "set", VETH_B, "up"]);
        pair
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

    /// Makes B vanish: B's address is removed, so B's kernel drops whatever
    /// A sends (IP forwarding is off in a new namespace, so not even an
    /// ICMP error comes back) and never answers again: no ACK, no FIN, no
    /// RST, no ARP reply.
    ///
    /// The link itself stays up. Taking B's end down instead also takes A's
    /// carrier down, and then A's kernel fails to transmit locally rather
    /// than sending into the void: its retransmissions are never counted and
    /// the test would not see a real vanished peer.
    pub fn vanish_b(&self) {
        self.b.ip(&["addr", "flush", "dev", VETH_B]);
    }
}

/// One connection made by the harness.
pub struct Conn {
    pub listener: TcpListener,
    pub server: TcpStream,
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

/// `struct __user_cap_header_struct` (`linux/capability.h`).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 uses two (capabilities 0–31, 32–63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Removes `CAP_NET_ADMIN` from the calling thread's effective, permitted
/// and inheritable sets, for good. Only this thread loses it: capabilities
/// are per thread, and the raw `capset` system call (unlike glibc's
/// set*id wrappers) does not broadcast to the other threads.
pub fn drop_net_admin_on_this_thread() {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0, // the calling thread
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes one header and two data structs (version 3),
    // which are live, correctly laid out locals.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "capget: {}", io::Error::last_os_error());
    let keep = !(1u32 << CAP_NET_ADMIN);
    data[0].effective &= keep;
    data[0].permitted &= keep;
    data[0].inheritable &= keep;
    // SAFETY: capset reads one header and two data structs, as above; it
    // changes only the calling thread's credentials.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    assert_eq!(rc, 0, "capset: {}", io::Error::last_os_error());
}
