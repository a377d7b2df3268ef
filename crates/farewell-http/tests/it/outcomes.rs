//! What farewell-http says about each connection's end
//! (`Server::on_connection`, `ServeReport::causes`): the HTTP cause, the
//! request count, and whether the last response was delivered — checked
//! against what real clients (curl, Python) did.

use crate::common;

use std::time::Duration;

use common::*;
use farewell::{Delivery, Ending};
use farewell_http::{Cause, ConnectionOutcome};

/// Where the server records every connection's end.
fn recorder(server: &Running) -> std::sync::Arc<std::sync::Mutex<Vec<ConnectionOutcome>>> {
    std::sync::Arc::clone(&server.connections)
}

fn by_cause(ends: &[ConnectionOutcome], cause: Cause) -> Vec<&ConnectionOutcome> {
    ends.iter().filter(|e| e.cause == cause).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_outcome_names_client_asked_request_limit_and_client_closed() {
    if !farewell_lab::support::tools::require(
        "connection_outcome_names_client_asked_request_limit_and_client_closed",
        &["curl"],
    ) {
        return;
    }
    let server = start(server(peer_first()).max_requests_per_connection(Some(2))).await;
    let port = server.addr.port();
    let url = server.url("/bytes/1000");
    // One connection, `Connection: close`: the client asked.
    run("curl", &["-sS", "--fail", "-H", "Connection: close", &url]).await;
    // One connection, two requests: the second reaches the limit.
    run("curl", &["-sS", "--fail", &url, &url]).await;
    // One connection, one keep-alive request: curl closes it.
    run("curl", &["-sS", "--fail", &url]).await;
    // HTTP/1.0, a streamed body: the client asked, and the body is close-delimited.
    let stream = server.url("/stream/1000");
    run("curl", &["-sS", "--fail", "--http1.0", &stream]).await;
    let recorded = recorder(&server);
    let report = server.shutdown().await;
    let ends = recorded.lock().unwrap().clone();
    assert_eq!(ends.len(), 4, "{ends:#?}");

    let asked = by_cause(&ends, Cause::ClientAsked);
    assert_eq!(asked.len(), 2, "{ends:#?}");
    for end in &asked {
        assert_eq!(end.requests, 1);
        assert_eq!(end.last_response, Delivery::Confirmed, "{end}");
    }
    let delimited: Vec<_> = asked.iter().filter(|e| e.close_delimited).collect();
    assert_eq!(delimited.len(), 1, "{ends:#?}");
    assert!(delimited[0].outcome.is_none());
    let closed = asked.iter().find(|e| !e.close_delimited).unwrap();
    let outcome = closed.outcome.as_ref().expect("a teardown outcome");
    assert_eq!(outcome.ending, Ending::PeerClosed, "{closed}");

    let limit = by_cause(&ends, Cause::RequestLimit);
    assert_eq!(limit.len(), 1, "{ends:#?}");
    assert_eq!(limit[0].requests, 2);
    assert_eq!(limit[0].last_response, Delivery::Confirmed, "{}", limit[0]);

    let client_closed = by_cause(&ends, Cause::ClientClosed);
    assert_eq!(client_closed.len(), 1, "{ends:#?}");
    assert_eq!(client_closed[0].requests, 1);
    // The last response went out before curl closed; it was ACKed.
    assert_eq!(client_closed[0].last_response, Delivery::Confirmed);

    assert_eq!(
        report.causes,
        vec![
            (Cause::ClientClosed, 1),
            (Cause::ClientAsked, 2),
            (Cause::RequestLimit, 1)
        ],
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains("ended by: client-closed 1, client-asked 2, request-limit 1"),
        "{report}"
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// Opens a keep-alive connection, makes one request, then holds the
/// connection open (reading) until the server ends it; prints `ok`.
const KEEP_ALIVE: &str = r#"
import socket, sys
port = int(sys.argv[1])
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
while b"hello from farewell-http\n" not in data:
    data += sock.recv(65536)
print("ready", flush=True)
try:
    while sock.recv(65536):
        pass
except ConnectionResetError:
    pass
sock.close()
print("ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_outcome_names_idle_and_shutdown() {
    if !farewell_lab::support::tools::require(
        "connection_outcome_names_idle_and_shutdown",
        &["python3"],
    ) {
        return;
    }
    // Idle: a 300 ms keep-alive timeout ends the held connection.
    let idle = start(server(peer_first()).idle_timeout(Duration::from_millis(300))).await;
    let port = idle.addr.port();
    let out = run("python3", &["-c", KEEP_ALIVE, &port.to_string()]).await;
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("ok\n"));
    let recorded = recorder(&idle);
    let report = idle.shutdown().await;
    let ends = recorded.lock().unwrap().clone();
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0].cause, Cause::Idle, "{}", ends[0]);
    assert_eq!(ends[0].requests, 1);
    assert_eq!(ends[0].last_response, Delivery::NoneSent);
    assert_eq!(report.causes, vec![(Cause::Idle, 1)], "{report}");

    // Shutdown: the server stops while the connection is held.
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let client = tokio::process::Command::new("python3")
        .args(["-c", KEEP_ALIVE, &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(client.stdout.unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await
    .expect("the client is served within 10s")
    .unwrap();
    assert_eq!(line, "ready\n");
    let recorded = recorder(&server);
    let report = server.shutdown().await;
    let ends = recorded.lock().unwrap().clone();
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0].cause, Cause::Shutdown, "{}", ends[0]);
    assert_eq!(ends[0].last_response, Delivery::NoneSent);
    assert_eq!(report.causes, vec![(Cause::Shutdown, 1)], "{report}");
}
