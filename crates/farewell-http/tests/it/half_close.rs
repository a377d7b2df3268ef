//! Clients that half-close after their requests (RFC 9112 §9.6): `nc -N`
//! sends its request and then its FIN (`shutdown(SHUT_WR)`), a Python socket
//! pipelines three requests and then half-closes. The server must answer
//! everything that came before the FIN, then close passively: the client keeps
//! TIME-WAIT, the server nothing (judged by the kernel's socket table).

use crate::common;

use common::*;
use farewell::{Ending, Policy, TcpState};

/// `printf REQUEST | nc -N 127.0.0.1 PORT`: nc sends the request, then its FIN
/// at stdin's EOF, and prints what comes back until the server closes.
async fn nc_half_close(port: u16, request: &str) -> String {
    let (out, _) = run_with_stdin(
        "nc",
        &["-N", "-w", "10", "127.0.0.1", &port.to_string()],
        request.as_bytes(),
    )
    .await;
    String::from_utf8(out).unwrap()
}

/// Pipelines `count` GETs of `/bytes/26` (HTTP version `version`), then
/// `shutdown(SHUT_WR)`, then reads until the server's end of stream and counts
/// the whole responses (head and 26-byte body). Prints `responses N` and the statuses.
const PIPELINE: &str = r#"
import re, socket, sys
port, count, version = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
req = f"GET /bytes/26 {version}\r\nHost: 127.0.0.1\r\n\r\n".encode()
sock.sendall(req * count)
sock.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
sock.close()
heads = re.findall(rb"HTTP/1\.[01] (\d{3}) [^\r]*\r\n(?:[^\r]+\r\n)*\r\nabcdefghijklmnopqrstuvwxyz", data)
statuses = [int(s) for s in heads]
print("responses", len(statuses), *statuses)
"#;

async fn pipeline_then_half_close(port: u16, count: usize, version: &str) -> String {
    let out = run(
        "python3",
        &[
            "-c",
            PIPELINE,
            &port.to_string(),
            &count.to_string(),
            version,
        ],
    )
    .await;
    String::from_utf8(out.stdout).unwrap()
}

fn assert_hello(response: &str) {
    assert!(
        response.starts_with("HTTP/1.1 200 OK\r\n") || response.starts_with("HTTP/1.0 200 OK\r\n"),
        "a response, not {response:?}"
    );
    assert!(
        response.ends_with(farewell_lab::support::http_demo::HELLO),
        "the whole body: {response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_nc_half_close_after_request_gets_the_response() {
    if !farewell_lab::support::tools::require(
        "peer_first_nc_half_close_after_request_gets_the_response",
        &["nc"],
    ) {
        return;
    }
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    // Not HTTP/1.0 without keep-alive here: the server owes that client its
    // FIN (`read_to_close.rs`), and nc's FIN, sent at stdin's end, can cross
    // it; the kernel then resets on that FIN's ACK, and nc, which drops a
    // socket that reports an error (POLLERR) without reading it, can print
    // nothing. A client that reads (the pipelined test below) gets it all.
    for request in [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        for _ in 0..5 {
            assert_hello(&nc_half_close(port, request).await);
        }
    }
    let outcomes = std::sync::Arc::clone(&server.outcomes);
    let ends = std::sync::Arc::clone(&server.connections);
    let report = server.shutdown().await;
    assert_eq!(report.connections, 10);
    // Each answer came after the client's FIN: it is the connection's goodbye,
    // and the client's kernel ACKed it.
    let ends = ends.lock().unwrap().clone();
    assert_eq!(ends.len(), 10);
    for end in &ends {
        assert_eq!(end.last_response, farewell::Delivery::Confirmed, "{end}");
        assert_eq!(end.requests, 1, "{end}");
    }
    assert_eq!(report.requests, 10);
    assert_eq!(
        count(&outcomes, Ending::PeerClosed),
        10,
        "the client's FIN was in before the teardown: {report}"
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_pipelined_requests_then_half_close_get_every_response() {
    if !farewell_lab::support::tools::require(
        "peer_first_pipelined_requests_then_half_close_get_every_response",
        &["python3"],
    ) {
        return;
    }
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    assert_eq!(
        pipeline_then_half_close(port, 3, "HTTP/1.1").await.trim(),
        "responses 3 200 200 200"
    );
    // HTTP/1.0 without keep-alive: one request per connection, the first is answered.
    assert_eq!(
        pipeline_then_half_close(port, 1, "HTTP/1.0").await.trim(),
        "responses 1 200"
    );
    let outcomes = std::sync::Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(report.requests, 4, "{report}");
    // HTTP/1.1 by the policy. HTTP/1.0 too: the client's FIN is in when the
    // server would owe it its own, so the policy's passive close ends it.
    assert_eq!(count(&outcomes, Ending::PeerClosed), 2, "{report}");
    assert_eq!(report.close_delimited, 0, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_policy_pipelined_requests_then_half_close_get_every_response() {
    if !farewell_lab::support::tools::require(
        "plain_policy_pipelined_requests_then_half_close_get_every_response",
        &["python3", "nc"],
    ) {
        return;
    }
    let server = start(server(Policy::Plain(Default::default()))).await;
    let port = server.addr.port();
    assert_eq!(
        pipeline_then_half_close(port, 3, "HTTP/1.1").await.trim(),
        "responses 3 200 200 200"
    );
    assert_hello(&nc_half_close(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await);
    let report = server.shutdown().await;
    assert_eq!(report.requests, 4, "{report}");
    // The client's FIN came first, so even plain's close() is the passive one.
    let counts = settled_server_sockets(port).await;
    assert_eq!(counts.get(TcpState::TimeWait), 0, "{counts:?}");
}
