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
        let message = format!(
            "{test} needs the Python package websockets (13 or later); \
             install with `python3 -m pip install websockets`, or run scripts/test as root"
        );
        if std::env::var_os(farewell_lab::support::tools::REQUIRE_TOOLS).is_some_and(|v| v != "0") {
            panic!("{message}");
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipped: {message}");
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
