//! Delivery before grace, on real loopback sockets: a peer that is still
//! taking bytes is never cut, and one that stopped is released by the stall
//! timeout. Each test checks what the peer *application* read, the kernel's
//! socket table (sock_diag), and the outcome.
//!
//! Loopback has no rate limit, so the slow reader is made slow by its own
//! application: a small receive buffer (set before connecting, so the window
//! is small from the handshake on) and one read every 100 ms. No test asserts
//! a speed; every wait is bounded.

use crate::common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use common::{connected_pair, kernel_state, settle, V4};
use farewell::{
    Delivery, Ending, FinThenReset, Lingering, Outcome, PeerFirst, Policy, TcpState, TimeWait,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The large last message: 1 MiB, as a last HTTP response might be.
const LARGE: usize = 1024 * 1024;
/// The slow reader's receive buffer (the kernel doubles it for overhead).
const SMALL_RCVBUF: u32 = 16 * 1024;
/// The slow reader takes at most this much per read...
const READ_CHUNK: usize = 64 * 1024;
/// ...once per this pause.
const READ_PAUSE: Duration = Duration::from_millis(100);
/// No test waits longer than this for anything.
const BOUND: Duration = Duration::from_secs(60);

/// A goodbye whose every byte can be checked: byte `i` is `i % 251`.
fn large_goodbye() -> Vec<u8> {
    (0..LARGE).map(|i| (i % 251) as u8).collect()
}

/// What the slow reader's application got.
struct Received {
    bytes: Vec<u8>,
    /// How reading ended: `None` for EOF, else the error.
    error: Option<io::ErrorKind>,
}

/// Reads `READ_CHUNK` bytes every `READ_PAUSE` until `want` bytes (then it
/// returns, leaving the socket to the caller), EOF, an error or [`BOUND`].
async fn read_slowly(client: &mut TcpStream, want: usize) -> Received {
    let mut bytes = Vec::with_capacity(want.min(LARGE));
    let mut chunk = vec![0u8; READ_CHUNK];
    let reading = async {
        loop {
            if bytes.len() >= want {
                return None;
            }
            match client.read(&mut chunk).await {
                Ok(0) => return None,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) => return Some(e.kind()),
            }
            tokio::time::sleep(READ_PAUSE).await;
        }
    };
    let error = tokio::time::timeout(BOUND, reading)
        .await
        .expect("the slow reader finishes within the bound");
    Received { bytes, error }
}

/// Tears `server` down with `policy` and `goodbye`, bounded.
async fn close_bounded(server: TcpStream, policy: Policy, goodbye: Vec<u8>) -> Outcome {
    tokio::time::timeout(BOUND, farewell::close(server, policy, goodbye))
        .await
        .expect("the teardown ends within the bound")
}

fn assert_every_byte(got: &Received, label: &str) {
    assert_eq!(
        got.bytes.len(),
        LARGE,
        "{label}: the reader got {} of {LARGE} bytes (then {:?})",
        got.bytes.len(),
        got.error
    );
    assert!(
        got.bytes == large_goodbye(),
        "{label}: the bytes arrived, but not as sent"
    );
}

/// The 4-tuple as the server and the client see it.
fn ends(server: &TcpStream, client: &TcpStream) -> (SocketAddr, SocketAddr) {
    (server.local_addr().unwrap(), client.local_addr().unwrap())
}

// ---- peer-first ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_slow_reader_gets_every_byte_and_no_server_time_wait() {
    let (server, mut client) = connected_pair(V4, Some(SMALL_RCVBUF)).await;
    let (server_addr, client_addr) = ends(&server, &client);
    // A short grace: the old rule (grace from the write, then 1 s for the
    // ACK) would have cut this reader after about a second.
    let policy = Policy::PeerFirst(PeerFirst {
        grace: Duration::from_millis(200),
        stall_timeout: Duration::from_secs(5),
        ..PeerFirst::default()
    });
    let teardown = tokio::spawn(close_bounded(server, policy, large_goodbye()));
    // The client reads the whole message at its own pace, then closes (as an
    // HTTP client does after a Content-Length body).
    let got = read_slowly(&mut client, LARGE).await;
    drop(client);
    let outcome = teardown.await.unwrap();
    eprintln!("{outcome}");

    assert_every_byte(&got, "peer-first");
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    assert_eq!(outcome.goodbye, Delivery::Confirmed, "{outcome}");
    assert_eq!(outcome.goodbye_written, LARGE, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Peer, "{outcome}");
    // The kernel is the judge: the client holds TIME-WAIT, the server nothing.
    settle(server_addr, client_addr).await;
    assert_eq!(kernel_state(server_addr, client_addr), None, "{outcome}");
    assert_eq!(
        kernel_state(client_addr, server_addr),
        Some(TcpState::TimeWait),
        "{outcome}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_slow_reader_that_never_closes_is_reset_only_after_delivery_and_grace() {
    let (server, mut client) = connected_pair(V4, Some(SMALL_RCVBUF)).await;
    let (server_addr, client_addr) = ends(&server, &client);
    let policy = Policy::PeerFirst(PeerFirst {
        grace: Duration::from_millis(200),
        stall_timeout: Duration::from_secs(5),
        ..PeerFirst::default()
    });
    let teardown = tokio::spawn(close_bounded(server, policy, large_goodbye()));
    // This client reads until the connection ends, never closing itself.
    let got = read_slowly(&mut client, usize::MAX).await;
    let outcome = teardown.await.unwrap();
    eprintln!("{outcome}");

    assert_every_byte(&got, "peer-first, reader that never closes");
    assert_eq!(got.error, Some(io::ErrorKind::ConnectionReset));
    assert_eq!(outcome.ending, Ending::ResetAfterGrace, "{outcome}");
    assert_eq!(outcome.goodbye, Delivery::Confirmed, "{outcome}");
    assert_eq!(outcome.unacked_at_close, Some(0), "{outcome}");
    assert!(
        outcome.bytes_delivered >= LARGE as u64,
        "the kernel counted the whole message ACKed: {outcome}"
    );
    // The grace counted from the end of delivery, not from the write.
    assert!(
        outcome.grace >= Duration::from_millis(200),
        "a whole grace after delivery: {outcome}"
    );
    assert_eq!(outcome.time_wait, TimeWait::Nobody, "{outcome}");
    settle(server_addr, client_addr).await;
    assert_eq!(kernel_state(server_addr, client_addr), None, "{outcome}");
    assert_eq!(kernel_state(client_addr, server_addr), None, "{outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_never_reading_peer_is_reset_when_delivery_stalls() {
    let (server, client) = connected_pair(V4, Some(SMALL_RCVBUF)).await;
    let (server_addr, client_addr) = ends(&server, &client);
    let policy = Policy::PeerFirst(PeerFirst {
        grace: Duration::from_millis(200),
        stall_timeout: Duration::from_millis(500),
        ..PeerFirst::default()
    });
    // The client never reads: its window closes after a few KiB.
    let outcome = close_bounded(server, policy, large_goodbye()).await;
    eprintln!("{outcome}");

    assert_eq!(outcome.ending, Ending::ResetDeliveryStalled, "{outcome}");
    assert_eq!(outcome.goodbye, Delivery::Unconfirmed, "{outcome}");
    assert!(
        outcome.unacked_at_close.is_some_and(|n| n > 0),
        "bytes were still unACKed: {outcome}"
    );
    assert!(
        outcome.elapsed >= Duration::from_millis(500),
        "not before the stall timeout: {outcome}"
    );
    assert_eq!(outcome.grace, Duration::ZERO, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Nobody, "{outcome}");
    // Nothing left in the kernel's table for this connection, on either side.
    settle(server_addr, client_addr).await;
    assert_eq!(kernel_state(server_addr, client_addr), None, "{outcome}");
    assert_eq!(kernel_state(client_addr, server_addr), None, "{outcome}");
    drop(client);
}

// ---- the other timed policies ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fin_then_reset_and_lingering_reset_wait_for_a_progressing_slow_reader() {
    // Short idle and stall timeouts: by reads alone, the peer (which sends
    // nothing) is idle at once; only its ACKs say it is alive.
    let policies = [
        Policy::FinThenReset(FinThenReset {
            delivery_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(3),
        }),
        Policy::Lingering(Lingering {
            stall_timeout: Duration::from_millis(300),
            delivery_timeout: Duration::from_secs(30),
            reset_on_timeout: true,
        }),
    ];
    for policy in policies {
        let (server, mut client) = connected_pair(V4, Some(SMALL_RCVBUF)).await;
        let teardown = tokio::spawn(close_bounded(server, policy, large_goodbye()));
        // Both send FIN after the message: the reader reads to EOF (or the reset).
        let got = read_slowly(&mut client, usize::MAX).await;
        drop(client);
        let outcome = teardown.await.unwrap();
        eprintln!("{outcome}");

        let label = policy.name();
        assert_every_byte(&got, label);
        assert!(
            !matches!(
                outcome.ending,
                Ending::ResetAfterLinger
                    | Ending::ResetFinUnacked
                    | Ending::ResetDeliveryStalled
                    | Ending::LingeringTimeout
            ),
            "{label}: gave up on a peer still taking bytes: {outcome}"
        );
        assert_eq!(outcome.goodbye, Delivery::Confirmed, "{label}: {outcome}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_writes_a_large_goodbye_to_a_slow_reader_past_its_stall_timeout() {
    // A send buffer smaller than the message, so plain must wait to write it.
    let (server, mut client) = connected_pair(V4, Some(SMALL_RCVBUF)).await;
    socket2::SockRef::from(&server)
        .set_send_buffer_size(64 * 1024)
        .unwrap();
    let policy = Policy::Plain(farewell::Plain {
        delivery_timeout: Duration::from_secs(30),
        stall_timeout: Duration::from_secs(3),
    });
    let teardown = tokio::spawn(close_bounded(server, policy, large_goodbye()));
    let got = read_slowly(&mut client, usize::MAX).await;
    let outcome = teardown.await.unwrap();
    eprintln!("{outcome}");
    assert_every_byte(&got, "plain");
    assert_eq!(got.error, None, "plain ends with a FIN: {outcome}");
    assert_eq!(outcome.ending, Ending::PlainClose, "{outcome}");
    assert_eq!(outcome.goodbye_written, LARGE, "{outcome}");
}

// ---- the hard deadline ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closer_hurry_still_cuts_a_progressing_slow_reader_and_says_so() {
    let (server, mut client) = connected_pair(V4, Some(SMALL_RCVBUF)).await;
    let (server_addr, client_addr) = ends(&server, &client);
    let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let closer = farewell::Closer::builder(Policy::default())
        .on_outcome(move |outcome| {
            let _ = tx.send(outcome);
        })
        .build();
    closer.close(server, large_goodbye());
    // The reader takes bytes; a server's drain deadline comes meanwhile.
    let reader = tokio::spawn(async move { read_slowly(&mut client, usize::MAX).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    closer.hurry();
    tokio::time::timeout(BOUND, closer.idle())
        .await
        .expect("a hurried teardown ends");
    let outcome = outcomes.recv().await.expect("an outcome");
    eprintln!("{outcome}");
    let got = reader.await.unwrap();

    // The deadline wins over delivery, and the outcome says it cut the peer.
    assert_eq!(outcome.ending, Ending::ResetAtDeadline, "{outcome}");
    assert_eq!(outcome.goodbye, Delivery::Unconfirmed, "{outcome}");
    assert!(
        outcome.unacked_at_close.is_some_and(|n| n > 0),
        "bytes were still in flight: {outcome}"
    );
    assert_eq!(got.error, Some(io::ErrorKind::ConnectionReset));
    assert!(got.bytes.len() < LARGE, "the reset cut the message short");
    assert!(
        got.bytes[..] == large_goodbye()[..got.bytes.len()],
        "what arrived arrived intact"
    );
    settle(server_addr, client_addr).await;
    assert_eq!(kernel_state(server_addr, client_addr), None, "{outcome}");
}
