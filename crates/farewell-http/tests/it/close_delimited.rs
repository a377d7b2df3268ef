//! Close-delimited responses: `GET /stream/N` (a body of unknown length) to
//! HTTP/1.0 clients, curl `--http1.0` and Python's `http.client`. The body
//! ends only where the server closes, so the server must send its FIN; the
//! client must get the whole body at once (not after the grace, not cut by a
//! reset) and the server must keep no TIME-WAIT (the kernel's socket table).
//! A known length to an HTTP/1.0 client without keep-alive ends the same way
//! (`read_to_close.rs` has more clients of that kind).

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use farewell::{Ending, Policy};

const N: usize = 300_000;

/// Long enough that a client left waiting for it is obvious.
const GRACE: Duration = Duration::from_secs(5);

/// Well under [`GRACE`]: a client done by then did not wait for it.
const WELL_BEFORE_THE_GRACE: Duration = Duration::from_secs(4);

fn peer_first_long_grace() -> Policy {
    peer_first_with_grace(GRACE)
}

/// GET `path` over HTTP/1.0 with `http.client`; checks the pattern; prints
/// `ok STATUS LEN`.
const GET_HTTP10: &str = r#"
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
http.client.HTTPConnection._http_vsn = 10
http.client.HTTPConnection._http_vsn_str = "HTTP/1.0"
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
conn.request("GET", path)
resp = conn.getresponse()
assert resp.getheader("Content-Length") is None and resp.getheader("Transfer-Encoding") is None
body = resp.read()
assert len(body) == n, (len(body), n)
expected = bytes(97 + i % 26 for i in range(26)) * (n // 26 + 1)
assert body == expected[:n], "body differs from the pattern"
conn.close()
print("ok", resp.status, len(body))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_close_delimited_body_reaches_curl_http10_at_once() {
    if !farewell_lab::support::tools::require(
        "peer_first_close_delimited_body_reaches_curl_http10_at_once",
        &["curl"],
    ) {
        return;
    }
    let server = start(server(peer_first_long_grace())).await;
    let port = server.addr.port();
    let url = server.url(&format!("/stream/{N}"));
    for _ in 0..3 {
        let started = Instant::now();
        let out = run("curl", &["-sS", "--fail", "--http1.0", &url]).await;
        let took = started.elapsed();
        assert_pattern(&out.stdout, N);
        assert!(
            took < WELL_BEFORE_THE_GRACE,
            "curl waited {took:?}: for the server's FIN, not the {GRACE:?} grace"
        );
    }
    let report = server.shutdown().await;
    assert_eq!(report.close_delimited, 3, "{report}");
    assert_eq!(report.close_delimited_undelivered, 0, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_close_delimited_body_reaches_python_http10_at_once() {
    if !farewell_lab::support::tools::require(
        "peer_first_close_delimited_body_reaches_python_http10_at_once",
        &["python3"],
    ) {
        return;
    }
    let server = start(server(peer_first_long_grace())).await;
    let port = server.addr.port();
    for _ in 0..3 {
        let started = Instant::now();
        let out = run(
            "python3",
            &[
                "-c",
                GET_HTTP10,
                &port.to_string(),
                &format!("/stream/{N}"),
                &N.to_string(),
            ],
        )
        .await;
        let took = started.elapsed();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("ok 200 {N}")
        );
        assert!(
            took < WELL_BEFORE_THE_GRACE,
            "python waited {took:?}: for the server's FIN, not the {GRACE:?} grace"
        );
    }
    let report = server.shutdown().await;
    assert_eq!(report.close_delimited, 3, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_known_length_http10_still_gets_our_fin_at_once() {
    if !farewell_lab::support::tools::require(
        "peer_first_known_length_http10_still_gets_our_fin_at_once",
        &["curl"],
    ) {
        return;
    }
    let server = start(server(peer_first_long_grace())).await;
    let port = server.addr.port();
    let url = server.url(&format!("/bytes/{N}"));
    let started = Instant::now();
    let out = run("curl", &["-sS", "--fail", "--http1.0", &url]).await;
    let took = started.elapsed();
    assert_pattern(&out.stdout, N);
    assert!(
        took < WELL_BEFORE_THE_GRACE,
        "curl waited {took:?}: for the server's FIN, not the {GRACE:?} grace"
    );
    let report = server.shutdown().await;
    // Not close-delimited (Content-Length), but an HTTP/1.0 request without
    // keep-alive: its client is owed the server's FIN all the same, unless
    // it closes by itself first, as curl does once it has Content-Length
    // bytes (then the policy ends it: a passive close).
    assert_eq!(
        report.close_delimited + report.teardowns.count(Ending::PeerClosed),
        1,
        "{report}"
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
}
