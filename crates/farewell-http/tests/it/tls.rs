//! TLS clients we did not write against farewell-http serving TLS
//! (`Server::tls`): curl (HTTP/1.1 and h2), `openssl s_client`, and Python's
//! `ssl` (a client that sends close_notify, one that does not, one that
//! reads only after the server gave up on it, one that never reads, one that
//! stalls the handshake); the idle timeout and the request limit over TLS;
//! plain hyper on tokio-rustls for contrast. Each checks every body byte,
//! that a client that reads got the server's close_notify before the
//! connection ended, and then the kernel's socket table on the server's
//! port: no TIME-WAIT, nothing left over.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use farewell::Ending;
use farewell_http::Server;
use farewell_lab::support::tls::SelfSigned;

const N: usize = 100_000;

/// A self-signed certificate for the test, its PEM file for the clients.
struct Cert {
    made: SelfSigned,
    dir: PathBuf,
    file: PathBuf,
}

impl Cert {
    fn new(test: &str) -> Cert {
        let made = SelfSigned::localhost();
        let dir = std::env::temp_dir().join(format!("farewell-http-{test}-{}", std::process::id()));
        let (file, _) = made.write_pem(&dir).unwrap();
        Cert { made, dir, file }
    }

    fn path(&self) -> &str {
        self.file.to_str().unwrap()
    }

    fn server(&self, server: Server) -> Server {
        server.tls(Arc::new(self.made.server_config()))
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `program` with `stdin` as its input (bounded), returning its output
/// whatever its exit status.
async fn run_with_stdin(program: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} ran past 30s"))
        .unwrap()
}

fn assert_bodies(stdout: &[u8], count: usize) {
    assert_eq!(stdout.len(), count * N, "{count} whole bodies");
    for body in stdout.chunks(N) {
        assert_pattern(body, N);
    }
}

/// The endings the server's outcomes took, for failure messages.
fn endings(server: &Running) -> Vec<String> {
    server
        .outcomes
        .lock()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_curl_http1_connection_close_bodies_whole_no_server_time_wait() {
    let test = "tls_curl_http1_connection_close_bodies_whole_no_server_time_wait";
    if !farewell_lab::support::tools::require(test, &["curl"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(cert.server(server(peer_first()))).await;
    let port = server.addr.port();
    let url = format!("https://localhost:{port}/bytes/{N}");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let out = run(
        "curl",
        &[
            "-sS",
            "-v",
            "--fail",
            "--http1.1",
            "--cacert",
            cert.path(),
            "--resolve",
            &resolve,
            "-H",
            "Connection: close",
            &url,
            &url,
            &url,
        ],
    )
    .await;
    assert_bodies(&out.stdout, 3);
    // curl reads the server's close_notify only if it has arrived when curl
    // closes (one non-blocking read), so this is shown, not asserted; the
    // s_client and Python tests assert it.
    let trace = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "curl read the server's close_notify on {} of 3 connections",
        trace.matches("(IN), TLS alert, close notify").count()
    );
    let seen = endings(&server);
    let outcomes = Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(report.connections, 3, "{report}");
    assert_eq!(report.tls_handshakes_failed, 0, "{report}");
    let we_reset = outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.we_reset())
        .count();
    assert_eq!(we_reset, 0, "curl closed each one: {seen:?}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_curl_http2_alpn_three_requests_one_connection_no_server_time_wait() {
    let test = "tls_curl_http2_alpn_three_requests_one_connection_no_server_time_wait";
    if !farewell_lab::support::tools::require(test, &["curl"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(cert.server(server(peer_first()))).await;
    let port = server.addr.port();
    let url = format!("https://localhost:{port}/bytes/{N}");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let out = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--http2",
            "--cacert",
            cert.path(),
            "--resolve",
            &resolve,
            "-w",
            "%{stderr}%{http_version}\n",
            &url,
            &url,
            &url,
        ],
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "2\n2\n2\n",
        "h2 negotiated by ALPN"
    );
    assert_bodies(&out.stdout, 3);
    let report = server.shutdown().await;
    assert_eq!(report.connections, 1, "one h2 connection: {report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// `openssl s_client` sends one `Connection: close` request and reads until
/// the connection ends (`-ign_eof`); `-msg` prints every TLS message, the
/// server's close_notify alert among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_openssl_s_client_reads_close_notify_and_closes_first() {
    let test = "tls_openssl_s_client_reads_close_notify_and_closes_first";
    if !farewell_lab::support::tools::require(test, &["openssl"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(cert.server(server(peer_first()))).await;
    let port = server.addr.port();
    let connect = format!("127.0.0.1:{port}");
    let trace = cert.dir.join("trace.txt").to_str().unwrap().to_string();
    let request =
        format!("GET /bytes/{N} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let out = run_with_stdin(
        "openssl",
        &[
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-CAfile",
            cert.path(),
            "-verify_return_error",
            "-quiet",
            "-trace",
            "-msgfile",
            &trace,
        ],
        request.as_bytes(),
    )
    .await;
    assert!(
        out.status.success(),
        "s_client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = response_body(&out.stdout);
    assert_pattern(body, N);
    // The trace, record by record: the first close_notify is the server's,
    // received; s_client answers with its own.
    let trace = std::fs::read_to_string(&trace).unwrap();
    let mut record = "";
    let mut alerts = Vec::new();
    for line in trace.lines() {
        if line == "Received Record" || line == "Sent Record" {
            record = line;
        } else if line.contains("description=close notify(0)") {
            alerts.push(record);
        }
    }
    assert_eq!(
        alerts,
        ["Received Record", "Sent Record"],
        "the server's close_notify, then s_client's:\n{trace}"
    );
    let outcomes = Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(count(&outcomes, Ending::PeerClosed), 1, "{report}");
    assert_eq!(report.peer_close_notify, 1, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// What follows the head of one HTTP/1.1 response.
fn response_body(response: &[u8]) -> &[u8] {
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    assert!(
        response.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&response[..head_end])
    );
    &response[head_end + 4..]
}

/// A Python `ssl` client: GET `/bytes/N` with `Connection: close`, then read
/// until the connection ends, and say how it ended: `close_notify` (the
/// server's alert read; `suppress_ragged_eofs=False` makes a TCP EOF
/// without it an `SSLEOFError`, printed as `eof-without-close-notify`) or
/// `reset`. `mode`:
///
/// * `close-notify`: then `unwrap()`: its own close_notify, then close;
/// * `no-close-notify`: then `close()` (Python sends no close_notify);
/// * `fin-then-close`: then waits for the server's TCP FIN, and `close()`;
/// * `keep-alive`: no `Connection: close`; reads on after the response until
///   the server ends the idle connection, then `close()`;
/// * `late-reader`: reads nothing for `wait` seconds (the server's grace
///   passes meanwhile), then reads what its kernel kept, and closes;
/// * `never-read`: reads nothing for `wait` seconds, then closes;
/// * `stall`: sends 3 bytes of a TLS record header and nothing more, then
///   waits (bounded) for the server to end the connection.
///
/// Prints `ok LEN HOW` (`stall: HOW`).
const TLS_CLIENT: &str = r#"
import socket, ssl, sys, time
port, cafile, n, mode, wait = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
raw = socket.create_connection(("127.0.0.1", port), timeout=20)
if mode == "stall":
    raw.sendall(b"\x16\x03\x01")
    try:
        got = raw.recv(1)
        print("stall:", "eof" if got == b"" else "data")
    except ConnectionResetError:
        print("stall: reset")
    sys.exit(0)
ctx = ssl.create_default_context(cafile=cafile)
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
close = "" if mode == "keep-alive" else "Connection: close\r\n"
s.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: localhost\r\n{close}\r\n".encode())
if mode == "late-reader":
    time.sleep(wait)
if mode == "never-read":
    time.sleep(wait)
    s.close()
    print("never-read")
    sys.exit(0)
data = bytearray()
how = None
while how is None:
    try:
        chunk = s.recv(65536)
        if chunk:
            data += chunk
        else:
            how = "close_notify"
    except ssl.SSLEOFError:
        how = "eof-without-close-notify"
    except ConnectionResetError:
        how = "reset"
head, _, body = bytes(data).partition(b"\r\n\r\n")
assert head.startswith(b"HTTP/1.1 200 OK"), head
expected = bytes(97 + i % 26 for i in range(26)) * (n // 26 + 1)
assert body == expected[:n], ("body differs from the pattern", len(body), n)
if mode == "close-notify":
    s.unwrap().close()
elif mode == "fin-then-close":
    # Past TLS, on the TCP socket itself: wait for the server's FIN.
    assert socket.socket.recv(s, 1) == b"", "nothing after close_notify but the FIN"
    s.close()
else:
    s.close()
print("ok", len(body), how)
"#;

async fn python_tls(cert: &Cert, port: u16, n: usize, mode: &str, wait: &str) -> String {
    let (port, n) = (port.to_string(), n.to_string());
    let out = run(
        "python3",
        &["-c", TLS_CLIENT, &port, cert.path(), &n, mode, wait],
    )
    .await;
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_python_client_that_sends_close_notify_closes_first() {
    let test = "tls_python_client_that_sends_close_notify_closes_first";
    if !farewell_lab::support::tools::require(test, &["python3"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(cert.server(server(peer_first()))).await;
    let port = server.addr.port();
    let out = python_tls(&cert, port, N, "close-notify", "0").await;
    assert_eq!(out, format!("ok {N} close_notify\n"));
    let outcomes = Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(count(&outcomes, Ending::PeerClosed), 1, "{report}");
    assert_eq!(report.peer_close_notify, 1, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_python_client_without_close_notify_is_reported_so() {
    let test = "tls_python_client_without_close_notify_is_reported_so";
    if !farewell_lab::support::tools::require(test, &["python3"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(cert.server(server(peer_first()))).await;
    let port = server.addr.port();
    let out = python_tls(&cert, port, N, "no-close-notify", "0").await;
    assert_eq!(out, format!("ok {N} close_notify\n"));
    let outcomes = Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(count(&outcomes, Ending::PeerClosed), 1, "{report}");
    assert_eq!(report.peer_close_notify, 0, "{report}");
    let seen = outcomes.lock().unwrap()[0].peer_close_notify;
    assert_eq!(seen, Some(false));
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// A client that reads nothing until well after the server's grace: the
/// server resets once the response and close_notify are ACKed, and the
/// client still reads both whole from its kernel (Linux keeps what was
/// received before an RST readable, farewell::facts F6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_python_late_reader_gets_body_and_close_notify_before_the_reset() {
    let test = "tls_python_late_reader_gets_body_and_close_notify_before_the_reset";
    if !farewell_lab::support::tools::require(test, &["python3"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(cert.server(server(peer_first()))).await;
    let port = server.addr.port();
    let out = python_tls(&cert, port, N, "late-reader", "2.5").await;
    assert_eq!(out, format!("ok {N} close_notify\n"));
    let outcomes = Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(count(&outcomes, Ending::ResetAfterGrace), 1, "{report}");
    let outcome = outcomes.lock().unwrap()[0].clone();
    assert_eq!(outcome.goodbye, farewell::Delivery::Confirmed, "{outcome}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// A client that stalls in the handshake: the server's handshake deadline
/// ends it with the policy (no alert: nothing to answer yet), no FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_python_stalled_handshake_ends_at_the_deadline_without_server_time_wait() {
    let test = "tls_python_stalled_handshake_ends_at_the_deadline_without_server_time_wait";
    if !farewell_lab::support::tools::require(test, &["python3"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(
        cert.server(server(peer_first()))
            .tls_handshake_timeout(Duration::from_millis(500)),
    )
    .await;
    let port = server.addr.port();
    let out = python_tls(&cert, port, 0, "stall", "0").await;
    assert_eq!(
        out, "stall: reset\n",
        "reset after the deadline and the grace"
    );
    let outcomes = Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(report.tls_handshakes_failed, 1, "{report}");
    assert_eq!(count(&outcomes, Ending::ResetAfterGrace), 1, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// A client that is not speaking TLS at all gets rustls's alert, and
/// closes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_plain_http_client_gets_an_alert_and_closes_first() {
    let test = "tls_plain_http_client_gets_an_alert_and_closes_first";
    if !farewell_lab::support::tools::require(test, &["curl"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(cert.server(server(peer_first()))).await;
    let port = server.addr.port();
    let url = format!("http://127.0.0.1:{port}/");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", &url])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!out.status.success(), "curl got no HTTP response");
    let outcomes = Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(report.tls_handshakes_failed, 1, "{report}");
    assert_eq!(count(&outcomes, Ending::PeerClosed), 1, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// A client that never reads a large response (its window closes): the
/// server's shutdown forces the connection once the shutdown timeout
/// passes, and resets it (close_notify cannot be delivered into a zero
/// window): no TIME-WAIT, nothing left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_python_client_that_never_reads_is_reset_at_shutdown() {
    let test = "tls_python_client_that_never_reads_is_reset_at_shutdown";
    if !farewell_lab::support::tools::require(test, &["python3"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(cert.server(server(peer_first()))).await;
    let port = server.addr.port();
    let client = {
        let path = cert.path().to_string();
        tokio::spawn(async move {
            let port = port.to_string();
            run(
                "python3",
                &["-c", TLS_CLIENT, &port, &path, "8000000", "never-read", "8"],
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = Arc::clone(&server.outcomes);
    let report = server.shutdown().await;
    assert_eq!(report.forced, 1, "{report}");
    let outcome = outcomes.lock().unwrap()[0].clone();
    assert!(outcome.we_reset(), "{outcome}");
    assert_no_server_time_wait_nor_leftovers(port).await;
    let out = tokio::time::timeout(Duration::from_secs(30), client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "never-read\n");
}

/// The contrast: plain hyper on tokio-rustls, whose `shutdown()` sends
/// close_notify and then a FIN, and then closes the socket. A client that
/// reads to the close_notify and the FIN and then closes without its own
/// close_notify (Python's `close()`) sends only a FIN: the server keeps one
/// TIME-WAIT per connection. The
/// census in the tests above can fail.
///
/// (With curl, which answers with its own close_notify, the server kept no
/// TIME-WAIT here: curl's alert meets the socket hyper already closed and the
/// kernel resets the connection, golang/go#71172's failure mode; measured on
/// Linux 6.x: three more `TcpOutRsts` for three connections.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_plain_hyper_on_tokio_rustls_leaves_server_time_wait() {
    let test = "tls_plain_hyper_on_tokio_rustls_leaves_server_time_wait";
    if !farewell_lab::support::tools::require(test, &["python3"]) {
        return;
    }
    let cert = Cert::new(test);
    let listener = quiet_listener();
    let port = listener.local_addr().unwrap().port();
    let acceptor =
        farewell::tls::tokio_rustls::TlsAcceptor::from(Arc::new(cert.made.server_config()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(farewell_lab::support::http_baseline::serve_tls(
        listener,
        acceptor,
        hyper::service::service_fn(farewell_lab::support::http_demo::handle),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(3),
    ));
    for _ in 0..3 {
        let out = python_tls(&cert, port, N, "fin-then-close", "0").await;
        assert_eq!(out, format!("ok {N} close_notify\n"));
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), done)
        .await
        .unwrap()
        .unwrap();
    let counts = settled_server_sockets(port).await;
    assert_eq!(
        counts.get(farewell::TcpState::TimeWait),
        3,
        "the server's FIN went first: {counts:?}"
    );
}

/// An idle keep-alive connection over TLS: the server's idle timeout ends it
/// with close_notify (no FIN), then resets it once that is ACKed; the client
/// reads the close_notify before the connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_idle_keep_alive_connection_ends_with_close_notify_and_no_server_time_wait() {
    let test = "tls_idle_keep_alive_connection_ends_with_close_notify_and_no_server_time_wait";
    if !farewell_lab::support::tools::require(test, &["python3"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(
        cert.server(server(peer_first()))
            .idle_timeout(Duration::from_millis(500)),
    )
    .await;
    let port = server.addr.port();
    let out = python_tls(&cert, port, N, "keep-alive", "0").await;
    assert_eq!(out, format!("ok {N} close_notify\n"));
    let report = server.shutdown().await;
    assert_eq!(report.connections, 1, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// The request limit over TLS, with h2: after one request the server sends
/// GOAWAY (inside TLS), then close_notify; curl opens a second connection
/// for the second request. No server TIME-WAIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_request_limit_h2_goaway_then_close_notify_no_server_time_wait() {
    let test = "tls_request_limit_h2_goaway_then_close_notify_no_server_time_wait";
    if !farewell_lab::support::tools::require(test, &["curl"]) {
        return;
    }
    let cert = Cert::new(test);
    let server = start(
        cert.server(server(peer_first()))
            .max_requests_per_connection(Some(1)),
    )
    .await;
    let port = server.addr.port();
    let url = format!("https://localhost:{port}/bytes/{N}");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let out = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--http2",
            "--cacert",
            cert.path(),
            "--resolve",
            &resolve,
            &url,
            &url,
        ],
    )
    .await;
    assert_bodies(&out.stdout, 2);
    let report = server.shutdown().await;
    assert_eq!(report.requests, 2, "{report}");
    assert_eq!(
        report.connections, 2,
        "one request per connection: {report}"
    );
    assert_no_server_time_wait_nor_leftovers(port).await;
}
