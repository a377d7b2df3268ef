//! The teardown policies over real network paths, the way the lab runs them
//! ([`run_connection_on`]): each connection's server socket lives in the
//! path's server namespace and its client in the client namespace, and each
//! verdict is the kernel's own socket table (sock_diag, read in each end's
//! namespace) plus what the peer's application received, checked byte for
//! byte against the pattern of the large last message.
//!
//! * Over a rate-limited path with a large last message, peer-first
//!   delivers every byte to a slow reader and keeps no server TIME-WAIT;
//!   plain delivers it too and keeps server TIME-WAIT (the peer closes after
//!   reading); abort loses bytes.
//! * Over a path with round-trip time and loss, every peer-first cell for a
//!   live peer ends with the goodbye delivered and no server TIME-WAIT.
//! * A peer that never reads is still released, by the stall timeout, with
//!   nothing of it left in the kernel's table.
//! * A peer that half-closed and reads on, whose FIN the server read itself
//!   (`Handoff::peer_fin_read`) while its reply was still queued behind the
//!   link, gets every byte and end of file, not the reset a client whose FIN
//!   came after everything was ACKed would get.
//!
//! The policies are the lab's ([`lab_policy_on`]: grace 300 ms, stall
//! timeout 600 ms plus the path's slack for its queue and round trip, total
//! caps of seconds). No test asserts a speed; every wait is
//! bounded (the lab's own bounds, and [`TEST_BOUND`] around each test).
//!
//! Paths other than loopback need `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` and
//! the `ip`, `tc` and `nft` tools; without them each test prints why it is
//! skipped and returns. A binary of its own: making a path forks `ip`, `tc`
//! and `nft`, and a fork holds copies of other tests' sockets (see
//! `lab::netns`, "Fork hazard"); the tests of this binary also take turns
//! ([`one_at_a_time`]) for the same reason.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use farewell::census::{self, Filter};
use farewell::{Ending, Policy, TcpState};
use farewell_lab::lab::path::{NetPath, PathKind, PathSpec, Slow};
use farewell_lab::lab::{
    lab_policy_on, last_message, run_connection_on, Behaviour, Trial, GOODBYE,
};

/// No test may run longer; past it the test fails.
const TEST_BOUND: Duration = Duration::from_secs(120);

/// The lab's main deadline: peer-first's grace; the stall timeout is twice it.
const GRACE: Duration = Duration::from_millis(300);

/// The large last message: 256 KiB, like the last HTTP response before a
/// close. At the slow reader's 200 KiB/s it takes over a second to read,
/// four times the lab's grace: a policy that counted from the write would
/// cut it.
const LARGE: usize = 256 * 1024;

/// Connections per case: enough to catch a race, few enough to stay quick.
const CONNECTIONS: usize = 3;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One test at a time: each makes and deletes a path (forks) while the
/// others would tear sockets down. (An async lock: each test has its own
/// runtime, and holds its turn across its awaits.)
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    TURN.lock().await
}

/// True when a path of `kind` can be made here; otherwise prints why the test is skipped.
fn may_run(test: &str, kind: PathKind) -> bool {
    match kind.unavailable() {
        None => true,
        Some(why) => farewell_lab::support::tools::skip(
            test,
            &format!(
                "{why} (run the tests as root, or in a container with --cap-add NET_ADMIN \
                 --cap-add SYS_ADMIN, iproute2 and nftables installed)"
            ),
        ),
    }
}

async fn make(spec: PathSpec) -> Arc<NetPath> {
    let path = tokio::task::spawn_blocking(move || NetPath::new(spec))
        .await
        .expect("the blocking pool runs")
        .unwrap_or_else(|e| panic!("making {spec}: {e}"));
    eprintln!("{path}");
    Arc::new(path)
}

/// Deletes the path (forks `ip`) once every socket made on it is closed.
async fn remove(path: Arc<NetPath>) {
    tokio::task::spawn_blocking(move || drop(path))
        .await
        .expect("the blocking pool runs");
}

/// The lab's policy `name` for a run on `path`.
fn policy(path: &NetPath, name: &str) -> Policy {
    lab_policy_on(name, GRACE, path.spec()).expect("a policy of the lab")
}

/// `CONNECTIONS` connections of one cell, one after the other.
async fn cell(
    path: &Arc<NetPath>,
    policy_name: &str,
    behaviour: Behaviour,
    goodbye: &Bytes,
) -> Vec<Trial> {
    let mut trials = Vec::with_capacity(CONNECTIONS);
    for n in 0..CONNECTIONS {
        let trial = run_connection_on(path, policy(path, policy_name), behaviour, goodbye.clone())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{policy_name} × {} connection {n} did not run: {e}",
                    behaviour.name()
                )
            });
        trials.push(trial);
    }
    trials
}

fn describe(t: &Trial) -> String {
    format!(
        "{}; lost {} of {} B; server end {:?}; client TIME-WAIT {}",
        t.outcome, t.goodbye_bytes_lost, t.goodbye_bytes, t.server_state, t.client_time_wait
    )
}

/// Every socket of the path's server end (or client end) that is not
/// listening, by the kernel's table in that namespace.
fn sockets(path: &NetPath, server_end: bool) -> Vec<census::SocketEntry> {
    let dump = || census::dump(&Filter::all());
    let entries = if server_end {
        path.server(dump)
    } else {
        path.client(dump)
    }
    .expect("enter the path's namespace")
    .expect("read the kernel's table");
    entries
        .into_iter()
        .filter(|e| e.state != TcpState::Listen)
        .collect()
}

/// A slow path about as fast as the slow reader takes bytes: 2 Mbit/s
/// (about 240 KiB/s) each way, so both the link and the reader hold the
/// last message back, and it takes over a second.
fn slow_spec() -> PathSpec {
    PathSpec::Slow(Slow {
        rate: 2_000_000,
        ..Slow::default()
    })
}

// ---- a rate-limited path, a large last message, a slow reader ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_path_large_last_message_to_a_slow_reader() {
    let test = "slow_path_large_last_message_to_a_slow_reader";
    let _turn = one_at_a_time().await;
    if !may_run(test, PathKind::Slow) {
        return;
    }
    tokio::time::timeout(TEST_BOUND, async {
        let path = make(slow_spec()).await;
        let large = last_message(LARGE);

        // peer-first: every byte, then the peer's FIN; no server TIME-WAIT.
        for t in cell(&path, "peer-first", Behaviour::SlowReader, &large).await {
            let what = describe(&t);
            assert!(t.peer_got_goodbye, "peer-first × slow-reader: {what}");
            assert_eq!(t.goodbye_bytes_lost, 0, "{what}");
            assert_eq!(t.goodbye_bytes, LARGE, "{what}");
            assert_eq!(t.outcome.ending, Ending::PeerClosed, "{what}");
            assert!(!t.server_time_wait, "peer-first kept TIME-WAIT: {what}");
            assert!(!t.server_leftover, "{what}");
            assert!(t.client_time_wait, "the peer pays TIME-WAIT: {what}");
        }

        // plain: the kernel delivers it all after close(), and the server,
        // which sent the first FIN, keeps TIME-WAIT once the peer closes.
        for t in cell(&path, "plain", Behaviour::SlowReader, &large).await {
            let what = describe(&t);
            assert!(t.peer_got_goodbye, "plain × slow-reader: {what}");
            assert_eq!(t.goodbye_bytes_lost, 0, "{what}");
            assert!(t.server_time_wait, "plain × slow-reader: {what}");
        }

        // abort: the reset discards what was not yet delivered.
        for t in cell(&path, "abort", Behaviour::SlowReader, &large).await {
            let what = describe(&t);
            assert_eq!(t.outcome.ending, Ending::Aborted, "{what}");
            assert!(t.goodbye_bytes_lost > 0, "abort lost nothing: {what}");
            assert!(!t.peer_got_goodbye, "{what}");
            assert!(!t.server_time_wait, "{what}");
        }

        // A cooperative peer that reads at the path's own pace: the same.
        for t in cell(&path, "peer-first", Behaviour::Cooperative, &large).await {
            let what = describe(&t);
            assert!(t.peer_got_goodbye, "peer-first × cooperative: {what}");
            assert!(!t.server_time_wait, "{what}");
        }
        for t in cell(&path, "abort", Behaviour::Cooperative, &large).await {
            let what = describe(&t);
            assert!(t.goodbye_bytes_lost > 0, "abort lost nothing: {what}");
        }
        remove(path).await;
    })
    .await
    .unwrap_or_else(|_| panic!("{test} took over {TEST_BOUND:?}"));
}

// ---- round-trip time and loss ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wan_path_peer_first_delivers_to_every_live_peer_and_keeps_no_time_wait() {
    let test = "wan_path_peer_first_delivers_to_every_live_peer_and_keeps_no_time_wait";
    let _turn = one_at_a_time().await;
    if !may_run(test, PathKind::Wan) {
        return;
    }
    tokio::time::timeout(TEST_BOUND, async {
        let path = make(PathKind::Wan.into()).await;
        let large = last_message(LARGE);
        let line = Bytes::from_static(GOODBYE);
        // Every live peer: its kernel answers and its application reads.
        let cases = [
            (Behaviour::Cooperative, large.clone()),
            (Behaviour::SlowReader, large.clone()),
            (Behaviour::Cooperative, line.clone()),
            (Behaviour::Ignores, line.clone()),
            (
                Behaviour::NeverHandshakes,
                Bytes::from_static(Behaviour::NeverHandshakes.goodbye()),
            ),
            (Behaviour::HalfClosesFirst, line.clone()),
        ];
        // The cases run at once (each its connections one after the other).
        let mut runs = tokio::task::JoinSet::new();
        for (behaviour, goodbye) in cases {
            let path = Arc::clone(&path);
            runs.spawn(async move {
                let trials = cell(&path, "peer-first", behaviour, &goodbye).await;
                (behaviour, trials)
            });
        }
        while let Some(joined) = runs.join_next().await {
            let (behaviour, trials) = joined.expect("a case panicked");
            for t in trials {
                let what = format!("peer-first × {}: {}", behaviour.name(), describe(&t));
                assert!(t.peer_got_goodbye, "goodbye not delivered: {what}");
                assert_eq!(t.goodbye_bytes_lost, 0, "{what}");
                assert!(!t.server_time_wait, "server TIME-WAIT: {what}");
                assert!(!t.server_leftover, "server socket left over: {what}");
            }
        }
        // A flooding peer is reset at the drain limit (by design): still no
        // TIME-WAIT and nothing left over.
        for t in cell(&path, "peer-first", Behaviour::Floods, &line).await {
            let what = format!("peer-first × floods: {}", describe(&t));
            assert!(!t.server_time_wait, "{what}");
            assert!(!t.server_leftover, "{what}");
        }
        let dropped = path.dropped().ok().flatten();
        eprintln!("the path dropped {dropped:?} frames at random");
        remove(path).await;
    })
    .await
    .unwrap_or_else(|_| panic!("{test} took over {TEST_BOUND:?}"));
}

// ---- a peer that never reads ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_peer_is_released_by_the_stall_timeout_leaving_nothing() {
    let test = "never_reading_peer_is_released_by_the_stall_timeout_leaving_nothing";
    let _turn = one_at_a_time().await;
    if !may_run(test, PathKind::Slow) {
        return;
    }
    tokio::time::timeout(TEST_BOUND, async {
        let path = make(slow_spec()).await;
        let stall = match policy(&path, "peer-first") {
            Policy::PeerFirst(p) => p.stall_timeout,
            other => panic!("peer-first is {other:?}"),
        };
        let line = Bytes::from_static(GOODBYE);
        for t in cell(&path, "peer-first", Behaviour::NeverReads, &line).await {
            let what = describe(&t);
            assert_eq!(t.outcome.ending, Ending::ResetDeliveryStalled, "{what}");
            // Timers never fire early: it waited the stall timeout.
            assert!(
                t.release >= stall,
                "released before the stall timeout: {what}"
            );
            assert!(!t.peer_got_goodbye, "{what}");
            assert_eq!(t.server_state, None, "left in the kernel's table: {what}");
            assert!(!t.client_time_wait, "{what}");
        }
        // Nothing of any connection is left in either end's table.
        for (end, server_end) in [("server", true), ("client", false)] {
            let left = sockets(&path, server_end);
            assert!(left.is_empty(), "left in the {end} namespace: {left:?}");
        }
        remove(path).await;
    })
    .await
    .unwrap_or_else(|_| panic!("{test} took over {TEST_BOUND:?}"));
}

// ---- a FIN the server read itself, with bytes still in flight ----

/// The reply of the test below: more than the server's send buffer takes at
/// once (it starts near 128 KiB), which the 2 Mbit/s link carries in half a second.
const REPLY: usize = 768 * 1024;

/// A client that half-closes, then reads on, across the slow path; the
/// server reads its FIN itself, writes a large reply, and hands the stream
/// over with `Handoff::peer_fin_read` and nothing more to say, under a
/// policy that resets a client whose FIN comes once everything was ACKed
/// (`PeerTimeWait::Spare`). Nearly all of what the buffer took is still
/// queued behind the link at the hand-over, so the teardown's start, which asks only `SIOCOUTQ`, must see it in
/// flight and answer the FIN passively: a reset here would throw away what
/// the link had not carried yet. Judged by what the client read (every byte,
/// in order, then end of file) and by each end's table (the server keeps
/// nothing, the client its TIME-WAIT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_path_fin_read_by_the_server_with_bytes_in_flight_is_answered_passively() {
    let test = "slow_path_fin_read_by_the_server_with_bytes_in_flight_is_answered_passively";
    let _turn = one_at_a_time().await;
    if !may_run(test, PathKind::Slow) {
        return;
    }
    tokio::time::timeout(TEST_BOUND, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let path = make(slow_spec()).await;
        let listener = path
            .server(|| std::net::TcpListener::bind((path.server_ip(), 0)))
            .expect("enter the server's namespace")
            .expect("bind in the server's namespace");
        let to = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let client = path
            .client(|| std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10)))
            .expect("enter the client's namespace")
            .expect("connect across the path");
        client.set_nonblocking(true).unwrap();
        let mut client = tokio::net::TcpStream::from_std(client).unwrap();
        let (mut server, peer) = listener.accept().await.unwrap();
        let client_port = client.local_addr().unwrap().port();

        // The client's request, then its FIN; the server reads both.
        client.write_all(b"GET\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut request = Vec::new();
        server.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"GET\n");

        // The reply, as much as the server's buffer takes at once.
        let reply: Vec<u8> = (0..REPLY).map(|i| b'a' + (i % 26) as u8).collect();
        let written = farewell_lab::support::send::write_what_fits(&server, &reply);
        let in_flight = farewell::sys::unacked_bytes(&server).unwrap();
        assert!(in_flight > 0, "the link carried the whole reply at once");
        eprintln!("{written} B written, {in_flight} B in flight at the hand-over");

        let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        let closer = farewell::Closer::builder(Policy::PeerFirst(farewell::PeerFirst {
            peer_time_wait: farewell::PeerTimeWait::Spare,
            ..farewell::PeerFirst::default()
        }))
        .on_outcome(move |o| {
            let _ = tx.send(o);
        })
        .build();
        closer.close(
            farewell::Handoff::new(server, peer).peer_fin_read(),
            Bytes::new(),
        );

        let mut got = Vec::with_capacity(written);
        let read = client.read_to_end(&mut got).await;
        assert!(
            read.is_ok(),
            "the half-closed client got {read:?}, not end of file"
        );
        assert_eq!(got.len(), written, "{in_flight} B were in flight");
        assert!(
            got == reply[..written],
            "the bytes arrive whole and in order"
        );
        let outcome = outcomes.recv().await.expect("one outcome");
        eprintln!("{outcome}");
        assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
        assert_eq!(
            outcome.peer_fin,
            Some(farewell::PeerFinChoice::HalfClose),
            "{outcome}"
        );
        drop(client);

        // Each end's table, once the passive close's LAST-ACK has passed (bounded).
        let mut ours = sockets(&path, true);
        for _ in 0..150 {
            if ours.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            ours = sockets(&path, true);
        }
        assert!(ours.is_empty(), "left in the server namespace: {ours:?}");
        let theirs: Vec<_> = sockets(&path, false)
            .into_iter()
            .filter(|e| e.local.port() == client_port)
            .collect();
        assert_eq!(theirs.len(), 1, "the client's table: {theirs:?}");
        assert_eq!(theirs[0].state, TcpState::TimeWait, "{theirs:?}");
        remove(path).await;
    })
    .await
    .unwrap_or_else(|_| panic!("{test} took over {TEST_BOUND:?}"));
}
