//! One server, on one thread, for counting what farewell-http costs per
//! request over plain hyper with `valgrind --tool=callgrind` (issue 16).
//!
//! ```text
//! overhead farewell|hyper|hyper-passive|axum|farewell-axum PORT
//! ```
//!
//! `hyper-passive` is plain hyper that, for a `Connection: close`, sends no
//! FIN and closes after the client's
//! (`farewell_lab::support::http_baseline::Baseline::PassiveClose`): the one
//! event peer-first adds to a close, without the rest of farewell-http.
//!
//! `axum` and `farewell-axum` are the switch issue 25 is about: the same
//! axum `Router` (one route, `GET /`, the demo's body) under `axum::serve`
//! and under `farewell_http::serve`, with graceful shutdown on both. An
//! axum router puts its own extensions on every request (the matched
//! path), so this pair counts what farewell-http adds for an axum user.
//!
//! Serves the demo handler (`farewell_lab::support::http_demo::handle`, the
//! handler behind `farewell serve-http`) on `127.0.0.1:PORT` with either
//! farewell-http (default settings, peer-first) or plain hyper-util
//! (`farewell_lab::support::http_baseline`), in a task on a current-thread
//! runtime so every instruction is the server's one thread
//! (`OVERHEAD_WORKERS=N`: a multi-thread runtime with N workers, as
//! `farewell bench http` runs the servers). It prints `ready ADDRESS` once
//! listening (PORT 0: a port the kernel picks) and stops on SIGTERM or SIGINT (callgrind then writes its
//! profile). Drive it from outside valgrind with a client that sends a
//! known number of requests: `overhead.py` next to this file does it for
//! both servers and both modes (keep-alive, `Connection: close`) and prints
//! instructions per request:
//!
//! ```text
//! cargo build --release -p farewell-http --example overhead
//! python3 crates/farewell-http/examples/overhead.py target/release/examples/overhead /tmp/overhead
//! callgrind_annotate /tmp/overhead/cg.farewell.keepalive.1300
//! ```
//!
//! `farewell bench overhead` runs the same measurement (and a wrk keep-alive
//! rate, side by side) with this binary, found next to the `farewell` one.

use std::time::Duration;

use farewell_lab::support::{http_baseline, http_demo};
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(server), Some(port)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: overhead farewell|hyper|hyper-timeouts|hyper-passive|axum|farewell-axum PORT"
        );
        std::process::exit(2);
    };
    let port: u16 = port.parse().unwrap_or_else(|_| {
        eprintln!("overhead: PORT must be a number, got {port:?}");
        std::process::exit(2);
    });
    // OVERHEAD_WORKERS=N: a multi-thread runtime with N workers, the server
    // in a spawned task (as `farewell bench http` runs it), to count what the
    // scheduler's wakeups and searches cost too.
    let workers: usize = std::env::var("OVERHEAD_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // OVERHEAD_HEAVY_CLIENT_THRESHOLD=N: farewell-http's heavy-client
    // threshold (0: every client heavy, reset after its FIN; 4294967295:
    // none, the passive close after it).
    let heavy_client_threshold: Option<u32> = std::env::var("OVERHEAD_HEAVY_CLIENT_THRESHOLD")
        .ok()
        .map(|n| {
            n.parse().unwrap_or_else(|_| {
                eprintln!("overhead: OVERHEAD_HEAVY_CLIENT_THRESHOLD must be a number, got {n:?}");
                std::process::exit(2);
            })
        });
    let runtime = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    }
    .enable_all()
    .build()
    .expect("a tokio runtime");
    let handle = runtime.handle().clone();
    runtime
        .block_on(handle.spawn(async move {
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap_or_else(|e| {
                    eprintln!("overhead: cannot listen on 127.0.0.1:{port}: {e}");
                    std::process::exit(1);
                });
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let stop = async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            };
            // The address actually bound (PORT 0: one the kernel chose).
            let addr = listener
                .local_addr()
                .expect("a bound listener has an address");
            println!("ready {addr}");
            let service = service_fn(http_demo::handle);
            match server.as_str() {
                "farewell" => {
                    let mut server = farewell_http::Server::new();
                    if let Some(threshold) = heavy_client_threshold {
                        server = server.heavy_client_threshold(threshold);
                    }
                    let report = server
                        .shutdown_timeout(Duration::from_secs(2))
                        .serve_hyper(listener, service, stop)
                        .await
                        .expect("serve");
                    eprintln!("{report}");
                }
                "hyper" | "hyper-timeouts" | "hyper-passive" => {
                    let baseline = match server.as_str() {
                        "hyper" => http_baseline::Baseline::Plain,
                        "hyper-timeouts" => http_baseline::Baseline::HeaderReadTimeout,
                        _ => http_baseline::Baseline::PassiveClose,
                    };
                    let timeout = Duration::from_secs(2);
                    let n =
                        http_baseline::serve_as(baseline, listener, service, stop, timeout).await;
                    eprintln!("{n} connections");
                }
                "axum" => {
                    axum::serve(listener, router())
                        .with_graceful_shutdown(stop)
                        .await
                        .expect("axum::serve");
                }
                "farewell-axum" => {
                    let mut server = farewell_http::Server::new();
                    if let Some(threshold) = heavy_client_threshold {
                        server = server.heavy_client_threshold(threshold);
                    }
                    farewell_http::serve(listener, router())
                        .with_server(server)
                        .with_graceful_shutdown(stop)
                        .await
                        .expect("farewell_http::serve");
                }
                other => {
                    eprintln!(
                        "overhead: the server is farewell, hyper, hyper-timeouts, \
                         hyper-passive, axum or farewell-axum, not {other:?}"
                    );
                    std::process::exit(2);
                }
            }
        }))
        .expect("the server task");
}

/// The axum pair's app: one route answering the demo's body, as an axum
/// user would write it.
fn router() -> axum::Router {
    async fn hello() -> &'static str {
        http_demo::HELLO
    }
    axum::Router::new().route("/", axum::routing::get(hello))
}
