//! `farewell serve-http`'s `GET /ws` with a WebSocket client we did not write
//! (Python `websockets`): the echo, and close 1001 at SIGTERM, with no
//! TIME-WAIT left on the server.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use crate::http::{serve_http, server_time_wait, terminate};

/// Echo one message, print `ready`, wait for the server's close, print
/// `closed CODE REASON`.
const CLIENT: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
async def main():
    ws = await connect(f"ws://{sys.argv[1]}/ws", ping_interval=None, close_timeout=20)
    await ws.send("héllo")
    assert await ws.recv() == "héllo", "echo differs"
    print("ready", flush=True)
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass
    await ws.wait_closed()
    print("closed", ws.close_code, ws.close_reason, flush=True)
asyncio.run(asyncio.wait_for(main(), 25))
"#;

fn has_python_websockets(test: &str) -> bool {
    if !farewell_lab::support::tools::require(test, &["python3"]) {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import websockets.asyncio.client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        farewell_lab::support::tools::skip(
            test,
            "needs the Python package websockets (13 or later); install with \
             `python3 -m pip install websockets`, or run scripts/test as root",
        );
    }
    ok
}

#[test]
fn serve_http_ws_echo_then_sigterm_sends_1001_and_leaves_no_server_time_wait() {
    let test = "serve_http_ws_echo_then_sigterm_sends_1001_and_leaves_no_server_time_wait";
    if !has_python_websockets(test) {
        return;
    }
    // A 10 s grace: a client left waiting for the server's TCP close would show.
    let (server, addr, stderr) = serve_http(&["--grace", "10s", "--drain-timeout", "5s"]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut client = Command::new("python3")
        .args(["-c", CLIENT, &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    if line.trim() != "ready" {
        let _ = client.kill();
        let mut err = String::new();
        let _ = client.stderr.take().unwrap().read_to_string(&mut err);
        let _ = client.wait();
        panic!("client: {line:?} {err}");
    }
    let summary = terminate(server, stderr);
    // The client's own asyncio.wait_for bounds it to 25 s.
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = client.wait().unwrap();
    assert!(status.success(), "client failed: {rest}");
    assert_eq!(rest.trim(), "closed 1001 server shutting down", "{summary}");
    assert!(summary.contains("upgrade 1"), "{summary}");
    assert!(summary.contains("0 forced"), "{summary}");
    assert!(
        summary.contains("upgrades: 1 ended by the server's close"),
        "{summary}"
    );
    assert_eq!(server_time_wait(port), 0, "{summary}");
}

/// A WebSocket client that sends masked 125-byte pings as fast as it can
/// and never reads (issue 23): each ping makes the echo queue a pong it
/// cannot send. Its memory must stay bounded (the demo bounds tungstenite's
/// write buffer), the client must be cut (the demo flushes each pong, the
/// socket fills, and the send timeout cuts the upgraded stream), and another
/// client still served. (Unbounded, the server grew by about 1 GB in 2.5 s;
/// 422 MiB in 10 s here.)
#[test]
fn serve_http_ws_ping_flood_that_never_reads_is_cut_with_bounded_memory() {
    use std::io::Write;
    use std::time::{Duration, Instant};

    let (server, addr, stderr) = serve_http(&["--send-timeout", "2s"]);
    let pid = server.pid();
    let before = crate::abuse::rss_kib(pid) << 10;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(&addr.parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    let mut ws: std::net::TcpStream = socket.into();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = ws.read(&mut head).unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    // 100 masked pings of 125 bytes (mask 0: the payload goes as it is).
    let mut frames = Vec::new();
    for _ in 0..100 {
        frames.extend_from_slice(&[0x89, 0x80 | 125, 0, 0, 0, 0]);
        frames.extend_from_slice(&[b'p'; 125]);
    }
    ws.set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let flood = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(20);
        let mut sent = 0u64;
        while Instant::now() < end {
            match ws.write(&frames) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return (sent, Some(e.kind())),
            }
        }
        (sent, None)
    });
    let mut peak = before;
    let mut served = false;
    while !flood.is_finished() {
        peak = peak.max(crate::abuse::rss_kib(pid) << 10);
        if !served {
            served = crate::http::curl(&[&format!("http://{addr}/")]).starts_with(b"hello");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (sent, error) = flood.join().unwrap();
    eprintln!(
        "sent {sent} B of pings; server RSS {} MiB before, {} MiB at most; the client's end: {error:?}",
        before >> 20,
        peak >> 20
    );
    assert!(
        peak < before + (64 << 20),
        "the server grew by {} MiB",
        (peak - before) >> 20
    );
    assert!(served, "another client was served during the flood");
    assert!(
        error.is_some(),
        "the flooding client was not cut within 20 s (send timeout 2 s)"
    );
    let _ = terminate(server, stderr);
}
