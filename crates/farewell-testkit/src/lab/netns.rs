//! Private network namespaces (Linux, `CAP_SYS_ADMIN` + `CAP_NET_ADMIN`, the
//! `ip` tool of iproute2): where the lab plays a peer that vanishes.
//!
//! Loopback cannot play a vanished peer: both ends share one kernel, which
//! always answers. Two namespaces joined by a veth pair can: the server lives
//! in A, the clients in B, and B *vanishes* when its address is removed
//! ([`VethPair::vanish_b`]) — its kernel then drops everything A sends and
//! never answers again. No packet ever leaves the namespaces the lab made.
//!
//! A socket keeps the namespace it was created in, so sockets are made on a
//! thread that entered the namespace ([`Netns::run`]) and may then be used
//! from any thread. The census (sock_diag) answers for the namespace of the
//! *calling thread*, so it is read through [`Netns::run`] too.
//!
//! Every namespace is named `farewell-<pid>-<n>-<role>` and deleted when its
//! [`Netns`] is dropped (also while a panic unwinds, or when the future that
//! owns it is dropped on Ctrl-C). A run that was killed outright leaves its
//! namespaces behind; [`remove_stale`] deletes those whose process is gone.
//!
//! # Fork hazard
//!
//! Every `ip` command is a fork. A forked child holds copies of all our
//! descriptors until it execs, so a socket closed meanwhile is not released
//! when `close()` returns, and a census read right after a teardown would
//! still see it. The lab therefore never runs `ip` while it tears sockets
//! down; code that does both on several threads holds [`no_forks`] from the
//! teardown until the verdict is read.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// `CAP_SYS_ADMIN` (`include/uapi/linux/capability.h`): `ip netns add` and `setns` need it.
const CAP_SYS_ADMIN: u32 = 21;

/// Where `ip netns` binds named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The prefix of every namespace this module names.
pub const PREFIX: &str = "farewell-";

/// Server address inside namespace A of a [`VethPair`]: a private /30 that
/// exists only inside the lab's own namespaces.
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// Client address inside namespace B of a [`VethPair`].
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The veth end in namespace A; link names are per namespace, so constant.
pub const VETH_A: &str = "fw-a";
/// The veth end in namespace B.
pub const VETH_B: &str = "fw-b";

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
static FORKS: Mutex<()> = Mutex::new(());

/// Holds off every `ip` command of this module (on any thread) until the
/// guard is dropped; see the fork hazard in the [module docs](self). Never
/// create, change or drop a namespace while holding it.
pub fn no_forks() -> MutexGuard<'static, ()> {
    FORKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `None` when this process can make namespaces, or why it cannot:
/// `"needs CAP_NET_ADMIN"` first, as the lab's tables print it.
pub fn unavailable() -> Option<String> {
    if !farewell::census::has_net_admin() {
        return Some("needs CAP_NET_ADMIN".to_owned());
    }
    if !farewell::census::thread_has_cap(CAP_SYS_ADMIN) {
        return Some("needs CAP_SYS_ADMIN (ip netns add, setns)".to_owned());
    }
    match run_ip(&["-V"]) {
        Ok(out) if out.status.success() => None,
        _ => Some("needs the ip tool (Debian package iproute2)".to_owned()),
    }
}

fn run_ip(args: &[&str]) -> io::Result<std::process::Output> {
    let _forking = no_forks();
    Command::new("ip").args(args).output()
}

/// Runs `ip args...`; an error carries the command and its stderr.
fn ip(args: &[&str]) -> io::Result<()> {
    ip_output(args).map(drop)
}

/// Runs `ip args...` and returns its stdout; an error carries the command
/// and its stderr.
fn ip_output(args: &[&str]) -> io::Result<String> {
    let out = run_ip(args)
        .map_err(|e| io::Error::new(e.kind(), format!("running ip {}: {e}", args.join(" "))))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(io::Error::other(format!(
        "ip {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// A named network namespace of this process, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `farewell-<pid>-<n>-<role>` with its loopback up.
    ///
    /// # Errors
    ///
    /// When `ip netns add` or `ip link set lo up` fails (no privileges, no `ip`).
    pub fn new(role: &str) -> io::Result<Netns> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{id}-{role}", std::process::id());
        ip(&["netns", "add", &name])?;
        // From here on, Drop deletes it whatever fails next.
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where `ip netns` binds the namespace; gone once it is deleted.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Runs `ip -n <name> args...`.
    ///
    /// # Errors
    ///
    /// When the command fails; the error has its stderr.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `program args...` inside this namespace (`ip netns exec`) and
    /// returns its stdout; for the tools that have no `-n` option of their
    /// own (`nft`). A fork, like every `ip` command: see [`no_forks`].
    ///
    /// # Errors
    ///
    /// When the program cannot be run or fails; the error has its stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        ip_output(&all)
    }

    /// Creates a veth pair: `end` in this namespace, its peer `peer_end`
    /// directly in `peer` (the host namespace never sees either end). Both
    /// ends stay down and without addresses.
    ///
    /// # Errors
    ///
    /// When `ip link add` fails.
    pub fn add_veth(&self, end: &str, peer: &Netns, peer_end: &str) -> io::Result<()> {
        #[rustfmt::skip]
        let args = ["link", "add", end, "type", "veth", "peer", "name", peer_end, "netns", peer.name()];
        self.ip(&args)
    }

    /// Runs `f` on a new thread that entered this namespace and returns its
    /// result (a panic in `f` is passed on). The thread ends with `f`, so no
    /// other code ever runs in the namespace by accident. Blocks the caller
    /// until `f` returns: from async code, call it in `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// When the thread cannot enter the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let path = self.path();
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                let file = File::open(&path)?;
                crate::sys::enter_netns(&file).map_err(|e| {
                    io::Error::new(e.kind(), format!("entering {}: {e}", path.display()))
                })?;
                Ok(f())
            });
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            tracing::warn!("deleting namespace {}: {e}", self.name);
        }
    }
}

/// Two namespaces joined by a veth pair: A holds [`ADDR_A`] on [`VETH_A`], B
/// holds [`ADDR_B`] on [`VETH_B`]. Nothing else is routed: traffic stays
/// between them.
#[derive(Debug)]
pub struct VethPair {
    /// The server's namespace.
    pub a: Netns,
    /// The clients' namespace.
    pub b: Netns,
}

impl VethPair {
    /// Creates both namespaces and the link, and brings it up.
    ///
    /// # Errors
    ///
    /// When an `ip` command fails; whatever was made is deleted.
    pub fn new() -> io::Result<VethPair> {
        let pair = VethPair {
            a: Netns::new("a")?,
            b: Netns::new("b")?,
        };
        pair.a.add_veth(VETH_A, &pair.b, VETH_B)?;
        pair.a
            .ip(&["addr", "add", &format!("{ADDR_A}/30"), "dev", VETH_A])?;
        pair.b
            .ip(&["addr", "add", &format!("{ADDR_B}/30"), "dev", VETH_B])?;
        pair.a.ip(&["link", "set", VETH_A, "up"])?;
        pair.b.ip(&["link", "set", VETH_B, "up"])?;
        Ok(pair)
    }

    /// Makes B vanish: B's address is removed, so B's kernel drops whatever A
    /// sends (forwarding is off in a new namespace, so not even an ICMP error
    /// comes back) and never answers again: no ACK, no FIN, no RST, no ARP
    /// reply.
    ///
    /// The link stays up. Taking B's end down instead would also take A's
    /// carrier down; A's kernel would then fail to transmit locally rather
    /// than retransmit into the void, which is not what a vanished peer does.
    ///
    /// # Errors
    ///
    /// When `ip addr flush` fails.
    pub fn vanish_b(&self) -> io::Result<()> {
        self.b.ip(&["addr", "flush", "dev", VETH_B])
    }
}

/// The pid in a name made by [`Netns::new`] (`farewell-<pid>-<n>-<role>`).
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Deletes the namespaces a previous run left behind: those named by
/// [`Netns::new`] whose process is no longer alive (`/proc/<pid>` is gone).
/// Returns the names it deleted; a namespace it could not delete is logged
/// and skipped.
pub fn remove_stale() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match ip(&["netns", "del", &name]) {
            Ok(()) => removed.push(name),
            Err(e) => tracing::warn!("removing stale namespace {name}: {e}"),
        }
    }
    removed
}

/// The namespaces of process `pid` that exist now (for checks after a run).
pub fn namespaces_of(pid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| owner_pid(name) == Some(pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn owner_pid_reads_names_made_by_new() {
        assert_eq!(owner_pid("farewell-4242-0-a"), Some(4242));
        assert_eq!(owner_pid("farewell-lab"), None);
        assert_eq!(owner_pid("other-4242-0-a"), None);
    }
}
