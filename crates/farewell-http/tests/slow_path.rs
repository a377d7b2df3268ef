//! The case issue 13 saw fail: a large `Connection: close` response to curl
//! over a rate-limited path between two network namespaces. Peer-first used
//! to reset 3 s after the response was written (grace + confirmation wait),
//! cutting the body; with delivery judged by ACK progress, curl gets every
//! byte and the server keeps no TIME-WAIT. Plain hyper-style `close()`
//! (`--policy plain`) is the contrast: it delivers too, and keeps TIME-WAIT.
//!
//! Also a close-delimited HTTP/1.0 response over the same kind of path, and
//! the send-stall timeout: a reader slowed by the link is not cut.
//!
//! Its own test binary: building the path forks `ip`, `tc` and `nft`, and a
//! fork holds copies of other tests' sockets until it execs. Needs
//! `CAP_NET_ADMIN` and `CAP_SYS_ADMIN`, `ip`, `tc` and `curl`; without them it
//! prints why it is skipped.

use std::time::Duration;

use farewell::census::{self, Filter, StateSet};
use farewell::{Ending, Outcome, PeerFirst, Plain, Policy, TcpState, TimeWait};
use farewell_lab::lab::path::{NetPath, PathKind, PathSpec, Slow, Wan};
use farewell_lab::support::http_demo;
use hyper::service::service_fn;

/// 768 KiB at 1 Mbit/s: about 6.3 s on the wire, well past the 3 s after
/// which the old peer-first reset.
const BODY: usize = 768 * 1024;
const RATE: u64 = 1_000_000;

/// One test at a time: building a path forks `ip` and `tc`, and a fork
/// holds copies of the other test's sockets until it execs.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn may_run(test: &str) -> bool {
    if let Some(why) = PathKind::Slow.unavailable() {
        return farewell_lab::support::tools::skip(test, &why);
    }
    farewell_lab::support::tools::require(test, &["curl"])
}

/// Serves one `GET /bytes/BODY` with `Connection: close` to curl in the
/// client namespace; returns what curl saved, the outcome, and the server's
/// sockets by state once the teardown is over.
/// What one fetch over the path produced.
struct Fetched {
    /// What curl saved.
    body: Vec<u8>,
    /// The teardown's outcome (none for a close-delimited response, which
    /// the server ends itself).
    outcome: Option<Outcome>,
    report: farewell_http::ServeReport,
    /// The server's sockets by state once everything settled.
    counts: census::StateCounts,
    /// The server's address.
    addr: std::net::SocketAddr,
}

/// Serves one GET of `route` to curl (with `curl_args`) in the client
/// namespace, then shuts the server down and reads the census.
fn fetch(path: &NetPath, policy: Policy, route: &str, curl_args: &[&str]) -> Fetched {
    fetch_with(path, policy, route, curl_args, |server| server)
}

/// As [`fetch`], with the server's settings changed by `tune` first.
fn fetch_with(
    path: &NetPath,
    policy: Policy,
    route: &str,
    curl_args: &[&str],
    tune: fn(farewell_http::Server) -> farewell_http::Server,
) -> Fetched {
    let ip = path.server_ip();
    let listener = path
        .server(|| std::net::TcpListener::bind((ip, 0)))
        .expect("in the server namespace")
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcomes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&outcomes);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tune(farewell_http::Server::new())
            .policy(policy)
            .shutdown_timeout(Duration::from_secs(30))
            .on_outcome(move |o| sink.lock().unwrap().push(o))
            .serve_hyper(listener, service_fn(http_demo::handle), async {
                let _ = stopped.await;
            })
            .await
    });

    let file = std::env::temp_dir().join(format!(
        "farewell-slow-path-{}-{}.bin",
        std::process::id(),
        addr.port()
    ));
    let url = format!("http://{addr}{route}");
    let client = path
        .client_netns()
        .expect("a slow path has a client namespace");
    let curl = client.exec(
        "curl",
        &[
            &["-sS", "--max-time", "60", "-o", file.to_str().unwrap()][..],
            curl_args,
            &[url.as_str()],
        ]
        .concat(),
    );
    let body = std::fs::read(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    if let Err(e) = curl {
        panic!("curl failed after {} bytes: {e}", body.len());
    }

    // The teardown ends by itself (the client closed, or the grace passed);
    // then shut down and read the census in the server's namespace.
    let _ = stop.send(());
    let report = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), server).await })
        .expect("the server shuts down within 60 s")
        .unwrap()
        .unwrap();
    // Settle (bounded): a passive close is in LAST-ACK until the client's
    // last ACK crosses the path.
    let count = || {
        path.server(move || {
            census::count_by_state(
                &Filter::local_port(addr.port()).states(StateSet::all().without(TcpState::Listen)),
            )
        })
        .unwrap()
        .expect("census")
    };
    let mut counts = count();
    for _ in 0..250 {
        if counts.total() == counts.get(TcpState::TimeWait) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        counts = count();
    }
    let outcome = outcomes.lock().unwrap().pop();
    Fetched {
        body,
        outcome,
        report,
        counts,
        addr,
    }
}

/// A large `Connection: close` response of known length.
fn fetch_over(path: &NetPath, policy: Policy) -> (Vec<u8>, Outcome, census::StateCounts) {
    let route = format!("/bytes/{BODY}");
    let got = fetch(path, policy, &route, &["-H", "Connection: close"]);
    let outcome = got.outcome.expect("one teardown");
    (got.body, outcome, got.counts)
}

fn assert_demo_body(body: &[u8]) {
    assert_eq!(body.len(), BODY, "curl got {} of {BODY} bytes", body.len());
    if let Some(i) = (0..BODY).find(|&i| body[i] != http_demo::pattern(i)) {
        panic!("byte {i} differs from the demo pattern");
    }
}

/// The rate-limited path every test here crosses (`RATE`, the lab's slow
/// path's delay and buffer).
fn slow_path() -> NetPath {
    NetPath::new(PathSpec::Slow(Slow {
        rate: RATE,
        ..Slow::default()
    }))
    .expect("the slow path")
}

/// Peer-first as farewell-http serves it (with the server's drain limit).
fn server_peer_first() -> Policy {
    Policy::PeerFirst(PeerFirst {
        drain_limit: farewell_http::DEFAULT_DRAIN_LIMIT,
        ..PeerFirst::default()
    })
}

#[test]
fn peer_first_delivers_a_large_close_response_over_a_slow_path_without_server_time_wait() {
    let test =
        "peer_first_delivers_a_large_close_response_over_a_slow_path_without_server_time_wait";
    if !may_run(test) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let path = slow_path();
    eprintln!("{path}");

    let peer_first = server_peer_first();
    let (body, outcome, counts) = fetch_over(&path, peer_first);
    eprintln!("peer-first: {outcome}");
    assert_demo_body(&body);
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Peer, "{outcome}");
    assert_eq!(outcome.unacked_at_close, Some(0), "{outcome}");
    assert_eq!(
        counts.get(TcpState::TimeWait),
        0,
        "server TIME-WAIT: {counts:?}"
    );
    assert_eq!(counts.total(), 0, "server sockets left: {counts:?}");

    // The contrast, so the census above could have seen a server TIME-WAIT:
    // plain closes first once the response is written.
    let plain = Policy::Plain(Plain::default());
    let (body, outcome, counts) = fetch_over(&path, plain);
    eprintln!("plain: {outcome}");
    assert_demo_body(&body);
    assert_eq!(
        counts.get(TcpState::TimeWait),
        1,
        "plain keeps TIME-WAIT: {counts:?}"
    );
}

/// A close-delimited response (HTTP/1.0, length unknown) over the slow path:
/// the server's FIN must end it, after the body was delivered, and the
/// FIN's ACK is answered with a reset so neither side keeps TIME-WAIT. On
/// loopback the client's ACK and FIN come together; here they cross a
/// rate-limited link, so this checks the same claim over a real path.
#[test]
fn close_delimited_response_over_a_slow_path_is_whole_and_leaves_no_server_time_wait() {
    let test = "close_delimited_response_over_a_slow_path_is_whole_and_leaves_no_server_time_wait";
    if !may_run(test) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let path = slow_path();
    let peer_first = server_peer_first();
    let route = format!("/stream/{BODY}");
    let got = fetch(&path, peer_first, &route, &["--http1.0"]);
    eprintln!("{}", got.report);
    assert_demo_body(&got.body);
    assert_eq!(got.report.close_delimited, 1, "{}", got.report);
    assert_eq!(
        got.counts.get(TcpState::TimeWait),
        0,
        "server TIME-WAIT: {:?}",
        got.counts
    );
    assert_eq!(
        got.counts.total(),
        0,
        "server sockets left: {:?}",
        got.counts
    );
}

/// The send-stall timeout must not cut a client that keeps taking the
/// response, however slowly the path carries it: over a 1 Mbit/s path the
/// 768 KiB response takes about 6 s, the server's writes wait on a full
/// send buffer again and again, and a 300 ms `send_timeout` lets curl get
/// every byte. (Here the writes themselves keep progressing too, so this
/// does not isolate the ACK sampling; `tests/it/abuse.rs` does, on
/// loopback, with a reader whose writes stay blocked.)
#[test]
fn send_timeout_does_not_cut_a_client_slowed_by_the_path() {
    let test = "send_timeout_does_not_cut_a_client_slowed_by_the_path";
    if !may_run(test) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let path = slow_path();
    let peer_first = server_peer_first();
    let route = format!("/bytes/{BODY}");
    let got = fetch_with(
        &path,
        peer_first,
        &route,
        &["-H", "Connection: close"],
        |server| server.send_timeout(Some(Duration::from_millis(300))),
    );
    eprintln!("{}", got.report);
    assert_demo_body(&got.body);
    let cut = got
        .report
        .causes
        .iter()
        .any(|&(cause, _)| cause == farewell_http::Cause::SendTimeout);
    assert!(!cut, "cut by the send timeout: {}", got.report);
    let outcome = got.outcome.expect("one teardown");
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    assert_eq!(
        got.counts.total(),
        0,
        "server sockets left: {:?}",
        got.counts
    );
}

/// The wait for the client's FIN in the connection's own IO, over a path
/// with a round trip (40 ms each way, 4 Mbit/s, no loss): curl closes once
/// it has the short `Connection: close` response, and its FIN crosses the
/// path inside the wait (250 ms), so the teardown begins with the FIN in and
/// ends at once: its outcome's time is under the one-way delay, where a
/// teardown begun at the response's end spans the round trip. The census in
/// each namespace: the server keeps nothing, the client its one TIME-WAIT.
#[test]
fn a_short_close_response_over_a_delayed_path_ends_at_the_clients_fin() {
    let test = "a_short_close_response_over_a_delayed_path_ends_at_the_clients_fin";
    if let Some(why) = PathKind::Wan.unavailable() {
        farewell_lab::support::tools::skip(test, &why);
        return;
    }
    if !farewell_lab::support::tools::require(test, &["curl"]) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let delay = Duration::from_millis(40);
    let path = NetPath::new(PathSpec::Wan(Wan {
        delay,
        loss_percent: 0.0,
        rate: Some(4_000_000),
    }))
    .expect("the delayed path");
    eprintln!("{path}");
    let got = fetch(
        &path,
        server_peer_first(),
        "/",
        &["-H", "Connection: close"],
    );
    assert_eq!(got.body, http_demo::HELLO.as_bytes());
    let outcome = got.outcome.expect("one teardown");
    eprintln!("{outcome}");
    assert_eq!(outcome.ending, Ending::PeerClosed, "{outcome}");
    assert_eq!(outcome.time_wait, TimeWait::Peer, "{outcome}");
    assert!(
        outcome.elapsed < delay,
        "the teardown began with the client's FIN in: {outcome}"
    );
    assert_eq!(
        got.counts.total(),
        0,
        "server sockets left: {:?}",
        got.counts
    );
    let port = got.addr.port();
    let client = path
        .client(move || census::count_by_state(&Filter::remote_port(port)))
        .expect("in the client namespace")
        .expect("census");
    assert_eq!(
        client.get(TcpState::TimeWait),
        1,
        "the client's table: {client:?}"
    );
    assert_eq!(client.total(), 1, "the client's table: {client:?}");
}
