//! Privileged tests (CAP_NET_ADMIN, and CAP_SYS_ADMIN for namespaces): the
//! peer behaviours loopback cannot play, and the silent close.
//!
//! Every test runs in network namespaces it creates (private addresses,
//! private socket table, private TCP counters) and judges by the kernel:
//! the census of the namespace, its `Tcp:` counters, and what the client
//! socket sees, never by the library's `Outcome` alone. Without the
//! privileges a test prints why it is skipped and returns.

use farewell_testkit::support::netns;

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use farewell::census::{self, Filter, SocketEntry};
use farewell::{Delivery, Ending, Outcome, PeerFirst, Policy, TcpState, TimeWait};
use netns::{Conn, Netns, TcpCounters, VethPair};

const GOODBYE: &[u8] = b"BYE shutdown\n";

/// No teardown here may take longer; past it the test fails instead of hanging.
const TEARDOWN_BOUND: Duration = Duration::from_secs(5);

/// How long a client read waits to show that nothing arrived.
const QUIET_READ: Duration = Duration::from_millis(200);

fn peer_first_short() -> Policy {
    Policy::PeerFirst(PeerFirst {
        grace: Duration::from_millis(300),
        stall_timeout: Duration::from_millis(300),
        ..PeerFirst::default()
    })
}

/// Tears `server` down with `policy` on a runtime of the calling thread, bounded.
fn close_bounded(server: std::net::TcpStream, policy: Policy) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        server.set_nonblocking(true).unwrap();
        let server = tokio::net::TcpStream::from_std(server).unwrap();
        tokio::time::timeout(TEARDOWN_BOUND, farewell::close(server, policy, GOODBYE))
            .await
            .unwrap_or_else(|_| panic!("{policy} teardown did not end within {TEARDOWN_BOUND:?}"))
    })
}

/// The socket with this 4-tuple in `ns`'s table.
fn lookup(ns: &Netns, local: SocketAddr, remote: SocketAddr) -> Option<SocketEntry> {
    ns.run(|| census::lookup(local, remote).expect("census lookup"))
}

/// Every socket in `ns` but listeners.
fn connections(ns: &Netns) -> Vec<SocketEntry> {
    ns.run(|| census::dump(&Filter::all()).expect("census dump"))
        .into_iter()
        .filter(|e| e.state != TcpState::Listen)
        .collect()
}

/// What a read on `client` sees within [`QUIET_READ`]: `None` when nothing
/// at all (no data, no EOF, no error).
fn client_read(client: &mut std::net::TcpStream) -> Option<std::io::Result<usize>> {
    client.set_read_timeout(Some(QUIET_READ)).unwrap();
    let mut buf = [0u8; 256];
    match client.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        other => Some(other),
    }
}

/// Resets `client` so that it leaves no orphan behind to keep its namespace alive.
fn discard(client: std::net::TcpStream) {
    let _ = farewell::sys::abort(client);
}

// ---- a vanished peer (veth link down): only namespaces can play it ----

/// What the server's namespace shows after tearing down a connection to a vanished peer.
struct Vanished {
    outcome: Outcome,
    elapsed: Duration,
    /// The server's 4-tuple in namespace A right after the teardown.
    server_entry: Option<SocketEntry>,
    /// Every non-listening socket in namespace A right after the teardown.
    left_in_a: Vec<SocketEntry>,
    /// The client's socket in namespace B (it heard nothing, so still established).
    client_state: Option<TcpState>,
    counters_before: TcpCounters,
    counters_after: TcpCounters,
}

/// Connects B to A, makes B vanish, tears the server side down with `policy`,
/// and reads the verdict; `then` runs before the namespaces are deleted.
fn vanished_peer(policy: Policy, then: impl FnOnce(&VethPair, &Vanished)) -> Vanished {
    let net = VethPair::new();
    let conn = net.connect();
    assert_eq!(
        lookup(&net.a, conn.server_addr, conn.client_addr).map(|e| e.state),
        Some(TcpState::Established),
        "the connection is established before the peer vanishes"
    );
    net.vanish_b();

    let counters_before = net.a.tcp_counters();
    let forks = netns::no_forks();
    let started = Instant::now();
    let outcome = close_bounded(conn.server, policy);
    let elapsed = started.elapsed();
    let server_entry = lookup(&net.a, conn.server_addr, conn.client_addr);
    let left_in_a = connections(&net.a);
    let counters_after = net.a.tcp_counters();
    let client_state = lookup(&net.b, conn.client_addr, conn.server_addr).map(|e| e.state);
    drop(forks);

    let seen = Vanished {
        outcome,
        elapsed,
        server_entry,
        left_in_a,
        client_state,
        counters_before,
        counters_after,
    };
    eprintln!(
        "{policy} × vanished peer: {} | teardown {:.1?} | server 4-tuple in A: {} | \
         non-listening sockets in A: {} | client in B: {:?} | A sent {} RST, {} retransmissions",
        seen.outcome,
        seen.elapsed,
        seen.server_entry
            .as_ref()
            .map_or("none".to_owned(), |e| format!(
                "{} (send queue {} B)",
                e.state, e.send_queue
            )),
        seen.left_in_a.len(),
        seen.client_state,
        seen.counters_before.delta(&seen.counters_after, "OutRsts"),
        seen.counters_before
            .delta(&seen.counters_after, "RetransSegs"),
    );
    then(&net, &seen);
    discard(conn.client);
    let bound = [net.a.path(), net.b.path()];
    drop(net);
    for path in bound {
        assert!(!path.exists(), "{} is deleted", path.display());
    }
    seen
}

#[test]
fn peer_first_vanished_peer_is_reset_after_grace_and_leaves_no_server_socket() {
    let test = "peer_first_vanished_peer_is_reset_after_grace_and_leaves_no_server_socket";
    if !netns::may_run(test, true) {
        return;
    }
    let seen = vanished_peer(peer_first_short(), |_, _| {});
    let o = &seen.outcome;
    // Nothing is ACKed: delivery stalls, and the stall timeout ends it.
    assert_eq!(o.ending, Ending::ResetDeliveryStalled, "{o}");
    assert_eq!(o.goodbye, Delivery::Unconfirmed, "nobody ACKed it: {o}");
    assert_eq!(o.goodbye_written, GOODBYE.len(), "{o}");
    // The peer had its grace before the reset (timers never fire early).
    let Policy::PeerFirst(p) = peer_first_short() else {
        unreachable!()
    };
    assert!(o.elapsed >= p.grace, "reset before the grace ended: {o}");
    assert_eq!(o.time_wait, TimeWait::Nobody, "{o}");
    // The kernel is the judge: nothing left for the 4-tuple, and nothing at
    // all in the namespace but the listener (no TIME-WAIT, no FIN-WAIT orphan).
    assert_eq!(
        seen.server_entry, None,
        "the server's socket is gone from the kernel's table"
    );
    assert!(
        seen.left_in_a.is_empty(),
        "namespace A keeps no connection: {:?}",
        seen.left_in_a
    );
    assert!(
        seen.counters_before.delta(&seen.counters_after, "OutRsts") >= 1,
        "the teardown ended with an RST (into the void)"
    );
    // The peer heard nothing at all: its kernel still thinks it is connected.
    assert_eq!(seen.client_state, Some(TcpState::Established));
}

/// The contrast: a policy that sends FIN and closes leaves the server's
/// kernel an orphan in FIN-WAIT-1, retransmitting to a peer that is gone.
fn fin_policy_leaves_orphan(policy: Policy, expected_path: Ending) {
    vanished_peer(policy, |net, seen| {
        assert_eq!(seen.outcome.ending, expected_path, "{}", seen.outcome);
        let orphan = seen
            .server_entry
            .clone()
            .unwrap_or_else(|| panic!("{policy}: the server kernel keeps the socket: none found"));
        assert_eq!(orphan.state, TcpState::FinWait1, "{orphan:?}");
        assert_eq!(orphan.inode, 0, "an orphan: no descriptor owns it");
        assert!(
            orphan.send_queue >= 1,
            "its FIN (and the goodbye) wait for an ACK: {orphan:?}"
        );

        // It goes on retransmitting: the cost that peer-first avoids.
        let deadline = Instant::now() + Duration::from_secs(3);
        let retransmitted = loop {
            let now = net.a.tcp_counters();
            let n = seen.counters_before.delta(&now, "RetransSegs");
            if n > 0 || Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let still = lookup(&net.a, orphan.local, orphan.remote).map(|e| e.state);
        eprintln!("{policy}: orphan retransmitted {retransmitted} segments; now {still:?}");
        assert!(
            retransmitted > 0,
            "the orphan retransmits to a vanished peer"
        );
        assert_eq!(still, Some(TcpState::FinWait1));

        // Cleanup: an orphan holds its namespace alive for minutes (until
        // tcp_orphan_retries give up), so destroy it.
        net.a
            .run(|| census::destroy(&orphan))
            .expect("cleanup: SOCK_DESTROY of the FIN-WAIT-1 orphan");
        assert_eq!(lookup(&net.a, orphan.local, orphan.remote), None);
    });
}

#[test]
fn plain_vanished_peer_leaves_fin_wait_1_orphan_on_server() {
    if !netns::may_run(
        "plain_vanished_peer_leaves_fin_wait_1_orphan_on_server",
        true,
    ) {
        return;
    }
    let policy = "plain"
        .parse::<Policy>()
        .unwrap()
        .with_delivery_timeout(Duration::from_millis(500));
    fin_policy_leaves_orphan(policy, Ending::PlainClose);
}

#[test]
fn lingering_vanished_peer_leaves_fin_wait_1_orphan_on_server() {
    if !netns::may_run(
        "lingering_vanished_peer_leaves_fin_wait_1_orphan_on_server",
        true,
    ) {
        return;
    }
    let policy = "lingering"
        .parse::<Policy>()
        .unwrap()
        .with_delivery_timeout(Duration::from_millis(600));
    fin_policy_leaves_orphan(policy, Ending::LingeringTimeout);
}

// ---- silent: TCP_REPAIR close, nothing on the wire ----

#[test]
fn silent_close_sends_no_packet_and_leaves_peer_established() {
    if !netns::may_run(
        "silent_close_sends_no_packet_and_leaves_peer_established",
        true,
    ) {
        return;
    }
    // A namespace of its own: its loopback carries only this connection, so
    // its counters count only this connection's segments.
    let ns = Netns::new("silent");
    let mut conn = ns.loopback_pair();
    let before = ns.tcp_counters();

    let forks = netns::no_forks();
    let started = Instant::now();
    let outcome = close_bounded(conn.server, Policy::Silent);
    let elapsed = started.elapsed();
    let server = lookup(&ns, conn.server_addr, conn.client_addr);
    let client = lookup(&ns, conn.client_addr, conn.server_addr);
    let read = client_read(&mut conn.client);
    let after = ns.tcp_counters();
    drop(forks);
    eprintln!(
        "silent: {outcome} | teardown {elapsed:.1?} | server 4-tuple: {server:?} | \
         client: {:?} | client read: {read:?} | segments sent {}, RSTs {}, CurrEstab {} -> {}",
        client.as_ref().map(|e| e.state),
        before.delta(&after, "OutSegs"),
        before.delta(&after, "OutRsts"),
        before.get("CurrEstab"),
        after.get("CurrEstab"),
    );

    assert_eq!(outcome.ending, Ending::Silent, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Nobody, "{outcome}");
    assert_eq!(outcome.goodbye, Delivery::NoneSent, "{outcome}");
    assert_eq!(server, None, "the server's socket is gone");
    assert_eq!(
        client.map(|e| e.state),
        Some(TcpState::Established),
        "the client was told nothing"
    );
    assert!(
        read.is_none(),
        "the client read neither data, EOF nor an error: {read:?}"
    );
    assert_eq!(
        before.delta(&after, "OutSegs"),
        0,
        "not one segment left either end"
    );
    assert_eq!(before.delta(&after, "OutRsts"), 0, "no RST");
    assert_eq!(
        before.delta(&after, "CurrEstab"),
        -1,
        "the kernel counts one established connection fewer"
    );
    discard(conn.client);
}

#[test]
fn silent_without_net_admin_falls_back_to_reset() {
    if !netns::may_run("silent_without_net_admin_falls_back_to_reset", true) {
        return;
    }
    let ns = Netns::new("unpriv");
    // One thread of its own enters the namespace, then gives up
    // CAP_NET_ADMIN for good: the teardown runs there, the rest of the
    // process keeps the capability.
    let Conn {
        listener: _listener,
        server,
        mut client,
        server_addr,
        client_addr,
    } = ns.loopback_pair();
    let forks = netns::no_forks();
    let (outcome, left, before, had_admin, lib_says) = ns.run(|| {
        netns::drop_net_admin_on_this_thread();
        let had_admin = netns::thread_has_cap(netns::CAP_NET_ADMIN);
        let lib_says = census::has_net_admin();
        let before = TcpCounters::read();
        let outcome = close_bounded(server, Policy::Silent);
        let left = census::lookup(server_addr, client_addr).expect("census lookup");
        (outcome, left, before, had_admin, lib_says)
    });
    let client_read = client_read(&mut client);
    let after = ns.tcp_counters();
    drop(forks);
    eprintln!(
        "silent without CAP_NET_ADMIN: {outcome} | server 4-tuple: {left:?} | client read: {client_read:?} \
         | RSTs sent {} | census::has_net_admin() on that thread: {lib_says}",
        before.delta(&after, "OutRsts"),
    );

    assert!(!had_admin, "the teardown thread lost CAP_NET_ADMIN");
    assert_eq!(outcome.ending, Ending::SilentRefusedReset, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Nobody, "{outcome}");
    assert_eq!(left, None, "the server's socket is gone");
    assert_eq!(lookup(&ns, server_addr, client_addr), None);
    assert!(
        matches!(&client_read, Some(Err(e)) if e.kind() == ErrorKind::ConnectionReset),
        "the client was reset: {client_read:?}"
    );
    assert_eq!(before.delta(&after, "OutRsts"), 1, "exactly one RST");
    discard(client);
}
