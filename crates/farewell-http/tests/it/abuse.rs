//! Abusive clients against farewell-http's bounds: partial request heads
//! (one byte, a request line, a one-byte-at-a-time trickle), a request body
//! that stops, a client that stops reading a large response. Each attacker is
//! a raw socket that we judge by what it received (nothing, then a reset);
//! meanwhile curl or Python's `http.client` keep being answered, a slow but
//! steady reader gets its whole body, and the kernel's socket table on the
//! server's port ends with no TIME-WAIT and nothing left.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use farewell_http::{Cause, Server};

/// How an attacker's connection ended, as its socket saw it.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// `ECONNRESET`: the server reset the connection.
    Reset,
    /// End of file: the server sent a FIN.
    Eof,
    /// Still open when the attacker gave up waiting.
    Open,
}

/// What an attacker saw: the bytes it received and how the connection ended.
#[derive(Debug)]
struct Seen {
    received: usize,
    end: End,
    /// The attacker had written everything it meant to before the end.
    sent_all: bool,
}

/// Connects, writes `first`, then `trickle` one byte every `every`, then waits
/// (reading, bounded by `within`) for the server to end the connection.
fn attack(
    addr: SocketAddr,
    first: &[u8],
    trickle: &[u8],
    every: Duration,
    within: Duration,
) -> Seen {
    let deadline = Instant::now() + within;
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(first).unwrap();
    let mut received = 0;
    let mut sent = 0;
    let mut buf = [0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Seen {
                received,
                end: End::Open,
                sent_all: sent == trickle.len(),
            };
        }
        let wait = if sent < trickle.len() {
            every
        } else {
            deadline - now
        };
        s.set_read_timeout(Some(wait.min(deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                return Seen {
                    received,
                    end: End::Eof,
                    sent_all: sent == trickle.len(),
                }
            }
            Ok(n) => received += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Seen {
                    received,
                    end: End::Reset,
                    sent_all: sent == trickle.len(),
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if sent < trickle.len() {
                    if let Err(e) = s.write_all(&trickle[sent..sent + 1]) {
                        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
                        return Seen {
                            received,
                            end: End::Reset,
                            sent_all: false,
                        };
                    }
                    sent += 1;
                }
            }
            Err(e) => panic!("attacker read: {e}"),
        }
    }
}

/// Runs [`attack`] on a blocking thread.
async fn spawn_attack(
    addr: SocketAddr,
    first: &'static [u8],
    trickle: &'static [u8],
    every: Duration,
    within: Duration,
) -> tokio::task::JoinHandle<Seen> {
    tokio::task::spawn_blocking(move || attack(addr, first, trickle, every, within))
}

/// curl GET `path`; returns the body.
async fn curl_get(url: &str) -> Vec<u8> {
    run("curl", &["-sS", "--fail", "--max-time", "10", url])
        .await
        .stdout
}

/// How many connections ended with `cause`, as farewell-http recorded them.
fn ended_by(server: &Running, cause: Cause) -> usize {
    server
        .connections
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.cause == cause)
        .count()
}

/// Waits (bounded) until `n` connections ended with `cause`.
async fn wait_ended_by(server: &Running, cause: Cause, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ended_by(server, cause) < n {
        assert!(
            Instant::now() < deadline,
            "{} connections ended by {cause} within 20s, want {n}",
            ended_by(server, cause)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn abuse_server() -> Server {
    server(peer_first())
        .idle_timeout(Duration::from_secs(30))
        .header_read_timeout(Some(Duration::from_secs(1)))
        .body_read_timeout(Some(Duration::from_secs(1)))
        .send_timeout(Some(Duration::from_secs(1)))
}

/// A request head that is never finished in time: one byte every 200 ms
/// would complete it after about 8 s, so a header clock that each byte
/// restarted would let it through and the test would see a 200.
const TRICKLE: &[u8] = b"ET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_request_heads_are_cut_after_the_header_read_timeout_while_curl_is_served() {
    if !farewell_lab::support::tools::require(
        "partial_request_heads_are_cut_after_the_header_read_timeout_while_curl_is_served",
        &["curl"],
    ) {
        return;
    }
    let server = start(abuse_server()).await;
    let port = server.addr.port();
    let every = Duration::from_millis(200);
    let within = Duration::from_secs(15);
    let one_byte = spawn_attack(server.addr, b"G", b"", every, within).await;
    let line = spawn_attack(server.addr, b"GET / HTTP/1.1\r\n", b"", every, within).await;
    let trickle = spawn_attack(server.addr, b"G", TRICKLE, every, within).await;
    // An idle keep-alive connection (no byte of a request) is the idle
    // timeout's (30 s here), not the header timeout's: it stays open.
    let idle = TcpStream::connect(server.addr).unwrap();

    // The probe is answered while the attackers hold their connections.
    assert_eq!(
        curl_get(&server.url("/")).await,
        farewell_lab::support::http_demo::HELLO.as_bytes()
    );

    for (name, attacker) in [
        ("G", one_byte),
        ("request line", line),
        ("trickle", trickle),
    ] {
        let seen = attacker.await.unwrap();
        assert_eq!(
            seen.received, 0,
            "{name}: nothing is written to it: {seen:?}"
        );
        assert_eq!(seen.end, End::Reset, "{name}: reset, no FIN: {seen:?}");
        if name == "trickle" {
            assert!(
                !seen.sent_all,
                "{name}: cut before its head was complete: {seen:?}"
            );
        }
    }
    wait_ended_by(&server, Cause::ReadTimeout, 3).await;
    assert_eq!(
        curl_get(&server.url("/")).await,
        farewell_lab::support::http_demo::HELLO.as_bytes(),
        "served after the attack too"
    );
    idle.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let still = (&idle).read(&mut byte);
    assert!(
        matches!(&still, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the idle connection is still open: {still:?}"
    );
    drop(idle);

    let report = server.shutdown().await;
    assert!(report.to_string().contains("read-timeout 3"), "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_cut_after_the_body_read_timeout_but_a_slow_handler_is_not() {
    if !farewell_lab::support::tools::require(
        "a_stalled_request_body_is_cut_after_the_body_read_timeout_but_a_slow_handler_is_not",
        &["curl", "python3"],
    ) {
        return;
    }
    let server = start(abuse_server()).await;
    let port = server.addr.port();
    let stalled = spawn_attack(
        server.addr,
        b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc",
        b"",
        Duration::from_millis(200),
        Duration::from_secs(15),
    )
    .await;
    // A handler that takes 2.5 s (longer than every bound) while the client
    // waits silently: nobody is reading a body, so nothing is cut.
    let (sleep_url, port_arg) = (server.url("/sleep/2500"), port.to_string());
    let slow = curl_get(&sleep_url);
    let upload_args = ["-c", UPLOAD, &port_arg, "1000"];
    let upload = run("python3", &upload_args);
    let (slow, upload) = tokio::join!(slow, upload);
    assert_eq!(slow, b"slept 2500 ms\n");
    assert_eq!(
        String::from_utf8(upload.stdout).unwrap(),
        "200 received 1000 bytes\n"
    );

    let seen = stalled.await.unwrap();
    assert_eq!(
        seen.received, 0,
        "no response to a body never sent: {seen:?}"
    );
    assert_eq!(seen.end, End::Reset, "{seen:?}");
    wait_ended_by(&server, Cause::ReadTimeout, 1).await;

    let report = server.shutdown().await;
    assert_eq!(report.requests, 3, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// A slow but steady reader: `SO_RCVBUF` 16 KiB, 16 KiB reads every 20 ms
/// (at most 800 KiB/s), of a body larger than the server's socket buffer can
/// hold (4 MiB here), so the server's writes block, and stay blocked for
/// longer than the send timeout: the socket reports room only once about
/// half its queue is gone. Only the ACKs show the progress meanwhile.
/// Checks every byte; prints `ok LEN`.
const SLOW_READER: &str = r#"
import http.client, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
sock.settimeout(20)
sock.connect(("127.0.0.1", port))
sock.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
resp = http.client.HTTPResponse(sock)
resp.begin()
assert resp.status == 200, resp.status
body = b""
while len(body) < n:
    chunk = resp.read(16384)
    assert chunk, ("cut short", len(body), n)
    body += chunk
    time.sleep(0.02)
expected = bytes(97 + i % 26 for i in range(26)) * (n // 26 + 1)
assert body == expected[:n], ("body differs", len(body), n)
sock.close()
print("ok", len(body))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_reset_after_the_send_timeout_but_a_slow_reader_is_not() {
    if !farewell_lab::support::tools::require(
        "a_client_that_stops_reading_is_reset_after_the_send_timeout_but_a_slow_reader_is_not",
        &["curl", "python3"],
    ) {
        return;
    }
    let server = start(abuse_server()).await;
    let port = server.addr.port();
    // Never reads the 64 MiB body it asked for.
    let mut stopped = TcpStream::connect(server.addr).unwrap();
    stopped
        .write_all(b"GET /bytes/67108864 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();

    let n: usize = 5 * 1024 * 1024;
    let (port_arg, n_arg, probe_url) = (port.to_string(), n.to_string(), server.url("/bytes/1000"));
    let slow_args = ["-c", SLOW_READER, &port_arg, &n_arg];
    let slow = run("python3", &slow_args);
    let probe = curl_get(&probe_url);
    let (slow, probe) = tokio::join!(slow, probe);
    assert_eq!(String::from_utf8(slow.stdout).unwrap(), format!("ok {n}\n"));
    assert_pattern(&probe, 1000);

    wait_ended_by(&server, Cause::SendTimeout, 1).await;
    // What the client's kernel had taken is there to read, then the reset.
    let seen = tokio::task::spawn_blocking(move || {
        let mut received = 0;
        let mut buf = [0u8; 1 << 16];
        stopped
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        loop {
            match stopped.read(&mut buf) {
                Ok(0) => return (received, End::Eof),
                Ok(k) => received += k,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return (received, End::Reset),
                Err(e) => panic!("non-reader: {e}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(seen.1, End::Reset, "{seen:?}");
    assert!(seen.0 < 67_108_864, "cut before the end: {seen:?}");
    assert_eq!(
        ended_by(&server, Cause::SendTimeout),
        1,
        "only the non-reader"
    );

    let report = server.shutdown().await;
    assert_no_server_time_wait_nor_leftovers(port).await;
    assert!(report.to_string().contains("send-timeout 1"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_larger_than_max_buf_size_gets_431_and_the_next_client_is_served() {
    if !farewell_lab::support::tools::require(
        "a_request_head_larger_than_max_buf_size_gets_431_and_the_next_client_is_served",
        &["curl"],
    ) {
        return;
    }
    let server = start(abuse_server()).await;
    let port = server.addr.port();
    let big = format!("X-Big: {}", "a".repeat(farewell_http::DEFAULT_MAX_BUF_SIZE));
    let url = server.url("/");
    let out = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &big,
            &url,
        ],
    )
    .await;
    assert_eq!(out.stdout, b"431");
    assert_eq!(
        curl_get(&url).await,
        farewell_lab::support::http_demo::HELLO.as_bytes()
    );
    server.shutdown().await;
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// Python's `ssl` over TLS: sends `G` and waits for the server's end, or asks
/// for 64 MiB and reads none of it for 4 s, then reads to the end. Prints
/// `MODE BYTES END` (END: reset, or eof: a close_notify, or a reset that
/// Python's ssl took for a ragged end).
const TLS_ABUSER: &str = r#"
import socket, ssl, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
s.settimeout(15)
if mode == "head":
    s.sendall(b"G")
else:
    s.sendall(b"GET /bytes/67108864 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(4)
got, end = 0, "eof"
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += len(d)
except (ConnectionResetError, ssl.SSLError) as e:
    end = "reset"
print(mode, got, end)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_partial_head_and_a_client_that_stops_reading_are_cut_too() {
    if !farewell_lab::support::tools::require(
        "over_tls_a_partial_head_and_a_client_that_stops_reading_are_cut_too",
        &["curl", "python3"],
    ) {
        return;
    }
    let made = farewell_lab::support::tls::SelfSigned::localhost();
    let server = start(abuse_server().tls(std::sync::Arc::new(made.server_config()))).await;
    let port = server.addr.port();
    let port_arg = port.to_string();
    let head_args = ["-c", TLS_ABUSER, &port_arg, "head"];
    let stop_args = ["-c", TLS_ABUSER, &port_arg, "stop"];
    let probe_url = format!("https://localhost:{port}/");
    let probe_args = ["-sS", "--fail", "-k", "--max-time", "10", &probe_url];
    let (head, stop, probe) = tokio::join!(
        run("python3", &head_args),
        run("python3", &stop_args),
        run("curl", &probe_args)
    );
    assert_eq!(
        probe.stdout,
        farewell_lab::support::http_demo::HELLO.as_bytes()
    );
    let head = String::from_utf8(head.stdout).unwrap();
    // The TLS close_notify, no HTTP byte, then the reset (or EOF first).
    assert!(head.starts_with("head 0 "), "{head}");
    let stop = String::from_utf8(stop.stdout).unwrap();
    let words: Vec<&str> = stop.split_whitespace().collect();
    // Python's ssl reports the reset after the buffered records as a reset
    // or, having read them, as an end of file: the server side says which.
    assert!(words[1].parse::<u64>().unwrap() < 67_108_864, "{stop}");

    wait_ended_by(&server, Cause::ReadTimeout, 1).await;
    wait_ended_by(&server, Cause::SendTimeout, 1).await;
    let aborted = server
        .connections
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.cause == Cause::SendTimeout)
        .map(|c| c.outcome.as_ref().map(|o| o.ending))
        .collect::<Vec<_>>();
    assert_eq!(aborted, [Some(farewell::Ending::Aborted)], "reset at once");
    server.shutdown().await;
    assert_no_server_time_wait_nor_leftovers(port).await;
}
