//! A connection's teardown runs in the connection's own task
//! (`Closer::close_here`): the shutdown timeout bounds it like the rest of
//! the connection, and cutting the task cuts the teardown as a hurry would —
//! a reset the client sees, no TIME-WAIT on the server — rather than closing
//! the socket plainly.

use crate::common;

use std::io;
use std::time::Duration;

use common::*;
use farewell::{Ending, PeerFirst, Policy};
use farewell_http::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds every wait here; none is a speed assertion.
const BOUND: Duration = Duration::from_secs(10);

/// Reads until `needle` has arrived (bounded).
async fn read_until(client: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(BOUND, async {
        while !got.windows(needle.len()).any(|w| w == needle) {
            let n = client.read(&mut buf).await.expect("the response arrives");
            assert!(n > 0, "EOF before the response ended: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the whole response within the bound");
    got
}

/// Connects to `addr`, sends `GET /` with `Connection: close` and reads the
/// whole response (bounded); returns the client, still open, and what it read.
async fn get_with_close(addr: std::net::SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = read_until(&mut client, b"hello from farewell-http\n").await;
    (client, response)
}

/// A client that read its `Connection: close` response and never closes:
/// peer-first waits for its FIN for the whole grace (a minute here). The
/// shutdown's 300 ms bound ends that wait (`Running::shutdown` would fail
/// after 20 s), the client gets a reset, the server keeps nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_cuts_a_teardown_still_waiting_for_the_clients_fin() {
    let policy = Policy::PeerFirst(PeerFirst {
        grace: Duration::from_secs(60),
        drain_limit: farewell_http::DEFAULT_DRAIN_LIMIT,
        ..PeerFirst::default()
    });
    let running = start(
        Server::new()
            .policy(policy)
            .shutdown_timeout(Duration::from_millis(300)),
    )
    .await;
    let port = running.addr.port();
    let outcomes = std::sync::Arc::clone(&running.outcomes);

    let (mut client, response) = get_with_close(running.addr).await;
    assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
    // hyper is done once the response is out; give the task a moment to
    // reach the teardown's wait (it has nothing else to do).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        outcomes.lock().unwrap().is_empty(),
        "the teardown waits for the client's FIN"
    );

    let report = running.shutdown().await;
    assert_eq!(report.forced, 1, "the waiting teardown was cut: {report}");
    let ended: Vec<Ending> = outcomes.lock().unwrap().iter().map(|o| o.ending).collect();
    assert_eq!(ended, vec![Ending::ResetAtDeadline], "cut as a hurry cuts");

    let mut rest = [0u8; 64];
    let read = tokio::time::timeout(BOUND, client.read(&mut rest))
        .await
        .expect("the client hears of the cut");
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset),
        "a reset, not our FIN"
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// A `Connection: close` request whose client closes `pause` after reading
/// the whole response; returns the client's own outcome: the response, then
/// end of file (no reset), and the teardown's outcome.
async fn close_after(pause: Duration) -> (Vec<u8>, farewell::Outcome, u16) {
    let running = start(server(peer_first())).await;
    let port = running.addr.port();
    let outcomes = std::sync::Arc::clone(&running.outcomes);
    let (mut client, response) = get_with_close(running.addr).await;
    tokio::time::sleep(pause).await;
    // Our FIN; the server's answer is its FIN (the passive close): end of file.
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(BOUND, client.read_to_end(&mut rest))
        .await
        .expect("the server's FIN within the bound")
        .expect("end of file, not a reset");
    assert!(rest.is_empty(), "nothing after the response: {rest:?}");
    drop(client);
    let deadline = std::time::Instant::now() + BOUND;
    while outcomes.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no outcome within the bound"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = running.shutdown().await;
    let outcome = outcomes.lock().unwrap()[0].clone();
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    assert_eq!(
        outcome.peer_fin,
        Some(farewell::PeerFinChoice::Light { recent: 1 }),
        "{outcome}"
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
    // The client keeps the TIME-WAIT: a light client's passive close.
    assert_eq!(
        client_sockets(port).await.get(farewell::TcpState::TimeWait),
        1
    );
    (response, outcome, port)
}

/// hyper's end of a `Connection: close` response waits in the IO (a
/// quarter of a second at most) for the client's FIN: a client that closes
/// within it, here 100 ms after its response, finds the teardown not begun
/// yet, which then ends at once inside the hand-over (no waiting teardown,
/// no timer of its own). Its outcome's time is the teardown's: under the
/// client's pause. Before (the teardown handed over at the response's end)
/// it spanned the pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_closing_soon_after_its_response_meets_a_teardown_that_ends_at_once() {
    let pause = Duration::from_millis(100);
    let (response, outcome, _) = close_after(pause).await;
    assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
    assert!(
        outcome.elapsed < pause,
        "the teardown began after the client's FIN: {outcome}"
    );
}

/// A client that closes after that wait (600 ms after its response) meets
/// the teardown that took over when the wait ended: the same passive close,
/// its end of file, nothing kept on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_closing_after_the_wait_in_the_io_gets_the_same_passive_close() {
    let (response, outcome, _) = close_after(Duration::from_millis(600)).await;
    assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
    assert!(outcome.elapsed > Duration::ZERO, "{outcome}");
}
