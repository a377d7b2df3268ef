//! TLS clients we did not write against farewell-http serving TLS
//! (`Server::tls`): curl (HTTP/1.1 and h2), `openssl s_client`, and Python's
//! `ssl` (a client that sends close_notify, one that does not, one that
//! reads only after the server gave up on it, one that stalls the
//! handshake). Each checks every body byte, that the client read the
//! server's close_notify before the connection ended, and then the kernel's
//! socket table on the server's port: no TIME-WAIT, nothing left over.

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
