//! Malformed requests get 400, not 413 or a normal answer: a chunked upload
//! with a bad chunk size or LF-only chunk lines, a body cut short by the
//! client's FIN, and an HTTP/1.1 request without `Host` (RFC 9112 §3.2). Each
//! is sent raw by a Python socket, which prints the status line it got.

use crate::common;

use common::*;

/// Sends `sys.argv[2]` (with `\r` and `\n` escapes) raw, half-closes, prints
/// the first line of the answer.
const RAW: &str = r#"
import socket, sys
port, raw = int(sys.argv[1]), sys.argv[2].encode().decode("unicode_escape").encode("latin-1")
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.sendall(raw)
sock.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
sock.close()
print(data.split(b"\r\n")[0].decode())
"#;

async fn status_line(port: u16, raw: &str) -> String {
    let out = run("python3", &["-c", RAW, &port.to_string(), raw]).await;
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upload_bodies_get_400_not_413() {
    if !farewell_lab::support::tools::require(
        "malformed_upload_bodies_get_400_not_413",
        &["python3"],
    ) {
        return;
    }
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    let chunked = r"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (what, body) in [
        ("a bad chunk size", r"zz\r\nabc\r\n0\r\n\r\n"),
        ("LF-only chunk lines", r"3\nabc\n0\n\n"),
    ] {
        assert_eq!(
            status_line(port, &format!("{chunked}{body}")).await,
            "HTTP/1.1 400 Bad Request",
            "{what}"
        );
    }
    assert_eq!(
        status_line(
            port,
            r"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"
        )
        .await,
        "HTTP/1.1 400 Bad Request",
        "a body cut short by the client's FIN"
    );
    // Still 413 for a body over the limit, and 200 for a good one.
    assert_eq!(
        status_line(
            port,
            r"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc"
        )
        .await,
        "HTTP/1.1 413 Payload Too Large"
    );
    assert_eq!(
        status_line(port, &format!("{chunked}3\\r\\nabc\\r\\n0\\r\\n\\r\\n")).await,
        "HTTP/1.1 200 OK"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_without_host_two_hosts_or_chunked_twice() {
    if !farewell_lab::support::tools::require(
        "malformed_requests_get_400_without_host_two_hosts_or_chunked_twice",
        &["python3"],
    ) {
        return;
    }
    let server = start(server(peer_first())).await;
    let port = server.addr.port();
    assert_eq!(
        status_line(port, r"GET / HTTP/1.1\r\n\r\n").await,
        "HTTP/1.1 400 Bad Request"
    );
    // HTTP/1.0 may leave Host out.
    assert_eq!(
        status_line(port, r"GET / HTTP/1.0\r\n\r\n").await,
        "HTTP/1.0 200 OK"
    );
    // Two Host fields, whatever the version (RFC 9112 §3.2).
    assert_eq!(
        status_line(port, r"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await,
        "HTTP/1.1 400 Bad Request"
    );
    // chunked applied twice (RFC 9112 §6.1).
    assert_eq!(
        status_line(
            port,
            r"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        .await,
        "HTTP/1.1 400 Bad Request"
    );
    let recorded = std::sync::Arc::clone(&server.connections);
    server.shutdown().await;
    let causes: Vec<_> = recorded.lock().unwrap().iter().map(|c| c.cause).collect();
    assert!(causes.contains(&farewell_http::Cause::Error), "{causes:?}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}
