//! curl against farewell-http: `Connection: close`, keep-alive reuse, h2 with
//! prior knowledge, the max-requests limit. Each test checks every body byte,
//! then the kernel's socket table on the server's port. The plain-policy and
//! plain-hyper tests show the same churn does leave server TIME-WAIT, so the
//! census checks can fail (there curl reads until the server's FIN, so the
//! server's close is first for certain).

use crate::common;

use common::*;
use farewell::{Ending, Policy, TcpState};

const N: usize = 100_000;

/// `curl -H 'Connection: close'` fetching /bytes/N three times: three connections.
/// curl closes each as soon as it has read `Content-Length` bytes.
async fn curl_close_three(url: &str) -> Vec<u8> {
    curl_three(&["-H", "Connection: close"], url).await
}

/// As [`curl_close_three`], but curl ignores `Content-Length` and reads each
/// body until the server closes: the server's FIN is first for certain, so
/// with plain the server keeps every TIME-WAIT entry (farewell::facts F1). Without
/// it curl's FIN wins the race now and then (measured: one connection of three
/// in half of ten `cargo test -p farewell-http` runs), and under load it could
/// win all three.
async fn curl_close_three_until_server_fin(url: &str) -> Vec<u8> {
    curl_three(&["-H", "Connection: close", "--ignore-content-length"], url).await
}

async fn curl_three(options: &[&str], url: &str) -> Vec<u8> {
    let mut args = vec!["-sS", "--fail"];
    args.extend_from_slice(options);
    args.extend([url, url, url]);
    run("curl", &args).await.stdout
}

fn assert_three_bodies(stdout: &[u8]) {
    assert_eq!(stdout.len(), 3 * N, "three whole bodies");
    for body in stdout.chunks(N) {
        assert_pattern(body, N);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_curl_connection_close_leaves_no_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "peer_first_curl_connection_close_leaves_no_server_time_wait",
        &["curl"],
    ) {
        return;
    }
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let url = server.url(&format!("/bytes/{N}"));
    assert_three_bodies(&curl_close_three(&url).await);

    let outcomes = std::sync::Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(report.connections, 3);
    assert_eq!(
        count(&outcomes, Ending::PeerClosed),
        3,
        "curl closed each one first: {report}"
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_policy_curl_connection_close_leaves_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "plain_policy_curl_connection_close_leaves_server_time_wait",
        &["curl"],
    ) {
        return;
    }
    let server = start(server(Policy::Plain(Default::default()))).await;
    let port = server.addr.port();
    let url = server.url(&format!("/bytes/{N}"));
    assert_three_bodies(&curl_close_three_until_server_fin(&url).await);
    let outcomes = std::sync::Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(count(&outcomes, Ending::PlainClose), 3, "{report}");
    let counts = settled_server_sockets(port).await;
    assert_eq!(counts.get(TcpState::TimeWait), 3, "{counts:?}");
    assert_eq!(counts.total(), 3, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_hyper_curl_connection_close_leaves_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "plain_hyper_curl_connection_close_leaves_server_time_wait",
        &["curl"],
    ) {
        return;
    }
    let (addr, stop, done) = start_baseline().await;
    let url = format!("http://{addr}/bytes/{N}");
    assert_three_bodies(&curl_close_three_until_server_fin(&url).await);
    let _ = stop.send(());
    done.await.unwrap();
    // hyper shuts down (FIN) right after the flush, and curl waits for it.
    let counts = settled_server_sockets(addr.port()).await;
    assert_eq!(counts.get(TcpState::TimeWait), 3, "{counts:?}");
    assert_eq!(counts.total(), 3, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_curl_keep_alive_reuses_one_connection() {
    if !farewell_lab::support::tools::require(
        "peer_first_curl_keep_alive_reuses_one_connection",
        &["curl"],
    ) {
        return;
    }
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let url = server.url(&format!("/bytes/{N}"));
    let out = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects} %{size_download}\n",
            &url,
            &url,
            &url,
        ],
    )
    .await;
    let lines = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        lines,
        format!("1 {N}\n0 {N}\n0 {N}\n"),
        "one connection, reused"
    );
    let report = server.shutdown().await;
    assert_eq!(report.connections, 1);
    assert_eq!(report.requests, 3);
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_curl_http2_prior_knowledge() {
    if !farewell_lab::support::tools::require("peer_first_curl_http2_prior_knowledge", &["curl"]) {
        return;
    }
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let url = server.url(&format!("/bytes/{N}"));
    let version = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            &url,
        ],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&version.stdout), "2");
    // One URL per curl: curl 7.88 fails to reuse a prior-knowledge h2
    // connection (curl/curl#10634, fixed in 7.89); the hyper client test
    // covers several streams on one h2 connection.
    let body = run("curl", &["-sS", "--fail", "--http2-prior-knowledge", &url]).await;
    assert_pattern(&body.stdout, N);
    server.shutdown().await;
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_max_requests_closes_after_the_limit_without_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "peer_first_max_requests_closes_after_the_limit_without_server_time_wait",
        &["curl"],
    ) {
        return;
    }
    let server = start(server(peer_first()).max_requests_per_connection(Some(2))).await;
    let port = server.addr.port();
    let url = server.url("/");
    let out = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects}\n",
            &url,
            &url,
            &url,
        ],
    )
    .await;
    // The second response said `Connection: close`: curl opened a new connection for the third.
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "1\n0\n1\n");
    let outcomes = std::sync::Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(report.connections, 2);
    assert_eq!(count(&outcomes, Ending::PeerClosed), 2, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}
