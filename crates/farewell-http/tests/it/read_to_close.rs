//! Clients that read until the server closes (issue 22): HTTP/1.0 without
//! keep-alive, whatever the response's framing: `ab`, `lynx -dump`, `nc`, a
//! plain socket reader. They send no FIN before the server's, so the server
//! owes them its FIN at once: the whole response, then end of file (not a
//! reset after the grace), and no TIME-WAIT on the server (the kernel's
//! socket table). An HTTP/1.1 `Connection: close` client closes by itself:
//! it stays with the policy.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use farewell::{Ending, Policy, TcpState};
use farewell_lab::support::http_demo::HELLO;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Long enough that a client left waiting for it is obvious.
const GRACE: Duration = Duration::from_secs(5);

/// The bound is "end of file within 0.5 s instead of after the grace";
/// this one leaves room for a loaded machine and is still well under [`GRACE`].
const AT_ONCE: Duration = Duration::from_millis(1500);

fn peer_first_long_grace() -> Policy {
    peer_first_with_grace(GRACE)
}

/// The value of ab's `label:` line (`Complete requests:      2000`).
fn ab_figure(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in ab's output:\n{stdout}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_http10_completes_every_request_and_leaves_no_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "ab_http10_completes_every_request_and_leaves_no_server_time_wait",
        &["ab"],
    ) {
        return;
    }
    let server = start(server(peer_first_long_grace())).await;
    let port = server.addr.port();
    let url = server.url("/");
    let started = Instant::now();
    // HTTP/1.0 without keep-alive, a Content-Length response; ab reads each
    // until the server closes, and fails the run at the first reset.
    let out = run("ab", &["-n", "2000", "-c", "4", &url]).await;
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines().filter(|l| {
        [
            "Complete requests:",
            "Failed requests:",
            "Requests per second:",
        ]
        .iter()
        .any(|p| l.starts_with(p))
    }) {
        eprintln!("ab: {line}");
    }
    eprintln!("ab -n 2000 -c 4 took {took:?}");
    assert_eq!(ab_figure(&stdout, "Complete requests:"), 2000, "{stdout}");
    assert_eq!(ab_figure(&stdout, "Failed requests:"), 0, "{stdout}");
    assert!(!stdout.contains("Non-2xx responses"), "{stdout}");
    let report = server.shutdown().await;
    assert_eq!(report.close_delimited, 2000, "{report}");
    assert_eq!(report.close_delimited_undelivered, 0, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
    // And ab's side (the census of the client sockets): our FIN is reset by
    // the kernel on its ACK, so ab keeps no entry per connection. A few
    // connections (0 to 3 of 2,000 seen) ab closed first itself, within our
    // short wait for a client's own FIN: those got the passive close and ab
    // keeps their entry, as any light client does.
    let clients = client_sockets(port).await;
    eprintln!("ab's side: {clients:?}");
    assert!(
        clients.get(TcpState::TimeWait) <= 10,
        "ab's side keeps TIME-WAIT per connection: {clients:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lynx_dump_http10_prints_the_page() {
    if !farewell_lab::support::tools::require("lynx_dump_http10_prints_the_page", &["lynx"]) {
        return;
    }
    let server = start(server(peer_first_long_grace())).await;
    let port = server.addr.port();
    let started = Instant::now();
    let out = run("lynx", &["-dump", &server.url("/")]).await;
    eprintln!("lynx -dump took {:?}", started.elapsed());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(HELLO.trim()), "lynx printed {page:?}");
    let report = server.shutdown().await;
    assert_eq!(report.close_delimited, 1, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// Sends `GET path HTTP/1.0` on a plain socket, reads until the end of file
/// (bounded); returns the response and the time from the request to the end
/// of file. A reset fails the read: it panics with the error.
async fn http10_read_to_eof(port: u16, path: &str) -> (Vec<u8>, Duration) {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let started = Instant::now();
    socket
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(GRACE * 2, socket.read_to_end(&mut response))
        .await
        .expect("the end of file within twice the grace")
        .unwrap_or_else(|e| panic!("{e} after {} bytes: not the end of file", response.len()));
    (response, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_reader_gets_eof_not_reset() {
    let server = start(server(peer_first_long_grace())).await;
    let port = server.addr.port();
    // A Content-Length response and a close-delimited one.
    for (path, body_len) in [("/", HELLO.len()), ("/stream/100000", 100_000)] {
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let (response, took) = http10_read_to_eof(port, path).await;
            let head_end = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a response head")
                + 4;
            assert!(response.starts_with(b"HTTP/1."), "{response:?}");
            assert_eq!(response.len() - head_end, body_len, "the whole body");
            slowest = slowest.max(took);
        }
        eprintln!("GET {path} HTTP/1.0: end of file at most {slowest:?} after the request");
        assert!(
            slowest < AT_ONCE,
            "end of file after {slowest:?}: the server waited, not {AT_ONCE:?}"
        );
    }
    let report = server.shutdown().await;
    assert_eq!(report.close_delimited, 20, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nc_http10_gets_the_whole_response_then_eof_at_once() {
    if !farewell_lab::support::tools::require(
        "nc_http10_gets_the_whole_response_then_eof_at_once",
        &["nc"],
    ) {
        return;
    }
    let server = start(server(peer_first_long_grace())).await;
    let port = server.addr.port();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        // No -N: nc sends no FIN at stdin's end, and (no -q) quits at the
        // end of file from the server; -w 10 bounds its wait for it.
        let (out, took) = run_with_stdin(
            "nc",
            &["-w", "10", "127.0.0.1", &port.to_string()],
            b"GET / HTTP/1.0\r\n\r\n",
        )
        .await;
        let response = String::from_utf8(out).unwrap();
        assert!(response.starts_with("HTTP/1."), "{response:?}");
        assert!(response.ends_with(HELLO), "the whole body: {response:?}");
        slowest = slowest.max(took);
    }
    eprintln!("nc: exited at most {slowest:?} after it started");
    assert!(
        slowest < AT_ONCE,
        "nc ran {slowest:?}: it waited for the server's close"
    );
    let report = server.shutdown().await;
    assert_eq!(report.close_delimited, 5, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http11_connection_close_is_left_to_the_policy_and_not_reset() {
    if !farewell_lab::support::tools::require(
        "curl_http11_connection_close_is_left_to_the_policy_and_not_reset",
        &["curl"],
    ) {
        return;
    }
    let server = start(server(peer_first_long_grace())).await;
    let port = server.addr.port();
    let url = server.url("/bytes/100000");
    for _ in 0..3 {
        let out = run("curl", &["-sS", "--fail", "-H", "Connection: close", &url]).await;
        assert_pattern(&out.stdout, 100_000);
    }
    let outcomes = std::sync::Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    // curl stops at Content-Length and closes first: the policy's passive close.
    assert_eq!(report.close_delimited, 0, "{report}");
    assert_eq!(count(&outcomes, Ending::PeerClosed), 3, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}
