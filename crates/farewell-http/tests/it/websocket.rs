//! WebSocket clients we did not write (Python `websockets`, Node `ws`)
//! against the demo's `/ws` echo on farewell-http: the echo comes back
//! intact, each close ends with the code the client reports, the client that
//! waits for the server's TCP close (RFC 6455 §7.1.1) gets it, and the kernel's
//! socket table on the server's port is left empty (no TIME-WAIT). Then the
//! server's bounds on upgraded connections: the shutdown signal (close 1001),
//! the idle bound, and the shutdown deadline for a handler that ignores the
//! signal.

use crate::common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use farewell::{PeerFirst, Policy};
use farewell_http::{Cause, ConnectionOutcome, ServeReport, Server, Shutdown};
use farewell_lab::support::tools;
use hyper::service::service_fn;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// A long grace, so that a server which waits for the client's FIN after the
/// close handshake (the client waits for ours) is caught: the client would
/// take the whole grace, or its own close timeout, to see the end.
const LONG_GRACE: Duration = Duration::from_secs(15);

/// A client's close counts as prompt below this; the slow ways it could end
/// instead (the grace's reset, the client's own 20 s close timeout) take longer.
const PROMPT: f64 = 8.0;

/// Python `websockets` (asyncio API): echo a text and a binary message, then
/// `client-closes` (close 1000, then wait, as RFC 6455 §7.1.1 says and
/// websockets does, for the server to close TCP), `server-closes` (print
/// `ready`, then wait for the server's close frame and TCP close) or `silent`
/// (print `ready`, then send nothing and wait). Prints
/// `flood` sends 64 KiB messages without reading until the server's echo
/// stalls, prints `ready`, waits for a line on stdin, then reads to the end.
/// `oversize` sends a 2 MiB message, over the demo's limit, and waits for
/// the end. Prints `closed CODE REASON SECONDS`, the seconds from the close (or `ready`) to
/// the TCP connection's end. A third argument, a CA file, makes it `wss://`.
const PYTHON: &str = r#"
import asyncio, ssl, sys, time
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
port, mode = int(sys.argv[1]), sys.argv[2]
cafile = sys.argv[3] if len(sys.argv) > 3 else None
async def main():
    url = f"{'wss' if cafile else 'ws'}://127.0.0.1:{port}/ws"
    tls = ssl.create_default_context(cafile=cafile) if cafile else None
    ws = await connect(url, ssl=tls, ping_interval=None, close_timeout=20, max_size=2**21)
    text = "héllo wörld " * 2000
    await ws.send(text)
    assert await ws.recv() == text, "text echo differs"
    data = bytes(range(256)) * 1024
    await ws.send(data)
    assert await ws.recv() == data, "binary echo differs"
    start = time.monotonic()
    if mode == "client-closes":
        await ws.close(1000, "done")
    elif mode == "flood":
        # Send without reading until the server's echo stalls, then wait for
        # a line on stdin before reading again.
        try:
            for _ in range(2000):
                await asyncio.wait_for(ws.send(b"y" * 65536), 1.0)
        except asyncio.TimeoutError:
            pass
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    elif mode == "oversize":
        try:
            await ws.send(b"x" * (2 * 1024 * 1024))
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    else:
        print("ready", flush=True)
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
        await ws.wait_closed()
    took = time.monotonic() - start
    print("closed", ws.close_code, ws.close_reason or "-", f"{took:.3f}", flush=True)
asyncio.run(asyncio.wait_for(main(), 25))
"#;

/// Node `ws`: echo a text and a binary message, then as [`PYTHON`]
/// (`client-closes` or `server-closes`). `ws` ends the TCP connection itself
/// (its FIN) once the close handshake is complete.
const NODE: &str = r#"
const WebSocket = require('ws');
const [port, mode] = process.argv.slice(1);
const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { maxPayload: 2 ** 21 });
const text = 'héllo wörld '.repeat(2000);
const data = Buffer.alloc(256 * 1024, 0).map((_, i) => i % 256);
let step = 0, start = 0;
ws.on('open', () => ws.send(text));
ws.on('message', (msg, binary) => {
  step += 1;
  if (step === 1) {
    if (binary || msg.toString() !== text) { console.log('bad text echo'); process.exit(1); }
    ws.send(data);
  } else if (step === 2) {
    if (!binary || Buffer.compare(msg, data) !== 0) { console.log('bad binary echo'); process.exit(1); }
    start = Date.now();
    if (mode === 'client-closes') ws.close(1000, 'done'); else console.log('ready');
  }
});
ws.on('error', (e) => console.log('error', e.code || e.message));
ws.on('close', (code, reason) => {
  console.log('closed', code, reason.toString() || '-', ((Date.now() - start) / 1000).toFixed(3));
  process.exit(0);
});
setTimeout(() => { console.log('timeout'); process.exit(2); }, 25000);
"#;

/// A server with [`LONG_GRACE`], the demo handler, every connection's end
/// recorded. `ignore_shutdown`: the handler is not given the [`Shutdown`]
/// signal, as a handler that ignores it.
struct WsServer {
    addr: std::net::SocketAddr,
    connections: Arc<Mutex<Vec<ConnectionOutcome>>>,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<std::io::Result<ServeReport>>,
}

fn ws_server() -> Server {
    Server::new()
        .policy(Policy::PeerFirst(PeerFirst {
            grace: LONG_GRACE,
            stall_timeout: Duration::from_secs(2),
            drain_limit: farewell_http::DEFAULT_DRAIN_LIMIT,
            ..PeerFirst::default()
        }))
        .shutdown_timeout(Duration::from_secs(5))
}

fn start_ws(server: Server, ignore_shutdown: bool) -> WsServer {
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(Mutex::new(Vec::new()));
    let ends = Arc::clone(&connections);
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = (!ignore_shutdown).then(|| server.shutdown_handle());
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        // The default server puts no `Shutdown` in the request: the handle is
        // the handler's only way to see the shutdown.
        assert!(request.extensions().get::<Shutdown>().is_none());
        farewell_lab::support::http_demo::handle_with(request, shutdown.clone())
    });
    let done = tokio::spawn(
        server
            .on_connection(move |c| ends.lock().unwrap().push(c))
            .serve_hyper(listener, service, async {
                let _ = stopped.await;
            }),
    );
    WsServer {
        addr,
        connections,
        stop,
        done,
    }
}

impl WsServer {
    async fn shutdown(self) -> ServeReport {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("the server shuts down within 30s")
            .unwrap()
            .unwrap()
    }

    fn upgraded(&self) -> Vec<ConnectionOutcome> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.cause == Cause::Upgrade)
            .cloned()
            .collect()
    }
}

/// True when python3 can import `websockets`' asyncio client; otherwise a
/// skip (or, under `FAREWELL_REQUIRE_TOOLS`, a failure) that says what to install.
fn require_python_websockets(test: &str) -> bool {
    if !tools::require(test, &["python3"]) {
        return false;
    }
    let ok = std::process::Command::new("python3")
        .args(["-c", "import websockets.asyncio.client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok || skip(
        test,
        "the Python package websockets (13 or later) for python3; \
         install with `python3 -m pip install websockets`",
    )
}

/// Where `ws` for Node is installed: `FAREWELL_NODE_MODULES`, or the
/// `node_modules` that `scripts/test` fills under `target/test-clients`.
fn node_modules() -> PathBuf {
    std::env::var_os("FAREWELL_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-clients/node_modules")
        })
}

fn require_node_ws(test: &str) -> bool {
    if !tools::require(test, &["node"]) {
        return false;
    }
    node_modules().join("ws/package.json").is_file()
        || skip(
            test,
            &format!(
                "the npm package ws in {}; install with \
                 `npm install --prefix target/test-clients ws`, or run scripts/test",
                node_modules().display()
            ),
        )
}

fn skip(test: &str, what: &str) -> bool {
    tools::skip(test, &format!("needs {what}"))
}

fn python_client(port: u16, mode: &str) -> Child {
    Command::new("python3")
        .args(["-c", PYTHON, &port.to_string(), mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs")
}

fn node_client(port: u16, mode: &str) -> Child {
    Command::new("node")
        .args(["-e", NODE, &port.to_string(), mode])
        .env("NODE_PATH", node_modules())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs")
}

/// Waits (bounded) for the client to print `ready`.
async fn ready(child: &mut Child) -> tokio::io::Lines<BufReader<tokio::process::ChildStdout>> {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the client is ready within 20s")
        .unwrap();
    assert_eq!(line.as_deref(), Some("ready"), "client: {line:?}");
    lines
}

/// The client's close as it printed it: code, reason, seconds.
#[derive(Debug)]
struct Closed {
    code: u16,
    reason: String,
    seconds: f64,
}

/// Waits (bounded) for the client to end; returns what it printed last.
async fn closed(mut child: Child, rest: Option<String>) -> Closed {
    let output = tokio::time::timeout(Duration::from_secs(30), async {
        let mut stderr = String::new();
        let mut out = rest.unwrap_or_default();
        if let Some(mut s) = child.stdout.take() {
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut out)
                .await
                .unwrap();
        }
        if let Some(mut s) = child.stderr.take() {
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut stderr)
                .await
                .unwrap();
        }
        let status = child.wait().await.unwrap();
        (status, out, stderr)
    })
    .await
    .expect("the client ends within 30s");
    let (status, out, stderr) = output;
    assert!(status.success(), "client failed: {status}\n{out}\n{stderr}");
    let line = out
        .lines()
        .find(|l| l.starts_with("closed "))
        .unwrap_or_else(|| panic!("client printed no close: {out}\n{stderr}"));
    let fields: Vec<&str> = line.split(' ').collect();
    Closed {
        code: fields[1].parse().unwrap(),
        reason: fields[2..fields.len() - 1].join(" "),
        seconds: fields[fields.len() - 1].parse().unwrap(),
    }
}

/// Reads what is left of the client's stdout after `ready`.
async fn rest(
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Option<String> {
    let mut out = String::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the client ends within 30s")
        .unwrap()
    {
        out.push_str(&line);
        out.push('\n');
    }
    Some(out)
}

/// The client closes; the server answers and closes TCP at once (its FIN,
/// reset on its ACK, or a passive close if the client's FIN came first).
async fn client_closes(
    client: fn(u16, &str) -> Child,
) -> (Closed, ServeReport, Vec<ConnectionOutcome>) {
    let server = start_ws(ws_server(), false);
    let port = server.addr.port();
    let closed = closed(client(port, "client-closes"), None).await;
    assert_no_server_time_wait_nor_leftovers(port).await;
    let upgraded = server.upgraded();
    let report = server.shutdown().await;
    (closed, report, upgraded)
}

/// The server shuts down: the handler sends close 1001, the client answers,
/// and the connection ends well before the shutdown deadline.
async fn server_closes(client: fn(u16, &str) -> Child) -> (Closed, ServeReport) {
    let server = start_ws(ws_server(), false);
    let port = server.addr.port();
    let mut child = client(port, "server-closes");
    let lines = ready(&mut child).await;
    let report = server.shutdown().await;
    let closed = closed(child, rest(lines).await).await;
    assert_no_server_time_wait_nor_leftovers(port).await;
    (closed, report)
}

#[tokio::test]
async fn websocket_python_client_close_gets_the_servers_tcp_close_and_no_server_time_wait() {
    if !require_python_websockets("websocket_python_client_close") {
        return;
    }
    let (closed, report, upgraded) = client_closes(python_client).await;
    eprintln!("python websockets, client closes: {closed:?}; {report}");
    // websockets reports the code of the server's close frame: its echo of 1000.
    assert_eq!(closed.code, 1000, "{closed:?}");
    assert!(
        closed.seconds < PROMPT,
        "the client waited {:.1}s for the server's TCP close (grace {LONG_GRACE:?})",
        closed.seconds
    );
    // websockets waits for the server's FIN: the FIN ending, delivered.
    assert_eq!(report.upgrades_closed, 1, "{report}");
    assert_eq!(report.upgrades_reset_undelivered, 0, "{report}");
    assert_eq!(upgraded.len(), 1, "{upgraded:?}");
    assert!(upgraded[0].close_delimited, "{:?}", upgraded[0]);
}

/// What every client sees when the server shuts down: close 1001 with the
/// handler's reason, promptly, and the drain waited for the upgrade rather
/// than cutting it.
fn assert_shutdown_close(closed: &Closed, report: &ServeReport) {
    assert_eq!(closed.code, 1001, "{closed:?}");
    assert_eq!(closed.reason, "server shutting down");
    assert!(closed.seconds < PROMPT, "{closed:?}");
    assert_eq!(report.forced, 0, "{report}");
    assert_eq!(report.upgrades_closed, 1, "{report}");
}

#[tokio::test]
async fn websocket_python_client_gets_1001_at_shutdown_and_no_server_time_wait() {
    if !require_python_websockets("websocket_python_shutdown") {
        return;
    }
    let (closed, report) = server_closes(python_client).await;
    eprintln!("python websockets, server shuts down: {closed:?}; {report}");
    assert_shutdown_close(&closed, &report);
}

#[tokio::test]
async fn websocket_node_ws_client_close_and_no_server_time_wait() {
    if !require_node_ws("websocket_node_ws_client_close") {
        return;
    }
    let (closed, report, upgraded) = client_closes(node_client).await;
    eprintln!("node ws, client closes: {closed:?}; {report}");
    assert_eq!(closed.code, 1000, "{closed:?}");
    assert!(closed.seconds < PROMPT, "{closed:?}");
    assert_eq!(report.upgrades_closed, 1, "{report}");
    assert_eq!(upgraded.len(), 1, "{upgraded:?}");
}

#[tokio::test]
async fn websocket_node_ws_client_gets_1001_at_shutdown_and_no_server_time_wait() {
    if !require_node_ws("websocket_node_ws_shutdown") {
        return;
    }
    let (closed, report) = server_closes(node_client).await;
    eprintln!("node ws, server shuts down: {closed:?}; {report}");
    assert_shutdown_close(&closed, &report);
}

/// A client that sends nothing after its messages is cut by the idle bound:
/// no close frame (the client reports 1006, abnormal closure), a reset once
/// the echo is ACKed, no TIME-WAIT.
#[tokio::test]
async fn websocket_idle_bound_cuts_a_silent_client_without_time_wait() {
    if !require_python_websockets("websocket_idle_bound") {
        return;
    }
    let server = start_ws(
        ws_server().upgrade_idle_timeout(Duration::from_secs(1)),
        false,
    );
    let port = server.addr.port();
    let mut child = python_client(port, "silent");
    let lines = ready(&mut child).await;
    let closed = closed(child, rest(lines).await).await;
    assert_eq!(closed.code, 1006, "{closed:?}");
    assert_no_server_time_wait_nor_leftovers(port).await;
    let report = server.shutdown().await;
    eprintln!("idle bound: {closed:?}; {report}");
    assert_eq!(report.upgrades_idle_cut, 1, "{report}");
    assert_eq!(report.upgrades_closed, 0, "{report}");
}

/// A handler that ignores the shutdown signal is cut at the shutdown
/// deadline: its reads fail, it ends, the socket is reset once everything is
/// ACKed; the report counts it as forced; the client reports 1006.
#[tokio::test]
async fn websocket_handler_ignoring_shutdown_is_cut_at_the_deadline() {
    if !require_python_websockets("websocket_shutdown_deadline") {
        return;
    }
    let server = start_ws(ws_server().shutdown_timeout(Duration::from_secs(1)), true);
    let port = server.addr.port();
    let mut child = python_client(port, "server-closes");
    let lines = ready(&mut child).await;
    let report = server.shutdown().await;
    let closed = closed(child, rest(lines).await).await;
    eprintln!("shutdown deadline: {closed:?}; {report}");
    assert_eq!(closed.code, 1006, "{closed:?}");
    assert_eq!(report.forced, 1, "{report}");
    assert_eq!(report.teardowns.finished(), 1, "{report}");
    assert_eq!(report.upgrades_closed, 0, "{report}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

// ---------------------------------------------------------------------------
// Headless Chromium
// ---------------------------------------------------------------------------

/// The page Chromium loads from [`PageServer`]: it opens `ws://…/ws` on the
/// server under test, checks the echo of a text and a binary message, then
/// closes (`client-closes`) or fetches `/ready` and waits for the server's
/// close (`server-closes`). Its `close` event's code, reason, `wasClean`, the
/// echo check and the seconds from the close (or `/ready`) go to `/report`;
/// the parser-blocking `/hold` script keeps the page loading (so
/// `--dump-dom` waits) until the report is in.
const PAGE: &str = r#"<!doctype html><title>pending</title><body>open<script>
const ws = new WebSocket("ws://127.0.0.1:WS_PORT/ws");
ws.binaryType = "arraybuffer";
const text = "héllo wörld ".repeat(2000);
const data = new Uint8Array(65536).map((_, i) => i % 256);
let step = 0, echoed = true, start = 0;
ws.onopen = () => ws.send(text);
ws.onmessage = (e) => {
  step += 1;
  if (step === 1) { echoed = echoed && e.data === text; ws.send(data); return; }
  const got = new Uint8Array(e.data);
  echoed = echoed && got.length === data.length && got.every((b, i) => b === data[i]);
  start = performance.now();
  if ("MODE" === "client-closes") ws.close(1000, "done"); else fetch("/ready");
};
ws.onclose = (e) => {
  const seconds = ((performance.now() - start) / 1000).toFixed(3);
  const line = `closed ${e.code} ${e.reason || "-"} ${seconds} clean=${e.wasClean} echoed=${echoed}`;
  document.body.textContent = line;
  fetch("/report?" + encodeURIComponent(line));
};
</script><script src="/hold"></script></body>"#;

/// Serves [`PAGE`] and takes Chromium's `/ready` and `/report` (a plain
/// farewell-http server of its own, so the server under test can shut down
/// while the page still reports).
struct PageServer {
    addr: std::net::SocketAddr,
    ready: tokio::sync::watch::Receiver<bool>,
    report: tokio::sync::watch::Receiver<Option<String>>,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<std::io::Result<ServeReport>>,
}

fn page_server(ws_port: u16, mode: &'static str) -> PageServer {
    use bytes::Bytes;
    use http_body_util::Full;
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    let (report_tx, report) = tokio::sync::watch::channel(None::<String>);
    let (ready_tx, report_tx) = (Arc::new(ready_tx), Arc::new(report_tx));
    let page = PAGE
        .replace("WS_PORT", &ws_port.to_string())
        .replace("MODE", mode);
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (page, ready_tx, report_tx) =
            (page.clone(), Arc::clone(&ready_tx), Arc::clone(&report_tx));
        async move {
            let (content_type, body) = match request.uri().path() {
                "/page" => ("text/html; charset=utf-8", page),
                "/ready" => {
                    ready_tx.send_replace(true);
                    ("text/plain", String::new())
                }
                "/report" => {
                    let query = request.uri().query().unwrap_or_default();
                    let line = percent_decode(query);
                    report_tx.send_replace(Some(line));
                    ("text/plain", String::new())
                }
                "/hold" => {
                    let mut reported = report_tx.subscribe();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(20),
                        reported.wait_for(Option::is_some),
                    )
                    .await;
                    ("text/javascript", String::new())
                }
                _ => ("text/plain", String::from("not found")),
            };
            let response = hyper::Response::builder()
                .header("content-type", content_type)
                .header("cache-control", "no-store")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(Server::new().serve_hyper(listener, service, async {
        let _ = stopped.await;
    }));
    PageServer {
        addr,
        ready,
        report,
        stop,
        done,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Headless Chromium loading the page of `page`, its DOM dumped once loaded (bounded).
fn chromium(page: &PageServer, profile: &std::path::Path) -> Child {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("http://{}/page", page.addr))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium runs")
}

/// What Chromium's page reported, parsed; also checks the dumped DOM says the same.
async fn chromium_closed(child: Child, page: PageServer) -> (Closed, bool, bool) {
    let output = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .expect("chromium ends within 40s")
        .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = page
        .report
        .borrow()
        .clone()
        .unwrap_or_else(|| panic!("the page reported no close; DOM: {dom}"));
    assert!(dom.contains(&line), "the DOM says otherwise: {dom}");
    let _ = page.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), page.done).await;
    let fields: Vec<&str> = line.split(' ').collect();
    let n = fields.len();
    let closed = Closed {
        code: fields[1].parse().unwrap(),
        reason: fields[2..n - 3].join(" "),
        seconds: fields[n - 3].parse().unwrap(),
    };
    (
        closed,
        fields[n - 2] == "clean=true",
        fields[n - 1] == "echoed=true",
    )
}

fn chromium_profile(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("farewell-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn websocket_chromium_client_close_is_clean_and_no_server_time_wait() {
    if !tools::require("websocket_chromium_client_close", &["chromium"]) {
        return;
    }
    let server = start_ws(ws_server(), false);
    let port = server.addr.port();
    let page = page_server(port, "client-closes");
    let profile = chromium_profile("chromium-client-closes");
    let child = chromium(&page, &profile);
    let (closed, clean, echoed) = chromium_closed(child, page).await;
    let _ = std::fs::remove_dir_all(&profile);
    assert_no_server_time_wait_nor_leftovers(port).await;
    let report = server.shutdown().await;
    eprintln!("chromium, client closes: {closed:?} clean={clean} echoed={echoed}; {report}");
    assert!(echoed, "the echo differs");
    assert_eq!(closed.code, 1000, "{closed:?}");
    assert!(clean, "Chromium saw an unclean close: {closed:?}");
    assert!(closed.seconds < PROMPT, "{closed:?}");
    assert_eq!(report.upgrades_closed, 1, "{report}");
}

#[tokio::test]
async fn websocket_chromium_gets_1001_at_shutdown_and_no_server_time_wait() {
    if !tools::require("websocket_chromium_shutdown", &["chromium"]) {
        return;
    }
    let server = start_ws(ws_server(), false);
    let port = server.addr.port();
    let page = page_server(port, "server-closes");
    let profile = chromium_profile("chromium-server-closes");
    let child = chromium(&page, &profile);
    let mut ready = page.ready.clone();
    tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r))
        .await
        .expect("the page is ready within 30s")
        .unwrap();
    let report = server.shutdown().await;
    let (closed, clean, echoed) = chromium_closed(child, page).await;
    let _ = std::fs::remove_dir_all(&profile);
    assert_no_server_time_wait_nor_leftovers(port).await;
    eprintln!("chromium, server shuts down: {closed:?} clean={clean} echoed={echoed}; {report}");
    assert!(echoed, "the echo differs");
    assert!(clean, "Chromium saw an unclean close: {closed:?}");
    assert_shutdown_close(&closed, &report);
}

/// A message over the demo's 1 MiB limit ends the WebSocket with close 1009
/// (message too big), not with memory spent on it; the server keeps no
/// TIME-WAIT, and the next client is served.
#[tokio::test]
async fn websocket_oversized_message_gets_1009_and_the_next_client_is_served() {
    if !require_python_websockets("websocket_oversized_message") {
        return;
    }
    let server = start_ws(ws_server(), false);
    let port = server.addr.port();
    let oversize = closed(python_client(port, "oversize"), None).await;
    let probe = closed(python_client(port, "client-closes"), None).await;
    assert_no_server_time_wait_nor_leftovers(port).await;
    let report = server.shutdown().await;
    eprintln!("oversize: {oversize:?}; then {probe:?}; {report}");
    assert_eq!(oversize.code, 1009, "{oversize:?}");
    assert_eq!(probe.code, 1000, "{probe:?}");
}

// ---------------------------------------------------------------------------
// The shutdown signal, for any handler
// ---------------------------------------------------------------------------

/// Answers a long poll as soon as the server shuts down; tells `entered`
/// whether the shutdown was already requested when the request came in.
async fn long_poll(shutdown: Shutdown, entered: tokio::sync::mpsc::Sender<bool>) -> &'static str {
    let _ = entered.send(shutdown.is_requested()).await;
    tokio::select! {
        () = shutdown.requested() => "server shutting down\n",
        () = tokio::time::sleep(Duration::from_secs(20)) => "no shutdown\n",
    }
}

/// An axum handler given the server's [`Shutdown`] in its `State`
/// ([`Server::shutdown_handle`], taken before serving) answers a long poll as
/// soon as the server shuts down; curl gets that answer, well within the
/// shutdown timeout, and the server keeps no TIME-WAIT.
#[tokio::test]
async fn shutdown_handle_reaches_an_axum_handler_in_its_state() {
    use axum::{extract::State, routing::get, Router};
    if !tools::require("shutdown_handle_axum", &["curl"]) {
        return;
    }
    let (entered_tx, entered) = tokio::sync::mpsc::channel::<bool>(1);
    let server = ws_server();
    let app = Router::new()
        .route(
            "/poll",
            get(move |State(shutdown): State<Shutdown>| long_poll(shutdown, entered_tx.clone())),
        )
        .with_state(server.shutdown_handle());
    curl_gets_the_shutdown_answer(server, app, entered).await;
}

/// A handle taken before serving is requested when the server's shutdown
/// begins, completes `requested()` then, and a new run of the same server
/// (a clone) clears it until that run shuts down in turn.
#[tokio::test]
async fn shutdown_handle_follows_each_run_of_its_server() {
    let server = Server::new().shutdown_timeout(Duration::from_secs(2));
    let handle = server.shutdown_handle();
    assert!(!handle.is_requested(), "requested before any run");
    for run in 0..2 {
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(server.clone().serve_hyper(
            quiet_listener(),
            service_fn(farewell_lab::support::http_demo::handle),
            async {
                let _ = stopped.await;
            },
        ));
        // The run has begun once it cleared the previous run's request.
        tokio::time::timeout(Duration::from_secs(10), async {
            while handle.is_requested() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("run {run}: a new run clears the request within 10 s"));
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), handle.requested())
            .await
            .unwrap_or_else(|_| panic!("run {run}: requested() completes at shutdown"));
        assert!(handle.is_requested());
        tokio::time::timeout(Duration::from_secs(10), done)
            .await
            .expect("the server shuts down within 10 s")
            .unwrap()
            .unwrap();
    }
}

/// With [`Server::shutdown_extension`], an axum handler takes
/// `Extension<Shutdown>` instead, with the same result; without it the
/// extension is not there (axum answers 500: a missing extension).
#[tokio::test]
async fn shutdown_extension_reaches_an_axum_handler_when_asked_for() {
    use axum::{routing::get, Extension, Router};
    if !tools::require("shutdown_extension_axum", &["curl"]) {
        return;
    }
    let (entered_tx, entered) = tokio::sync::mpsc::channel::<bool>(1);
    let app = Router::new().route(
        "/poll",
        get(move |Extension(shutdown): Extension<Shutdown>| {
            long_poll(shutdown, entered_tx.clone())
        }),
    );
    // Not asked for: no extension.
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(ws_server().serve(listener, app.clone(), async {
        let _ = stopped.await;
    }));
    assert_eq!(
        curl_status(&format!("http://{addr}/poll"), &[]).await,
        "500"
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .expect("the server shuts down within 30s")
        .unwrap()
        .unwrap();
    curl_gets_the_shutdown_answer(ws_server().shutdown_extension(true), app, entered).await;
}

/// Serves `app` with `server`, has curl ask `/poll`, shuts the server down
/// once the handler has the request, and checks curl got the handler's
/// shutdown answer, nothing was forced, and no TIME-WAIT is left.
async fn curl_gets_the_shutdown_answer(
    server: Server,
    app: axum::Router,
    mut entered: tokio::sync::mpsc::Receiver<bool>,
) {
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.serve(listener, app, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/poll");
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "25", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl runs");
    let requested_before = tokio::time::timeout(Duration::from_secs(20), entered.recv())
        .await
        .expect("the request reaches the handler within 20s")
        .unwrap();
    assert!(!requested_before, "shutdown requested before it was");
    let _ = stop.send(());
    let report = tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .expect("the server shuts down within 30s")
        .unwrap()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), curl.wait_with_output())
        .await
        .expect("curl ends within 30s")
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "server shutting down\n"
    );
    assert_eq!(report.forced, 0, "{report}");
    assert_no_server_time_wait_nor_leftovers(addr.port()).await;
}

/// A handler stuck writing to a client that does not read (its echo blocked
/// on a full send buffer, so it never looks at the shutdown signal) is cut
/// at the shutdown deadline: the blocked write fails, the handler ends, and
/// the socket is reset once the send stalls. The server shuts down, keeps no
/// socket on the port, and the client reports 1006 (no close frame).
#[tokio::test]
async fn websocket_handler_blocked_on_a_non_reading_client_is_cut_at_the_deadline() {
    if !require_python_websockets("websocket_blocked_writer_deadline") {
        return;
    }
    let server = start_ws(ws_server().shutdown_timeout(Duration::from_secs(1)), false);
    let port = server.addr.port();
    let mut child = python_client(port, "flood");
    let lines = ready(&mut child).await;
    let report = server.shutdown().await;
    // The server is down: now let the client read what it was sent, then the end.
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
    }
    let closed = closed(child, rest(lines).await).await;
    eprintln!("blocked writer: {closed:?}; {report}");
    assert_eq!(report.forced, 1, "{report}");
    // The cut reached the blocked handler while the server shut down, not
    // later when the client read again: its teardown is in the report.
    assert_eq!(report.teardowns.finished(), 1, "{report}");
    assert_eq!(closed.code, 1006, "{closed:?}");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// Opens N WebSockets, echoes one message on each, prints `ready`, then sends
/// nothing; prints `closed CODES` (each connection's close code, sorted and
/// counted) once all have ended.
const PYTHON_SILENT_MANY: &str = r#"
import asyncio, collections, sys
from websockets.asyncio.client import connect
port, n = int(sys.argv[1]), int(sys.argv[2])
async def one():
    ws = await connect(f"ws://127.0.0.1:{port}/ws", ping_interval=None, close_timeout=20)
    await ws.send("x")
    assert await ws.recv() == "x"
    return ws
async def main():
    sockets = await asyncio.gather(*[one() for _ in range(n)])
    print("ready", flush=True)
    await asyncio.gather(*[ws.wait_closed() for ws in sockets])
    codes = collections.Counter(ws.close_code for ws in sockets)
    print("closed", " ".join(f"{c}x{k}" for c, k in sorted(codes.items())), flush=True)
asyncio.run(asyncio.wait_for(main(), 25))
"#;

/// Silent WebSockets hold no more than the idle bound: while 50 of them sit
/// open, a probe (curl) is served; then each is cut (1006, no close frame) and
/// the server keeps no socket on the port.
#[tokio::test]
async fn websocket_many_silent_clients_are_cut_by_the_idle_bound_while_a_probe_is_served() {
    if !require_python_websockets("websocket_many_silent")
        || !tools::require("websocket_many_silent", &["curl"])
    {
        return;
    }
    const N: usize = 50;
    let server = start_ws(
        ws_server().upgrade_idle_timeout(Duration::from_secs(2)),
        false,
    );
    let port = server.addr.port();
    let mut child = Command::new("python3")
        .args(["-c", PYTHON_SILENT_MANY, &port.to_string(), &N.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let lines = ready(&mut child).await;
    let probe = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            &format!("http://{}/", server.addr),
        ],
    )
    .await;
    assert_eq!(
        probe.stdout,
        farewell_lab::support::http_demo::HELLO.as_bytes()
    );
    let out = rest(lines).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the client ends within 30s")
        .unwrap();
    assert!(status.success(), "{out}");
    assert_eq!(out.trim(), format!("closed 1006x{N}"));
    assert_no_server_time_wait_nor_leftovers(port).await;
    let report = server.shutdown().await;
    eprintln!("{N} silent: {out}; {report}");
    assert_eq!(report.upgrades_idle_cut, N as u64, "{report}");
}

/// Over TLS (`wss://`), the upgraded stream ends as any TLS connection does:
/// `close_notify` with no FIN, then the policy. Python `websockets` takes the
/// `close_notify` for the end it waits for after the close handshake, and
/// closes: a passive close, no server TIME-WAIT.
#[tokio::test]
async fn websocket_over_tls_python_client_close_and_no_server_time_wait() {
    if !require_python_websockets("websocket_over_tls") {
        return;
    }
    let made = farewell_lab::support::tls::SelfSigned::localhost();
    let dir = std::env::temp_dir().join(format!("farewell-http-wss-{}", std::process::id()));
    let (file, _) = made.write_pem(&dir).unwrap();
    let server = start_ws(ws_server().tls(Arc::new(made.server_config())), false);
    let port = server.addr.port();
    let child = Command::new("python3")
        .args(["-c", PYTHON, &port.to_string(), "client-closes"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let closed = closed(child, None).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_no_server_time_wait_nor_leftovers(port).await;
    let upgraded = server.upgraded();
    let report = server.shutdown().await;
    eprintln!("python websockets over TLS, client closes: {closed:?}; {report}");
    assert_eq!(closed.code, 1000, "{closed:?}");
    assert!(closed.seconds < PROMPT, "{closed:?}");
    assert_eq!(upgraded.len(), 1, "{upgraded:?}");
}
