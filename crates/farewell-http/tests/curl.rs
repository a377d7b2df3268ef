//! curl against farewell-http: `Connection: close`, keep-alive reuse, h2 with
//! prior knowledge, the max-requests limit. Each test checks every body byte,
//! then the kernel's socket table on the server's port. The plain-policy and
//! plain-hyper tests show the same churn does leave server TIME-WAIT, so the
//! census checks can fail.

mod common;

use common::*;
use farewell::{Path, Policy, TcpState};

const N: usize = 100_000;

/// `curl -H 'Connection: close'` fetching /bytes/N three times: three connections.
async fn curl_close_three(url: &str) -> Vec<u8> {
    let out = run(
        "curl",
        &["-sS", "--fail", "-H", "Connection: close", url, url, url],
    )
    .await;
    out.stdout
}

fn assert_three_bodies(stdout: &[u8]) {
    assert_eq!(stdout.len(), 3 * N, "three whole bodies");
    for body in stdout.chunks(N) {
        assert_pattern(body, N);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_curl_connection_close_leaves_no_server_time_wait() {
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let url = server.url(&format!("/bytes/{N}"));
    assert_three_bodies(&curl_close_three(&url).await);

    let outcomes = std::sync::Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(report.connections, 3);
    assert_eq!(
        count(&outcomes, Path::PeerClosed),
        3,
        "curl closed each one first: {report}"
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_policy_curl_connection_close_leaves_server_time_wait() {
    let server = start(server(Policy::Plain(Default::default()))).await;
    let port = server.addr.port();
    let url = server.url(&format!("/bytes/{N}"));
    assert_three_bodies(&curl_close_three(&url).await);
    server.shutdown().await;
    // curl closes as soon as it has read a `Connection: close` response, so its
    // FIN can beat the server's close for some connections (then curl keeps the
    // entry); `python.rs` has the deterministic version with a lazy client.
    let counts = settled_server_sockets(port).await;
    assert!(counts.get(TcpState::TimeWait) >= 1, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_hyper_curl_connection_close_leaves_server_time_wait() {
    let (addr, stop, done) = start_baseline().await;
    let url = format!("http://{addr}/bytes/{N}");
    assert_three_bodies(&curl_close_three(&url).await);
    let _ = stop.send(());
    done.await.unwrap();
    // hyper shuts down right after the flush; curl's FIN may still win for some.
    let counts = settled_server_sockets(addr.port()).await;
    assert!(counts.get(TcpState::TimeWait) >= 1, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_first_curl_keep_alive_reuses_one_connection() {
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
    assert_eq!(count(&outcomes, Path::PeerClosed), 2, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}
