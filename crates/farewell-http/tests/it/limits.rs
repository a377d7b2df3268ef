//! The connection limit: a connection accepted beyond `Server::max_connections`
//! is reset at once (no task, no server TIME-WAIT), the connections already
//! served go on, and a new client is served as soon as a slot frees.

use std::time::{Duration, Instant};

use farewell_lab::support::tools::require;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::common::*;

/// What a client reads within `bound` on a connection the server shed: the
/// read's result, or `None` when nothing came (the connection is open).
async fn read_within(stream: &mut TcpStream, bound: Duration) -> Option<std::io::Result<usize>> {
    let mut buf = [0u8; 64];
    tokio::time::timeout(bound, stream.read(&mut buf))
        .await
        .ok()
}

/// Runs curl once (bounded by its --max-time); returns its exit code and stderr.
async fn curl_once(url: &str) -> (Option<i32>, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", url])
        .kill_on_drop(true)
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_connections_is_reset_at_accept_and_the_probe_is_served_when_a_slot_frees() {
    if !require(
        "over_max_connections_is_reset_at_accept_and_the_probe_is_served_when_a_slot_frees",
        &["curl"],
    ) {
        return;
    }
    let running = start(
        server(peer_first())
            .idle_timeout(Duration::from_secs(30))
            .max_connections(3),
    )
    .await;
    let port = running.addr.port();

    // Three idle clients take every slot; each is served (not reset).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(running.addr).await.unwrap());
    }
    // The fourth, and a fifth: reset at accept, not left waiting.
    for n in 4..=5 {
        // The RST can beat the end of connect() itself.
        let mut surplus = match TcpStream::connect(running.addr).await {
            Ok(stream) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(e) => panic!("connect: {e}"),
        };
        match read_within(&mut surplus, Duration::from_secs(10)).await {
            Some(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
            Some(Ok(0)) => {}
            other => panic!("client {n} over the limit read {other:?}, not a reset"),
        }
    }
    for (i, stream) in held.iter_mut().enumerate() {
        assert!(
            read_within(stream, Duration::from_millis(200))
                .await
                .is_none(),
            "held client {i} was ended"
        );
    }

    // A real client over the limit: a fast answer (a reset), not curl's timeout (28).
    let (code, stderr) = curl_once(&running.url("/")).await;
    assert!(
        matches!(code, Some(code) if code != 0 && code != 28),
        "curl while full: exit {code:?}: {stderr}"
    );

    // One slot frees: the probe is served (bounded retries while the
    // server notices the client's FIN).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, stderr) = curl_once(&running.url("/")).await;
        if code == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the probe was not served within 10 s of a slot freeing: {stderr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    drop(held);
    let report = running.shutdown().await;
    assert!(report.shed >= 3, "{report:?}");
    assert_eq!(report.accept_errors, 0, "{report:?}");
    assert!(
        report
            .to_string()
            .contains(&format!("{} shed", report.shed)),
        "{report}"
    );
    // Shed connections were reset, served ones ended peer-first: no TIME-WAIT here.
    assert_no_server_time_wait_nor_leftovers(port).await;
}
