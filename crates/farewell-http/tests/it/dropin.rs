//! farewell-http as a drop-in for `axum::serve` (issue 14): real axum apps
//! served by `farewell_http::serve(..)` the way `axum::serve(..)` was called
//! (graceful shutdown, `into_make_service`, `ConnectInfo<SocketAddr>`,
//! `tap_io`, a `BoxCloneService`, a `Listener` of our own), the `grace`
//! setter keeping the drain limit, hyper's HTTP/1 and h2 settings,
//! `TCP_NODELAY`, and the live metrics. Clients: curl and Python's `http.client`; judged by
//! what they received and by the kernel's socket table on the server's port.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use common::*;
use farewell::{Policy, TcpState};
use farewell_http::Server;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

const HELLO: &str = "hello from axum\n";

/// An app with `/` (a greeting), `/whoami` (the client's address, from
/// `ConnectInfo`) and `/upload` (413 at once, the body left unread).
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { HELLO }))
        .route(
            "/whoami",
            get(|ConnectInfo(client): ConnectInfo<SocketAddr>| async move { client.to_string() }),
        )
        .route(
            "/upload",
            post(|| async { (StatusCode::PAYLOAD_TOO_LARGE, "too large\n") }),
        )
}

/// `curl -sS --fail URL` plus `extra`; its stdout.
async fn curl(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["-sS", "--fail", "--max-time", "20"];
    args.extend_from_slice(extra);
    args.push(url);
    String::from_utf8(run("curl", &args).await.stdout).unwrap()
}

/// Waits (bounded) for a server future spawned as a task to end.
async fn join(done: tokio::task::JoinHandle<std::io::Result<()>>) {
    tokio::time::timeout(Duration::from_secs(20), done)
        .await
        .expect("the server stops within 20s")
        .unwrap()
        .unwrap();
}

/// A keep-alive client in Python: one GET, prints `STATUS BODY` at once, then
/// waits (bounded) for the server to end the idle connection and prints `eof`
/// or `reset`.
const KEEP_ALIVE: &str = r#"
import http.client, socket, sys
port = int(sys.argv[1])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
conn.request("GET", "/")
resp = conn.getresponse()
print(resp.status, resp.read().decode(), end="", flush=True)
sock = conn.sock
try:
    print("eof" if sock.recv(1) == b"" else "data", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"#;

/// Starts a server with `start` (given the listener and the shutdown signal),
/// runs [`KEEP_ALIVE`] against it, sends the signal while the client's
/// connection is open and idle, and waits for the server and the client to
/// end. Returns the client's last line (`reset` or `eof`) and the port.
async fn keep_alive_then_shutdown(
    start: impl FnOnce(
        tokio::net::TcpListener,
        oneshot::Receiver<()>,
    ) -> tokio::task::JoinHandle<std::io::Result<()>>,
) -> (String, u16) {
    let listener = quiet_listener();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = start(listener, stopped);
    let mut client = tokio::process::Command::new("python3")
        .args(["-c", KEEP_ALIVE, &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts");
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the response within 20s")
        .unwrap();
    assert_eq!(first.as_deref(), Some("200 hello from axum"));
    // The connection is open and idle (keep-alive): now the signal.
    let counts = census_on(port);
    assert_eq!(counts.get(TcpState::Established), 1, "{counts:?}");
    let _ = stop.send(());
    join(done).await;
    let last = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the client sees the end within 20s")
        .unwrap()
        .expect("the client's last line");
    let status = tokio::time::timeout(Duration::from_secs(20), client.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    (last, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_graceful_shutdown_ends_a_keep_alive_connection_without_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "with_graceful_shutdown_ends_a_keep_alive_connection_without_server_time_wait",
        &["python3"],
    ) {
        return;
    }
    let (last, port) = keep_alive_then_shutdown(|listener, stopped| {
        // Exactly where `axum::serve(listener, app).with_graceful_shutdown(..).await` was.
        tokio::spawn(async move {
            farewell_http::serve(listener, app())
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        })
    })
    .await;
    // An idle HTTP/1.1 connection is reset once everything written is ACKed
    // (no HTTP/1.1 message can ask the client to close; see the crate docs).
    assert_eq!(last, "reset");
    assert_no_server_time_wait_nor_leftovers(port).await;
}

/// The contrast: `axum::serve` sends the first FIN to the idle connection,
/// and the server keeps its TIME-WAIT (so the census check above can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serve_with_graceful_shutdown_leaves_server_time_wait() {
    if !farewell_lab::support::tools::require(
        "axum_serve_with_graceful_shutdown_leaves_server_time_wait",
        &["python3"],
    ) {
        return;
    }
    let (last, port) = keep_alive_then_shutdown(|listener, stopped| {
        tokio::spawn(async move {
            axum::serve(listener, app())
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        })
    })
    .await;
    assert_eq!(last, "eof");
    let counts = settled_server_sockets(port).await;
    assert_eq!(counts.get(TcpState::TimeWait), 1, "{counts:?}");
}

/// The server's sockets on `port` now, the listener left out.
fn census_on(port: u16) -> farewell::census::StateCounts {
    use farewell::census::{self, Filter, StateSet};
    let filter = Filter::local_port(port).states(StateSet::all().without(TcpState::Listen));
    census::count_by_state(&filter).expect("census")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_info_handler_returns_the_client_address_to_curl() {
    if !farewell_lab::support::tools::require(
        "connect_info_handler_returns_the_client_address_to_curl",
        &["curl"],
    ) {
        return;
    }
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        farewell_http::serve(
            listener,
            app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });
    // curl prints the body, then the address it connected from.
    let out = curl(
        &format!("http://{addr}/whoami"),
        &["-w", "\n%{local_ip}:%{local_port}"],
    )
    .await;
    let (body, local) = out.split_once('\n').expect("body, then curl's address");
    assert_eq!(body, local, "the handler saw curl's own address");
    assert!(local.starts_with("127.0.0.1:"), "{local}");
    let _ = stop.send(());
    join(done).await;
    assert_no_server_time_wait_nor_leftovers(addr.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_make_service_is_served_to_curl() {
    if !farewell_lab::support::tools::require("into_make_service_is_served_to_curl", &["curl"]) {
        return;
    }
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        farewell_http::serve(listener, app().into_make_service())
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let url = format!("http://{addr}/");
    // Two requests, one connection (keep-alive), then one with `Connection: close`.
    assert_eq!(curl(&url, &["--next", &url]).await, HELLO.repeat(2));
    assert_eq!(curl(&url, &["-H", "Connection: close"]).await, HELLO);
    let _ = stop.send(());
    join(done).await;
    assert_no_server_time_wait_nor_leftovers(addr.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_clone_service_is_served_to_curl() {
    if !farewell_lab::support::tools::require("box_clone_service_is_served_to_curl", &["curl"]) {
        return;
    }
    // Send but not Sync: served because each connection gets its own clone.
    let service: tower::util::BoxCloneService<
        axum::http::Request<hyper::body::Incoming>,
        Response<Body>,
        Infallible,
    > = tower::util::BoxCloneService::new(app());
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        farewell_http::serve(listener, service)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let url = format!("http://{addr}/");
    assert_eq!(curl(&url, &["-H", "Connection: close"]).await, HELLO);
    let _ = stop.send(());
    join(done).await;
    assert_no_server_time_wait_nor_leftovers(addr.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_io_listener_sees_every_connection_and_curl_is_served() {
    if !farewell_lab::support::tools::require(
        "tap_io_listener_sees_every_connection_and_curl_is_served",
        &["curl"],
    ) {
        return;
    }
    let tapped = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&tapped);
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(move |tcp| {
        // What tap_io is for: a socket option on every accepted stream.
        tcp.set_ttl(33).unwrap();
        seen.fetch_add(1, Ordering::Relaxed);
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        farewell_http::serve(listener, app())
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let url = format!("http://{addr}/");
    assert_eq!(curl(&url, &["-H", "Connection: close"]).await, HELLO);
    assert_eq!(curl(&url, &["-H", "Connection: close"]).await, HELLO);
    let _ = stop.send(());
    join(done).await;
    assert_eq!(tapped.load(Ordering::Relaxed), 2);
    assert_no_server_time_wait_nor_leftovers(addr.port()).await;
}

/// POSTs 1 MiB with Python: the headers, then the body in 16 pieces of
/// 64 KiB 20 ms apart (a client on a slower path), and only then reads the
/// response (as `http.client` does); prints `STATUS BODY`, or the error. The
/// server answers 413 at once and drains what follows while it waits for the
/// client to close: over its drain limit it resets, and the reset wipes the
/// response from the client's receive buffer.
const UPLOAD: &str = r#"
import http.client, socket, sys, time
port = int(sys.argv[1])
sock = socket.create_connection(("127.0.0.1", port), timeout=20)
try:
    sock.sendall(f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {1 << 20}\r\n\r\n".encode())
    for _ in range(16):
        sock.sendall(b"x" * (64 * 1024))
        time.sleep(0.02)
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    print(resp.status, resp.read().decode(), end="")
except OSError as e:
    print(type(e).__name__)
"#;

/// Python's upload (see [`UPLOAD`]) on a server built by `server`; its stdout.
async fn upload_python(server: Server) -> String {
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        farewell_http::serve(listener, app())
            .with_server(server)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let out = run("python3", &["-c", UPLOAD, &addr.port().to_string()]).await;
    let _ = stop.send(());
    join(done).await;
    assert_no_server_time_wait_nor_leftovers(addr.port()).await;
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_setter_keeps_the_drain_limit_so_an_early_413_is_read_not_reset() {
    if !farewell_lab::support::tools::require(
        "grace_setter_keeps_the_drain_limit_so_an_early_413_is_read_not_reset",
        &["python3"],
    ) {
        return;
    }
    let grace = Duration::from_secs(1);
    assert_eq!(
        upload_python(Server::new().grace(grace)).await,
        "413 too large\n"
    );
    // The same through `policy(..)`: PeerFirst's own 256 KiB default drain
    // limit is raised to the server's 2 MiB.
    assert_eq!(
        upload_python(Server::new().policy(Policy::default().with_grace(grace))).await,
        "413 too large\n"
    );
    // What a 256 KiB drain limit did (the old `policy(Policy::default()
    // .with_grace(..))`): the client is reset before it reads the 413.
    let out = upload_python(Server::new().grace(grace).drain_limit(256 * 1024)).await;
    assert!(out.ends_with("Error\n"), "{out:?}");
}

/// The counters and gauges recorded so far, as `name{label=value,..}` → value
/// (gauges as whole numbers). A snapshot of the debugging recorder swaps every
/// value to zero (gauges too), so `seen` keeps the running totals: the sum of
/// every snapshot taken is the value now.
fn metrics_now(
    snapshotter: &metrics_util::debugging::Snapshotter,
    seen: &mut std::collections::BTreeMap<String, i64>,
) -> Vec<(String, i64)> {
    use metrics_util::debugging::DebugValue;
    let delta: Vec<(String, i64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = if labels.is_empty() {
                key.name().to_string()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            match value {
                DebugValue::Counter(n) => Some((name, n as i64)),
                DebugValue::Gauge(g) => Some((name, g.into_inner() as i64)),
                DebugValue::Histogram(_) => None,
            }
        })
        .collect();
    for (name, value) in delta {
        *seen.entry(name).or_default() += value;
    }
    seen.iter().map(|(n, v)| (n.clone(), *v)).collect()
}

fn metric(all: &[(String, i64)], name: &str) -> i64 {
    all.iter().filter(|(n, _)| n == name).map(|(_, v)| *v).sum()
}

/// Every series whose name starts with `prefix`, summed.
fn metric_sum(all: &[(String, i64)], prefix: &str) -> i64 {
    all.iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(_, v)| *v)
        .sum()
}

/// The recorder is local to this test's thread, and the server runs on a
/// current-thread runtime on it: other tests' servers (other threads) do
/// not count here.
#[test]
fn metrics_count_connections_requests_teardowns_and_causes() {
    use farewell_http::metrics as m;

    if !farewell_lab::support::tools::require(
        "metrics_count_connections_requests_teardowns_and_causes",
        &["curl"],
    ) {
        return;
    }
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (during, after) = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let mut seen = std::collections::BTreeMap::new();
            let listener = quiet_listener();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let done = tokio::spawn(async move {
                farewell_http::serve(listener, app())
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
            });
            let url = format!("http://{addr}/");
            // One connection, two requests, then curl closes it (client-closed).
            assert_eq!(curl(&url, &["--next", &url]).await, HELLO.repeat(2));
            // One request with `Connection: close` (client-asked).
            assert_eq!(curl(&url, &["-H", "Connection: close"]).await, HELLO);
            // A third connection, open and idle while the metrics are read.
            let idle = tokio::net::TcpStream::connect(addr).await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let during = loop {
                let now = metrics_now(&snapshotter, &mut seen);
                if metric(&now, m::CONNECTIONS_ACCEPTED) == 3
                    && metric(&now, m::CONNECTIONS_OPEN) == 1
                    || tokio::time::Instant::now() > deadline
                {
                    break now;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let _ = stop.send(());
            join(done).await;
            drop(idle);
            // A side server with `metrics(false)`: its connection is not counted.
            let side = quiet_listener();
            let side_addr = side.local_addr().unwrap();
            let (side_stop, side_stopped) = oneshot::channel::<()>();
            let side_done = tokio::spawn(async move {
                farewell_http::serve(side, app())
                    .with_server(Server::new().metrics(false))
                    .with_graceful_shutdown(async {
                        let _ = side_stopped.await;
                    })
                    .await
            });
            let side_url = format!("http://{side_addr}/");
            assert_eq!(curl(&side_url, &["-H", "Connection: close"]).await, HELLO);
            let _ = side_stop.send(());
            join(side_done).await;
            assert_no_server_time_wait_nor_leftovers(addr.port()).await;
            (during, metrics_now(&snapshotter, &mut seen))
        })
    });
    assert_eq!(metric(&during, m::CONNECTIONS_ACCEPTED), 3, "{during:?}");
    assert_eq!(metric(&during, m::CONNECTIONS_OPEN), 1, "{during:?}");
    assert_eq!(metric(&after, m::CONNECTIONS_ACCEPTED), 3, "{after:?}");
    assert_eq!(metric(&after, m::CONNECTIONS_OPEN), 0, "{after:?}");
    assert_eq!(metric(&after, m::REQUESTS), 3, "{after:?}");
    assert_eq!(metric_sum(&after, m::TEARDOWNS), 3, "{after:?}");
    assert_eq!(
        metric(
            &after,
            &format!("{}{{cause=client-asked}}", m::CONNECTIONS_ENDED)
        ),
        1,
        "{after:?}"
    );
    assert_eq!(
        metric(
            &after,
            &format!("{}{{cause=shutdown}}", m::CONNECTIONS_ENDED)
        ),
        1,
        "{after:?}"
    );
    assert_eq!(metric_sum(&after, m::CONNECTIONS_ENDED), 3, "{after:?}");
    // Nobody kept TIME-WAIT on the server.
    let on_server: i64 = after
        .iter()
        .filter(|(n, _)| n.starts_with(m::TEARDOWNS) && n.contains("time_wait=us"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(on_server, 0, "{after:?}");
}

/// A listener that keeps a duplicate of every accepted socket, so a test can
/// read the options the server set on it after the server's own handle is
/// gone.
struct Duplicating(
    tokio::net::TcpListener,
    Arc<std::sync::Mutex<Vec<socket2::Socket>>>,
);

impl farewell_http::Listener for Duplicating {
    async fn accept(&mut self) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        let dup = socket2::SockRef::from(&stream).try_clone()?;
        self.1.lock().unwrap().push(dup);
        Ok((stream, peer))
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Serves [`app`] with `server` on a [`Duplicating`] listener, runs one curl
/// request with `Connection: close`, and returns `TCP_NODELAY` as the server
/// left it on that connection's socket.
async fn nodelay_after_one_request(server: Server) -> bool {
    let sockets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let listener = Duplicating(listener, Arc::clone(&sockets));
    let done = tokio::spawn(async move {
        farewell_http::serve(listener, app())
            .with_server(server)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let url = format!("http://{addr}/");
    assert_eq!(curl(&url, &["-H", "Connection: close"]).await, HELLO);
    let _ = stop.send(());
    join(done).await;
    let mut sockets = sockets.lock().unwrap();
    assert_eq!(sockets.len(), 1);
    let nodelay = sockets[0].tcp_nodelay().unwrap();
    sockets.clear();
    nodelay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_nodelay_is_on_by_default_and_can_be_turned_off() {
    if !farewell_lab::support::tools::require(
        "tcp_nodelay_is_on_by_default_and_can_be_turned_off",
        &["curl"],
    ) {
        return;
    }
    assert!(nodelay_after_one_request(Server::new()).await);
    assert!(!nodelay_after_one_request(Server::new().tcp_nodelay(false)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_http1_and_http2_settings_reach_hyper() {
    if !farewell_lab::support::tools::require(
        "hyper_http1_and_http2_settings_reach_hyper",
        &["curl"],
    ) {
        return;
    }
    let server = Server::new()
        .http1(|http1| {
            http1.max_headers(8);
        })
        .http2(|http2| {
            http2.max_header_list_size(1024);
        });
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        farewell_http::serve(listener, app())
            .with_server(server)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let url = format!("http://{addr}/");
    let many: Vec<String> = (0..12).map(|i| format!("X-Many-{i}: {i}")).collect();
    let mut http1 = vec!["--http1.1", "-H", "Connection: close"];
    for h in &many {
        http1.extend(["-H", h.as_str()]);
    }
    // A few headers pass; more than 8 get hyper's 431.
    assert_eq!(
        curl_status(&url, &["--http1.1", "-H", "Connection: close"]).await,
        "200"
    );
    assert_eq!(curl_status(&url, &http1).await, "431");
    // h2: a small request passes; a header list over 1 KiB gets hyper's 431
    // (the default limit is 16 KiB).
    assert_eq!(curl_status(&url, &["--http2-prior-knowledge"]).await, "200");
    let big = format!("X-Big: {}", "b".repeat(2048));
    assert_eq!(
        curl_status(&url, &["--http2-prior-knowledge", "-H", &big]).await,
        "431"
    );
    let _ = stop.send(());
    join(done).await;
    assert_no_server_time_wait_nor_leftovers(addr.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_axum_listener_of_tcp_streams_is_served_through_axum_listener() {
    if !farewell_lab::support::tools::require(
        "any_axum_listener_of_tcp_streams_is_served_through_axum_listener",
        &["curl"],
    ) {
        return;
    }
    // axum's own `Listener` impl for tokio's TcpListener (its accept loop,
    // not farewell-http's), wrapped.
    let listener = quiet_listener();
    let addr = listener.local_addr().unwrap();
    let listener = farewell_http::axum::AxumListener(listener);
    assert_eq!(
        farewell_http::Listener::local_addr(&listener).unwrap(),
        addr
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        farewell_http::serve(
            listener,
            app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });
    let out = curl(
        &format!("http://{addr}/whoami"),
        &[
            "-H",
            "Connection: close",
            "-w",
            "\n%{local_ip}:%{local_port}",
        ],
    )
    .await;
    let (body, local) = out.split_once('\n').expect("body, then curl's address");
    assert_eq!(body, local);
    let _ = stop.send(());
    join(done).await;
    assert_no_server_time_wait_nor_leftovers(addr.port()).await;
}
