//! Python's `http.client` against farewell-http: a client that takes its time
//! to close (and, for the plain contrast, one that closes only after the
//! server's FIN), an early 413 with a 1 MB request body left unread, and a client
//! with a small receive buffer. Bodies are checked byte by byte (in Python),
//! then the kernel's socket table on the server's port.

use crate::common;

use std::time::Duration;

use common::*;
use farewell::{Ending, Policy, TcpState};

/// GET `path` with `Connection: close` on a socket with `SO_RCVBUF` = `rcvbuf`
/// (0: the default), check the a-z pattern of `n` bytes, then close: after
/// `then` seconds, or with `then` = `eof` only once the server has closed (its
/// FIN read as end of file, bounded by the socket timeout). Prints `ok STATUS LEN`.
///
/// The script keeps the socket itself and parses with `http.client.HTTPResponse`:
/// `HTTPConnection` closes its socket as soon as a `Connection: close` body is
/// read, whatever the script does next, which made a "lazy" client close at
/// once and race the server's FIN.
const GET: &str = r#"
import http.client, socket, sys, time
port, path, n, rcvbuf, then = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if rcvbuf:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
sock.settimeout(20)
sock.connect(("127.0.0.1", port))
sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
resp = http.client.HTTPResponse(sock)
resp.begin()
body = resp.read()
assert len(body) == n, (len(body), n)
expected = bytes(97 + i % 26 for i in range(26)) * (n // 26 + 1)
assert body == expected[:n], "body differs from the pattern"
if then == "eof":
    assert sock.recv(1) == b"", "nothing after the body but the server's FIN"
else:
    time.sleep(float(then))
sock.close()
print("ok", resp.status, len(body))
"#;

async fn python(script: &str, args: &[String]) -> String {
    let mut argv = vec!["-c", script];
    argv.extend(args.iter().map(String::as_str));
    String::from_utf8(run("python3", &argv).await.stdout).unwrap()
}

/// GET 50 000 bytes, then close after `then` (seconds, or `eof`; see [`GET`]).
async fn get_then_close(port: u16, then: &str) -> String {
    let n = 50_000;
    python(
        GET,
        &[
            port.to_string(),
            format!("/bytes/{n}"),
            n.to_string(),
            "0".into(),
            then.into(),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_waits_for_a_lazy_client_to_close_first() {
    if !farewell_lab::support::tools::require(
        "peer_first_waits_for_a_lazy_client_to_close_first",
        &["python3"],
    ) {
        return;
    }
    // The client keeps the connection 0.3 s after the body; a 5 s grace leaves
    // a busy machine plenty of room (the test only waits it out if it fails).
    let patient = peer_first().with_grace(Duration::from_secs(5));
    let server = start(server(patient)).await;
    let port = server.addr.port();
    assert_eq!(get_then_close(port, "0.3").await, "ok 200 50000\n");
    let outcomes = std::sync::Arc::clone(&server.outcomes);
    server.shutdown().await;
    assert_eq!(count(&outcomes, Ending::PeerClosed), 1);
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_policy_leaves_server_time_wait_when_the_client_waits_for_its_fin() {
    if !farewell_lab::support::tools::require(
        "plain_policy_leaves_server_time_wait_when_the_client_waits_for_its_fin",
        &["python3"],
    ) {
        return;
    }
    // The contrast that lets the peer-first tests fail. The client closes
    // only after reading the server's FIN, so the server's FIN is first for
    // certain and the entry is the server's (farewell::facts F1). A client that
    // closes as soon as it has the body races the server's FIN and wins
    // now and then (then it keeps the entry and the server's port shows 0
    // sockets), which is what made this test flaky.
    let server = start(server(Policy::Plain(Default::default()))).await;
    let port = server.addr.port();
    assert_eq!(get_then_close(port, "eof").await, "ok 200 50000\n");
    let outcomes = std::sync::Arc::clone(&server.outcomes);
    server.shutdown().await;
    assert_eq!(count(&outcomes, Ending::PlainClose), 1);
    let counts = settled_server_sockets(port).await;
    assert_eq!(counts.get(TcpState::TimeWait), 1, "{counts:?}");
    assert_eq!(counts.total(), 1, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_early_413_with_unread_1mb_body_reaches_the_client() {
    if !farewell_lab::support::tools::require(
        "peer_first_early_413_with_unread_1mb_body_reaches_the_client",
        &["python3"],
    ) {
        return;
    }
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let out = python(UPLOAD, &[port.to_string(), (1024 * 1024).to_string()]).await;
    assert_eq!(out, "413 request body too large\n");
    let outcomes = std::sync::Arc::clone(&server.outcomes);
    server.shutdown().await;
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].ending, Ending::PeerClosed, "{}", outcomes[0]);
    assert!(
        outcomes[0].bytes_drained > 0,
        "the unread body was drained: {}",
        outcomes[0]
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_small_receive_buffer_client_gets_the_whole_body() {
    if !farewell_lab::support::tools::require(
        "peer_first_small_receive_buffer_client_gets_the_whole_body",
        &["python3"],
    ) {
        return;
    }
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let n = 2_000_000;
    let out = python(
        GET,
        &[
            port.to_string(),
            format!("/bytes/{n}"),
            n.to_string(),
            "4096".into(),
            "0".into(),
        ],
    )
    .await;
    assert_eq!(out, format!("ok 200 {n}\n"));
    server.shutdown().await;
    assert_no_server_time_wait_nor_leftovers(port).await;
}
