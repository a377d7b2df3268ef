//! `farewell serve-http`: a tiny HTTP server (farewell-http) for trying and benchmarking teardowns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use farewell::{PeerTimeWait, Policy};
use farewell_http::Server;
use farewell_lab::support::tls;

use super::deadlines::DeadlineArgs;
use crate::duration::parse_duration;

pub const SERVE_HTTP_HELP: &str = "\
Serve HTTP/1.1 and HTTP/2 (hyper) on a TCP port and end connections with a teardown policy.

With the default policy, peer-first, the server never sends the first FIN: after the last
response (`Connection: close`, --max-requests, or shutdown) it delivers the response while
the client keeps ACKing it (--stall-timeout without progress, --delivery-timeout in all),
then waits up to --grace for the client's FIN; a client that does not close is reset once
the response is ACKed (\"Teardown deadlines\" below says what each policy does with each). Idle
HTTP/1.1 keep-alive connections (--idle-timeout) are reset once everything written is
ACKed; h2 connections get a GOAWAY. --policy plain behaves like plain hyper (the server
keeps TIME-WAIT).

Who keeps TIME-WAIT when the client closes (--peer-time-wait): with `auto` (the default)
a light client gets the passive close and keeps it; a heavy client, one address that
ended more than --heavy-client-threshold connections with us in the last minute (nginx or
a load balancer in front, wrk, a NAT), is reset once everything is ACKed, so that nobody
keeps it and its ephemeral ports toward us do not run out. `keep`: every client keeps it.
`spare`: nobody does (a server that only ever sits behind a proxy). A client that
half-closed before its last response (`nc -N`) always gets the passive close.

An HTTP/1.0 client without keep-alive (ab, lynx, a raw reader) reads until the server
closes: it gets the response, then the server's FIN at once, reset by the kernel when the
FIN is ACKed, so it sees end of file and nobody keeps TIME-WAIT.

Abuse bounds: a request head must be complete --header-read-timeout after its first byte;
a request body read waits at most --body-read-timeout for a byte; a response that makes no
progress (nothing written, nothing ACKed) for --send-timeout is reset. A cut client is owed
nothing: reset (after what was written is ACKed, for a read timeout), no TIME-WAIT on the
server. Memory per connection: --max-buf-size (HTTP/1.1), --h2-max-concurrent-streams x
--h2-max-send-buf-size (h2). An h2 connection asked to end (GOAWAY) that then sits with
nothing in flight is ended after --grace (at least 1s), even if it ignores GOAWAY and PING.

Routes: GET / (a short greeting), GET /bytes/N (N bytes of a-z repeating, Content-Length,
generated as the client takes them), GET /sleep/MS (answers after MS ms),
GET /stream/N (the same bytes streamed with no length: chunked to HTTP/1.1 clients,
close-delimited to HTTP/1.0 clients, whose body then ends with the server's FIN, reset by
the kernel once ACKed: no TIME-WAIT), POST /upload (read and counted up to 64 KiB; a larger Content-Length gets an early 413
and the unread body is drained), GET /ws (a WebSocket echo, messages up to 1 MiB; at shutdown
it sends close 1001; after the close handshake the server closes TCP with a FIN reset by the
kernel once ACKed: no TIME-WAIT; a WebSocket that moves no byte for --upgrade-idle-timeout
is reset), anything else 404.

TLS: --tls-cert FILE --tls-key FILE (PEM; the chain leaf first; a PKCS #8, PKCS #1 or SEC1
key), or --tls-self-signed to try it without files: a certificate for localhost, 127.0.0.1
and ::1 made at start, its SHA-256 fingerprint printed on stderr and the certificate written
to a file for `curl --cacert FILE` (the path is printed; the file is removed at exit). ALPN
offers h2 and http/1.1. A connection ends inside TLS: the last response, then close_notify
with no FIN, then the policy (the client closes first, or is reset once all is ACKed). A
handshake that fails or outlasts --tls-handshake-timeout ends the same way.

--metrics ADDR serves Prometheus text at http://ADDR/metrics, live: connections accepted
(farewell_http_connections_accepted_total) and open (farewell_http_connections_open),
requests (farewell_http_requests_total), teardowns by ending and by who keeps TIME-WAIT
(farewell_http_teardowns_total), connections by cause (farewell_http_connections_ended_total),
close-delimited endings, failed TLS handshakes. With port 0 a free port is picked; read it
from the `metrics on` line, printed after the `listening on` line.

Prints `listening on ADDR (policy P)` to stderr once bound (so --listen 127.0.0.1:0 works;
P is the policy with its effective deadlines). On SIGTERM
or Ctrl-C: stops accepting, lets every connection finish (at most --drain-timeout, then the
laggards are reset), and prints one summary line to stderr: connections, requests, and how
each teardown ended (farewell paths, e.g. peer-closed 40, reset-after-grace 2). Exit 0.";

#[derive(Args, Debug)]
pub struct ServeHttpArgs {
    /// Address to listen on (IPv4 or IPv6).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Teardown policy.
    #[arg(long, default_value = "peer-first", value_parser = clap::builder::PossibleValuesParser::new(Policy::NAMES))]
    policy: String,
    #[command(flatten)]
    deadlines: DeadlineArgs,
    /// Peer-first: who keeps TIME-WAIT when a client closes after its last response
    /// (auto: light clients keep it, heavy ones are reset; keep; spare: nobody).
    #[arg(long, default_value = "auto", value_parser = clap::builder::PossibleValuesParser::new(PeerTimeWait::NAMES))]
    peer_time_wait: String,
    /// With --peer-time-wait auto: a client address that ended more than this many
    /// connections in the last minute is heavy.
    #[arg(long, default_value_t = farewell::DEFAULT_HEAVY_CLIENT_THRESHOLD)]
    heavy_client_threshold: u32,
    /// End a keep-alive connection after this long with no request in flight and no bytes moving.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// End an upgraded connection (a WebSocket) after this long with no bytes moving either way.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    upgrade_idle_timeout: Duration,
    /// Requests per connection; the last response carries `Connection: close` (h2: GOAWAY).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_requests: Option<u64>,
    /// At shutdown, how long connections have to finish before the laggards are reset.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Serve TLS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve TLS with a self-signed certificate made at start (prints its fingerprint and a file for curl --cacert).
    #[arg(long)]
    tls_self_signed: bool,
    /// How long a client has to complete the TLS handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    tls_handshake_timeout: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0 picks a free one; the
    /// bound address is printed as `metrics on http://ADDR/metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Cut a client whose request head is not complete this long after its first byte (slowloris; a trickle does not restart it). 0: off.
    #[arg(long, default_value = "30s", value_parser = parse_bound)]
    header_read_timeout: Duration,
    /// Cut a client whose request body sends no byte for this long while it is read. 0: off.
    #[arg(long, default_value = "60s", value_parser = parse_bound)]
    body_read_timeout: Duration,
    /// Reset a client that takes none of a response (no byte written, none ACKed) for this
    /// long; a slow reader is not cut, as long as it moves something within it. How low it
    /// may go: a client that reads R bytes/s with a B-byte receive buffer may ACK nothing
    /// new for about B/R seconds (its window reopens only once it read about half of it),
    /// so keep it above that for the slowest client to be served (60 s: a 4 KiB buffer
    /// read at 70 B/s; 3 s cuts one read at 670 B/s). Also bounds upgraded connections. 0: off.
    #[arg(long, default_value = "60s", value_parser = parse_bound)]
    send_timeout: Duration,
    /// HTTP/1.1 read and write buffer bound per connection, in bytes (a larger request head gets 431).
    #[arg(long, default_value_t = farewell_http::DEFAULT_MAX_BUF_SIZE, value_parser = clap::value_parser!(usize))]
    max_buf_size: usize,
    /// h2 streams open at once per connection.
    #[arg(long, default_value_t = farewell_http::DEFAULT_H2_MAX_CONCURRENT_STREAMS, value_parser = clap::value_parser!(u32).range(1..))]
    h2_max_concurrent_streams: u32,
    /// Bytes an h2 stream buffers while the client grants no window.
    #[arg(long, default_value_t = farewell_http::DEFAULT_H2_MAX_SEND_BUF_SIZE, value_parser = clap::value_parser!(usize))]
    h2_max_send_buf_size: usize,
    /// Connections served at once; more get a 503 (one non-blocking write; over TLS
    /// nothing) and a reset at accept (no TIME-WAIT). Default: 10000, or half of what
    /// `ulimit -n` leaves after 64 reserved descriptors, whichever is less.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_connections: Option<u64>,
}

/// A timeout flag: a duration, or 0 for none.
fn parse_bound(s: &str) -> Result<Duration, String> {
    crate::duration::parse_duration_in(s, Duration::ZERO, crate::duration::MAX)
}

/// A zero timeout flag turns the bound off.
fn bound(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The TLS setup of a run: the server configuration, and the certificate
/// file written for clients (removed at exit).
struct Tls {
    config: farewell_http::rustls::ServerConfig,
    /// The self-signed certificate's file and SHA-256 fingerprint.
    written: Option<(CertFile, String)>,
}

/// A certificate file this run wrote; removed when dropped.
struct CertFile(PathBuf);

impl Drop for CertFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Loads the PEM files, or makes the self-signed certificate; `None` for plain TCP.
fn tls_setup(args: &ServeHttpArgs) -> anyhow::Result<Option<Tls>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let config = tls::load_pem(cert, key).context(
            "cannot use --tls-cert/--tls-key; are they the PEM certificate and its key?",
        )?;
        return Ok(Some(Tls {
            config,
            written: None,
        }));
    }
    if !args.tls_self_signed {
        return Ok(None);
    }
    let made = tls::SelfSigned::localhost();
    let dir = std::env::temp_dir().join(format!("farewell-serve-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join("cert.pem");
    std::fs::write(&file, &made.cert_pem)
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(Some(Tls {
        config: made.server_config(),
        written: Some((CertFile(file), made.fingerprint_sha256())),
    }))
}

/// The policy named `name` with the server's drain limit (so early answers
/// drain the unread body, [`farewell_http::DEFAULT_DRAIN_LIMIT`]) and the
/// deadlines given.
pub fn http_policy(name: &str, deadlines: &DeadlineArgs) -> anyhow::Result<Policy> {
    let policy: Policy = name.parse()?;
    let policy = match policy {
        Policy::PeerFirst(p) => Policy::PeerFirst(farewell::PeerFirst {
            drain_limit: farewell_http::DEFAULT_DRAIN_LIMIT,
            ..p
        }),
        other => other,
    };
    deadlines.apply(policy)
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(args: ServeHttpArgs) -> anyhow::Result<()> {
    // Warnings (accept failures, one per burst) must reach stderr.
    super::serve::install_tracing(0);
    let policy = http_policy(&args.policy, &args.deadlines)?;
    let tls = tls_setup(&args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}; is the port in use?", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("listening on {addr} (policy {policy:#})");
        if let Some(metrics) = args.metrics {
            let bound = crate::cmd::serve::install_metrics(metrics).await?;
            eprintln!("metrics on http://{bound}/metrics");
        }
        let mut server = Server::new();
        if let Some(tls) = &tls {
            if let Some((CertFile(file), fingerprint)) = &tls.written {
                eprintln!("TLS: self-signed certificate, SHA-256 fingerprint {fingerprint}");
                eprintln!("TLS: certificate for clients in {}", file.display());
                eprintln!(
                    "TLS: try curl --cacert {} https://localhost:{}/",
                    file.display(),
                    addr.port()
                );
            }
            server = server
                .tls(Arc::new(tls.config.clone()))
                .tls_handshake_timeout(args.tls_handshake_timeout);
        }
        if let Some(max) = args.max_connections {
            server = server.max_connections(usize::try_from(max).unwrap_or(usize::MAX));
        }
        // The WebSocket echo's close 1001 at shutdown: one handle, cloned per
        // request (no allocation), not an extension in every request.
        let shutdown = server.shutdown_handle();
        let service = hyper::service::service_fn(move |request| {
            farewell_lab::support::http_demo::handle_with(request, Some(shutdown.clone()))
        });
        let report = server
            .policy(policy)
            .peer_time_wait(args.peer_time_wait.parse()?)
            .heavy_client_threshold(args.heavy_client_threshold)
            .idle_timeout(args.idle_timeout)
            .upgrade_idle_timeout(args.upgrade_idle_timeout)
            .max_requests_per_connection(args.max_requests)
            .shutdown_timeout(args.drain_timeout)
            .header_read_timeout(bound(args.header_read_timeout))
            .body_read_timeout(bound(args.body_read_timeout))
            .send_timeout(bound(args.send_timeout))
            .max_buf_size(args.max_buf_size)
            .h2_max_concurrent_streams(args.h2_max_concurrent_streams)
            .h2_max_send_buf_size(args.h2_max_send_buf_size)
            .serve_hyper(listener, service, shutdown_signal())
            .await?;
        eprintln!("shut down: {report}");
        Ok(())
    })
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    eprintln!("shutting down");
}
