//! Kernel socket census: the machine's TCP sockets by state and port, read
//! from the kernel's own table, and `SOCK_DESTROY` for one entry.
//!
//! This is how farewell checks who holds TIME-WAIT: never from its own
//! bookkeeping, always from the kernel.
//!
//! # Sources
//!
//! * [`Source::Netlink`]: `NETLINK_SOCK_DIAG` (the interface `ss` uses). One
//!   dump request per address family, states filtered in the kernel; fast
//!   (about 10 ms for 16,000 sockets), needs no privilege.
//! * [`Source::Procfs`]: `/proc/net/tcp` and `/proc/net/tcp6`. Slower (the
//!   kernel formats text, and every socket is listed whatever the filter),
//!   and has no socket cookies, but works where netlink sockets are
//!   forbidden (some sandboxes and seccomp profiles).
//!
//! [`dump`] uses netlink and falls back to /proc when netlink is unavailable.
//!
//! # Blocking
//!
//! Everything here is synchronous: a blocking netlink socket or file read.
//! A dump of a few thousand sockets takes well under a millisecond, but from
//! async code call it through [`tokio::task::spawn_blocking`]:
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use farewell::census::{self, Filter};
//! use farewell::TcpState;
//!
//! let filter = Filter::local_port(8080).states(TcpState::TimeWait);
//! let counts = tokio::task::spawn_blocking(move || census::count_by_state(&filter)).await??;
//! println!("port 8080: {counts}");
//! # Ok(()) }
//! ```
//!
//! # Examples
//!
//! ```
//! use std::net::{TcpListener, TcpStream};
//! use farewell::census::{self, Filter};
//! use farewell::TcpState;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let port = listener.local_addr()?.port();
//! let _client = TcpStream::connect(listener.local_addr()?)?;
//! let (_server, _) = listener.accept()?;
//!
//! let counts = census::count_by_state(&Filter::local_port(port))?;
//! assert_eq!(counts.get(TcpState::Listen), 1);
//! assert_eq!(counts.get(TcpState::Established), 1);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;

use crate::TcpState;

pub(crate) mod caps;
mod counts;
mod destroy;
mod error;
mod filter;
mod netlink;
mod procfs;
mod state_set;

pub use counts::StateCounts;
pub use error::CensusError;
pub use filter::{Families, Filter};
pub use state_set::StateSet;

use netlink::{DiagSocket, Failure};

/// One TCP socket in the kernel's table.
///
/// # Reduced entries
///
/// TIME-WAIT entries (`struct inet_timewait_sock`) and request sockets (a
/// SYN received by a listener, SYN-ACK sent, `TCP_NEW_SYN_RECV`) are not
/// full sockets: no file, no owner. Both sources report them with
/// `inode == 0`, `uid == 0` and both queues 0.
///
/// # Notes
///
/// * A request socket is reported as [`TcpState::SynReceived`], never as
///   [`TcpState::NewSynReceived`] (the kernel rewrites it in both sources).
/// * A time-wait entry reports its *sub*-state: an orphaned connection
///   (closed by its owner) waiting in FIN-WAIT-2 is kept as a time-wait entry
///   and reported as [`TcpState::FinWait2`], with the reduced fields above.
/// * Queue meanings depend on the state: for a listener, `recv_queue` is the
///   accept queue length and `send_queue` is the backlog limit (netlink; 0
///   from /proc); otherwise `recv_queue` is bytes received but not read and
///   `send_queue` is bytes written but not yet acknowledged (`SIOCOUTQ`).
/// * IPv6 sockets with IPv4 peers show v4-mapped addresses
///   (`[::ffff:127.0.0.1]:80`); see [`Families`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SocketEntry {
    /// Local address and port (`0.0.0.0`/`::` for a wildcard listener).
    pub local: SocketAddr,
    /// Remote address and port (all zero for a listener).
    pub remote: SocketAddr,
    /// The state the kernel reports.
    pub state: TcpState,
    /// Bytes received but not read; for a listener, connections waiting in
    /// the accept queue.
    pub recv_queue: u32,
    /// Bytes not yet acknowledged by the peer; for a listener, its backlog
    /// (netlink) or 0 (/proc).
    pub send_queue: u32,
    /// Inode of the socket's file (0 for reduced entries).
    pub inode: u64,
    /// Owner's uid (0 for reduced entries).
    pub uid: u32,
    /// The kernel's unique socket cookie (`SO_COOKIE`); 0 from /proc.
    /// [`destroy`] uses it to be sure it removes this socket and not a newer
    /// one with the same 4-tuple.
    pub cookie: u64,
}

/// Where a census reads the kernel's socket table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// `NETLINK_SOCK_DIAG`, as `ss` does.
    Netlink,
    /// `/proc/net/tcp` and `/proc/net/tcp6`, as `netstat` does.
    Procfs,
}

/// The TCP sockets that pass `filter`, read over netlink, or from /proc when
/// netlink is unavailable.
///
/// Falls back to /proc when the netlink socket cannot be created (`EPERM`,
/// `EACCES`, `EPROTONOSUPPORT`, `EAFNOSUPPORT`) or the kernel has no TCP
/// sock_diag handler (`ENOENT` for the first request). See [`Filter`] for
/// where each part of the filter is applied.
///
/// # Errors
///
/// [`CensusError::Procfs`] when the fallback cannot read /proc either;
/// otherwise any netlink error of [`dump_netlink`].
///
/// # Examples
///
/// ```
/// use farewell::census::{self, Filter};
/// use farewell::TcpState;
///
/// # fn main() -> Result<(), farewell::census::CensusError> {
/// for entry in census::dump(&Filter::all().states(TcpState::TimeWait))? {
///     println!("{} -> {}", entry.local, entry.remote);
/// }
/// # Ok(()) }
/// ```
pub fn dump(filter: &Filter) -> Result<Vec<SocketEntry>, CensusError> {
    let mut entries = Vec::new();
    visit(filter, &mut |entry| entries.push(entry))?;
    Ok(entries)
}

/// The TCP sockets that pass `filter`, read over netlink sock_diag only.
///
/// # Errors
///
/// [`CensusError::NetlinkUnavailable`] when the netlink socket cannot be
/// opened; [`CensusError::Kernel`] when the kernel refuses the dump;
/// [`CensusError::NetlinkIo`] or [`CensusError::Decode`] on a broken reply.
pub fn dump_netlink(filter: &Filter) -> Result<Vec<SocketEntry>, CensusError> {
    let mut entries = Vec::new();
    DiagSocket::open()?
        .dump(filter, &mut |entry| entries.push(entry))
        .map_err(|f| f.into_census("dump"))?;
    Ok(entries)
}

/// The TCP sockets that pass `filter`, read from /proc/net/tcp and
/// /proc/net/tcp6 only. Entries have `cookie == 0`.
///
/// A missing /proc/net/tcp6 (IPv6 disabled) counts as no IPv6 sockets.
///
/// # Errors
///
/// [`CensusError::Procfs`] when a file cannot be read;
/// [`CensusError::ProcfsParse`] when a line has an unexpected shape.
pub fn dump_procfs(filter: &Filter) -> Result<Vec<SocketEntry>, CensusError> {
    let mut entries = Vec::new();
    procfs::for_each(filter, &mut |entry| entries.push(entry))?;
    Ok(entries)
}

/// The TCP sockets that pass `filter`, read from `source`.
///
/// # Errors
///
/// As [`dump_netlink`] or [`dump_procfs`].
pub fn dump_from(source: Source, filter: &Filter) -> Result<Vec<SocketEntry>, CensusError> {
    match source {
        Source::Netlink => dump_netlink(filter),
        Source::Procfs => dump_procfs(filter),
    }
}

/// The socket with exactly this local and remote address, in any state, or
/// `None` when the kernel has none. Netlink only: one request, no dump.
///
/// For a listener, pass the unspecified remote address (`0.0.0.0:0`).
///
/// # Errors
///
/// [`CensusError::MixedFamilies`] when one address is IPv4 and the other
/// IPv6; the netlink errors of [`dump_netlink`].
///
/// # Examples
///
/// ```
/// use std::net::{TcpListener, TcpStream};
/// use farewell::TcpState;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let client = TcpStream::connect(listener.local_addr()?)?;
/// let entry = farewell::census::lookup(client.local_addr()?, client.peer_addr()?)?
///     .expect("the kernel knows our connection");
/// assert_eq!(entry.state, TcpState::Established);
/// # Ok(()) }
/// ```
pub fn lookup(local: SocketAddr, remote: SocketAddr) -> Result<Option<SocketEntry>, CensusError> {
    DiagSocket::open()?.lookup(local, remote)
}

/// How many sockets that pass `filter` are in each state; read as [`dump`]
/// reads, without collecting the entries.
///
/// # Errors
///
/// As [`dump`].
pub fn count_by_state(filter: &Filter) -> Result<StateCounts, CensusError> {
    let mut counts = StateCounts::new();
    visit(filter, &mut |entry| counts.record(entry.state))?;
    Ok(counts)
}

/// Removes the socket `entry` names from the kernel's table with
/// `SOCK_DESTROY` (sock_diag).
///
/// What happens on the wire depends on the state ([F8](crate::facts#f8)):
///
/// * **TIME-WAIT**: the entry vanishes; nothing is sent. The 4-tuple is free
///   at once, so a delayed segment of the old connection could reach a new
///   one (RFC 1337); do this only after a verified clean close.
/// * **A live socket**: the kernel aborts it (`tcp_abort`): the peer gets
///   RST (`ECONNRESET`), its owner gets `ECONNABORTED`, and unsent or
///   unacknowledged data is lost.
///
/// An entry from /proc (`cookie == 0`) is first looked up to learn its
/// cookie, so a stale entry never destroys a newer socket or a listener.
///
/// # Errors
///
/// * [`CensusError::NeedsNetAdmin`]: the process lacks `CAP_NET_ADMIN`
///   (check first with [`has_net_admin`]).
/// * [`CensusError::DestroyUnsupported`]: the kernel was built without
///   `CONFIG_INET_DIAG_DESTROY`.
/// * [`CensusError::NoSuchSocket`]: the socket is gone, or its 4-tuple now
///   belongs to a newer socket.
/// * [`CensusError::NetlinkUnavailable`] and the other netlink errors.
///
/// # Examples
///
/// ```no_run
/// use farewell::census::{self, Filter};
/// use farewell::TcpState;
///
/// # fn main() -> Result<(), farewell::census::CensusError> {
/// // Needs CAP_NET_ADMIN.
/// for entry in census::dump(&Filter::local_port(8080).states(TcpState::TimeWait))? {
///     census::destroy(&entry)?;
/// }
/// # Ok(()) }
/// ```
pub fn destroy(entry: &SocketEntry) -> Result<(), CensusError> {
    destroy::destroy(entry)
}

/// True when the calling thread has `CAP_NET_ADMIN` in its effective set
/// (bit 12 of `CapEff` in /proc/thread-self/status), which [`destroy`],
/// `TCP_REPAIR` and network namespaces need.
///
/// Capabilities are per thread; this answers for the thread that asks. False
/// when the status file cannot be read.
///
/// # Examples
///
/// ```
/// if !farewell::census::has_net_admin() {
///     eprintln!("skipping: destroying sockets needs CAP_NET_ADMIN");
/// }
/// ```
pub fn has_net_admin() -> bool {
    caps::has_net_admin()
}

/// True when the calling thread's effective capability set has capability
/// number `cap` (see `capabilities(7)`; `CAP_NET_ADMIN` is 12,
/// `CAP_SYS_ADMIN` 21), read from `/proc/thread-self/status` as in
/// [`has_net_admin`].
///
/// # Examples
///
/// ```
/// const CAP_SYS_ADMIN: u32 = 21;
/// if !farewell::census::thread_has_cap(CAP_SYS_ADMIN) {
///     eprintln!("skipping: network namespaces need CAP_SYS_ADMIN");
/// }
/// ```
pub fn thread_has_cap(cap: u32) -> bool {
    caps::thread_has_cap(cap)
}

/// Reads with netlink, or with /proc when netlink is unavailable.
fn visit(filter: &Filter, each: &mut dyn FnMut(SocketEntry)) -> Result<Source, CensusError> {
    let mut delivered = 0usize;
    let netlink = DiagSocket::open().and_then(|mut socket| {
        socket
            .dump(filter, &mut |entry| {
                delivered += 1;
                each(entry)
            })
            .map_err(|failure| match failure {
                // No TCP sock_diag handler (tcp_diag not built or loadable).
                Failure::Refused(e) if e.raw_os_error() == Some(libc::ENOENT) && delivered == 0 => {
                    CensusError::NetlinkUnavailable(e)
                }
                failure => failure.into_census("dump"),
            })
    });
    match netlink {
        Ok(()) => Ok(Source::Netlink),
        Err(CensusError::NetlinkUnavailable(e)) if falls_back(&e) => {
            tracing::debug!(error = %e, "sock_diag netlink unavailable; reading /proc/net/tcp");
            procfs::for_each(filter, each)?;
            Ok(Source::Procfs)
        }
        Err(e) => Err(e),
    }
}

fn falls_back(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EPERM | libc::EACCES | libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::ENOENT
        )
    )
}
