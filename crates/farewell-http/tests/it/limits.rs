//! The connection limit: a connection accepted beyond `Server::max_connections`
//! is sent a `503` and reset at once (no task, no server TIME-WAIT), the
//! connections already served go on, and a new client is served as soon as a
//! slot frees.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use farewell_lab::support::tools::require;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::common::*;

/// What a client reads within `bound`: the bytes until the connection ended,
/// and how it ended; `None` when it did not end (the connection is open).
async fn read_within(
    stream: &mut TcpStream,
    bound: Duration,
) -> Option<(Vec<u8>, std::io::Result<usize>)> {
    let mut got = Vec::new();
    let ended = tokio::time::timeout(bound, stream.read_to_end(&mut got))
        .await
        .ok()?;
    Some((got, ended))
}

/// Runs curl once (bounded by its --max-time); returns its exit code and
/// what it printed: the HTTP status, then its error if any.
async fn curl_once(url: &str) -> (Option<i32>, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--max-time", "10", url])
        .kill_on_drop(true)
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_connections_gets_503_and_reset_at_accept_and_the_probe_is_served_when_a_slot_frees(
) {
    if !require(
        "over_max_connections_gets_503_and_reset_at_accept_and_the_probe_is_served_when_a_slot_frees",
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
    // The fourth, and a fifth: a 503, then a reset, at once; not left waiting.
    for n in 4..=5 {
        // The RST can beat the end of connect() itself.
        let mut surplus = match TcpStream::connect(running.addr).await {
            Ok(stream) => stream,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => continue,
            Err(e) => panic!("connect: {e}"),
        };
        match read_within(&mut surplus, Duration::from_secs(10)).await {
            Some((got, Err(e))) if e.kind() == ErrorKind::ConnectionReset => assert!(
                got.starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"),
                "client {n}: {:?}",
                String::from_utf8_lossy(&got)
            ),
            other => panic!("client {n} over the limit read {other:?}, not a 503 and a reset"),
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

    // A real client over the limit: a fast answer, the 503 (or a reset when
    // it came before curl's connect() returned), not curl's timeout (28).
    let (code, printed) = curl_once(&running.url("/")).await;
    assert!(
        (code == Some(0) && printed == "503") || matches!(code, Some(c) if c != 0 && c != 28),
        "curl while full: exit {code:?}: {printed}"
    );

    // One slot frees: the probe is served (bounded retries while the
    // server notices the client's FIN).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, printed) = curl_once(&running.url("/")).await;
        if code == Some(0) && printed == "200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the probe was not served within 10 s of a slot freeing: {printed}"
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
