//! `farewell serve`: the reference server, speaking FLP/1 under the supervisor.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use farewell::{PeerTimeWait, Policy};
use farewell_server::flp::Flp;
use farewell_server::{BusyMode, ServerConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::{TcpListener, TcpSocket};

use super::deadlines::DeadlineArgs;
use crate::duration::parse_duration;

pub const SERVE_HELP: &str = "\
Serve FLP/1, the line protocol of farewell, and end every connection the right way.

FLP/1: lines end in \\n and are at most --max-line bytes long. The client sends
`HELLO <id>` within --handshake-timeout and gets `WELCOME <id>`; after that every line is
echoed back; `QUIT` ends the session. The server's goodbye is the line `BYE <reason>`:
quit, handshake-timeout, bad-handshake, idle, line-too-long, shutdown or busy. After it
the server sends nothing more and tears the connection down with --policy, within its
deadlines (--grace, --stall-timeout, --delivery-timeout: what each policy does with each is
under \"Teardown deadlines\" below); a cooperative
client closes when it reads BYE, and then keeps the TIME-WAIT entry itself: unless it is
a heavy client (--peer-time-wait auto: more than --heavy-client-threshold connections from
its address ended in the last minute), which is reset once BYE is ACKed and its FIN is in,
so that nobody keeps TIME-WAIT. A client that half-closed before BYE always gets its EOF.

Try it:  farewell serve   then, in another terminal:  nc 127.0.0.1 7878   and type
HELLO me, a line or two, QUIT.

On start the real bound address goes to stderr as `listening on ADDR (policy P)`, P
being the policy with its effective deadlines (and, with
--metrics, `metrics on http://ADDR/metrics`). SIGTERM or Ctrl-C stops accepting, says
`BYE shutdown` to every connection, tears them down in parallel within --drain-timeout
(at that deadline, teardowns still waiting for their peer are reset after one check that
the goodbye was ACKed, counted as reset-at-deadline), prints one summary line on stderr (connections, goodbyes by reason, teardowns by outcome
path) and exits 0.

Logs go to stderr: warnings and a periodic summary by default, one line per goodbye and
per teardown with -v, everything with -vv; RUST_LOG overrides (e.g. RUST_LOG=farewell=debug).
--metrics ADDR serves Prometheus text at http://ADDR/metrics: farewell_goodbyes_total by
reason, farewell_teardowns_total by path, farewell_connections_open/closing,
farewell_teardown_seconds, farewell_accept_errors_total. With port 0 (e.g. --metrics
127.0.0.1:0) a free port is picked; read it from the `metrics on` line. Scrapes are
served by farewell-http, so they end peer-first too: no server TIME-WAIT per scrape. The
endpoint serves at most 16 connections at once (more are reset at accept) and ends one
idle for 5 s, so a flood on it cannot take descriptors from the FLP service.";

/// How connections beyond --max-connections are shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Busy {
    /// `BYE busy`, then --busy-grace for the peer to close, then reset.
    Goodbye,
    /// Reset at once.
    Reset,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (IPv4 or IPv6, e.g. [::1]:7878; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Teardown policy after a goodbye.
    #[arg(long, default_value = "peer-first", value_parser = clap::builder::TypedValueParser::try_map(clap::builder::PossibleValuesParser::new(Policy::NAMES), |s: String| parse_policy(&s)))]
    policy: Policy,
    #[command(flatten)]
    deadlines: DeadlineArgs,
    /// Peer-first: who keeps TIME-WAIT when a client closes after BYE (auto: light
    /// clients keep it, heavy ones are reset once BYE is ACKed; keep; spare: nobody).
    #[arg(long, default_value = "auto", value_parser = clap::builder::PossibleValuesParser::new(PeerTimeWait::NAMES))]
    peer_time_wait: String,
    /// With --peer-time-wait auto: a client address that ended more than this many
    /// connections in the last minute is heavy.
    #[arg(long, default_value_t = farewell::DEFAULT_HEAVY_CLIENT_THRESHOLD)]
    heavy_client_threshold: u32,
    /// Time from accept to a complete HELLO.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// Longest silence from a client after the handshake.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Longest time from a line's first byte to its newline (a client trickling bytes gets `BYE idle`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    line_timeout: Duration,
    /// End every connection this long after accept, with `BYE shutdown` (default: never).
    #[arg(long, value_parser = parse_duration)]
    max_lifetime: Option<Duration>,
    /// How long a reply may wait for a client that does not read, then `BYE idle`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    send_timeout: Duration,
    /// Connections served at once; more are shed (see --busy). Default: 10000, or half of what
    /// `ulimit -n` leaves after 64 reserved descriptors, whichever is less.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_connections: Option<u64>,
    /// How connections beyond --max-connections are shed.
    #[arg(long, value_enum, default_value_t = Busy::Goodbye)]
    busy: Busy,
    /// With --busy goodbye: the grace of a shed client (how long it has to close once
    /// `BYE busy` is ACKed), and its stall timeout too: one that takes nothing for this
    /// long is reset as well.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    busy_grace: Duration,
    /// Longest line in bytes, \n included.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(2..=16 * 1024 * 1024))]
    max_line: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0 picks a free one; the
    /// bound address is printed as `metrics on http://ADDR/metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// On shutdown: the hard deadline for every goodbye and teardown.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// How often the info-level summary is logged.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    summary_every: Duration,
    /// More logs: -v one line per goodbye and teardown, -vv everything.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse::<Policy>().map_err(|e| e.to_string())
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    install_tracing(args.verbose);
    let config = ServerConfig {
        policy: args
            .deadlines
            .apply(args.policy)?
            .with_peer_time_wait(args.peer_time_wait.parse()?),
        heavy_client_threshold: args.heavy_client_threshold,
        handshake_timeout: args.handshake_timeout,
        idle_timeout: args.idle_timeout,
        line_timeout: args.line_timeout,
        max_lifetime: args.max_lifetime,
        max_line: args.max_line as usize,
        max_connections: args
            .max_connections
            .map_or_else(farewell_server::default_max_connections, |n| n as usize),
        busy: match args.busy {
            Busy::Goodbye => BusyMode::Goodbye {
                grace: args.busy_grace,
            },
            Busy::Reset => BusyMode::Reset,
        },
        send_timeout: args.send_timeout,
        drain_timeout: args.drain_timeout,
        summary_interval: Some(args.summary_every),
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let summary = runtime.block_on(async {
        if let Some(addr) = args.metrics {
            let bound = install_metrics(addr).await?;
            eprintln!("metrics on http://{bound}/metrics");
        }
        let listener = bind(args.listen).with_context(|| {
            format!(
                "cannot listen on {}\nhint: is another server using it? try another --listen, \
                 e.g. 127.0.0.1:0 for a free port",
                args.listen
            )
        })?;
        let addr = listener.local_addr().context("reading the bound address")?;
        eprintln!("listening on {addr} (policy {:#})", config.policy);
        let shutdown = shutdown_signal().context("installing the SIGTERM handler")?;
        anyhow::Ok(farewell_server::serve(listener, Flp, config, shutdown).await)
    })?;
    eprintln!("farewell serve: {summary}");
    // serve() hurried every teardown at the drain deadline (reset-at-deadline);
    // only one stuck past that bound would still end with the runtime, plainly.
    runtime.shutdown_background();
    Ok(())
}

/// Binds with a backlog that holds a burst of connects (the kernel caps it at somaxconn).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Completes on the first SIGTERM or Ctrl-C (SIGINT).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        eprintln!("{name}: shutting down");
    })
}

/// Logs to stderr: warnings and farewell's info lines by default, more with
/// `-v`/`-vv`; `RUST_LOG` overrides. Also used by `serve-http`.
pub(crate) fn install_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,farewell=info",
        1 => "warn,farewell=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Connections the metrics endpoint serves at once.
const METRICS_MAX_CONNECTIONS: usize = 16;

/// How long a metrics connection may sit with no request in flight.
const METRICS_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder and serves its text on `addr` at
/// `/metrics` (`/health` answers `OK`); returns the bound address, the real port when
/// `addr` has port 0.
///
/// The exporter's own HTTP listener binds inside `build()` and never tells
/// its address, so we bind, and serve the recorder's rendering with
/// farewell-http (peer-first: a scraper that closes leaves no TIME-WAIT here).
///
/// A scraper needs one connection and a few requests a minute, so the
/// endpoint is held small: [`METRICS_MAX_CONNECTIONS`] at once (the surplus
/// is reset at accept) and [`METRICS_IDLE_TIMEOUT`]. A flood of idle or slow
/// connections on it then holds at most that many descriptors, and the FLP
/// service keeps the rest (a partial request head is cut after
/// [`METRICS_IDLE_TIMEOUT`] too).
pub(crate) async fn install_metrics(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot serve metrics on {addr}\nhint: pick a free address for --metrics, \
             e.g. 127.0.0.1:0 for a free port"
        )
    })?;
    let bound = listener
        .local_addr()
        .context("reading the metrics address")?;
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(farewell_server::metrics::TEARDOWN_SECONDS.into()),
            &[0.001, 0.01, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0],
        )
        .context("configuring the metrics exporter")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    tokio::spawn(upkeep(handle.clone()));
    let service = hyper::service::service_fn(move |request| scrape(handle.clone(), request));
    tokio::spawn(async move {
        // The endpoint's own connections stay out of the farewell_http_* series.
        let served = farewell_http::Server::new()
            .metrics(false)
            .max_connections(METRICS_MAX_CONNECTIONS)
            .idle_timeout(METRICS_IDLE_TIMEOUT)
            .header_read_timeout(Some(METRICS_IDLE_TIMEOUT))
            .serve_hyper(listener, service, std::future::pending::<()>())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}

/// What `PrometheusBuilder::build` would run: drain histogram samples every 5 s.
async fn upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// One request to the metrics endpoint: `GET /metrics` (or `HEAD`) is the
/// Prometheus text format, rendered off the runtime threads; `GET /health`
/// is `OK`; any other path is 404 and any other method 405, so the endpoint
/// does not answer `POST`, `CONNECT` or a scanner's paths with 200.
async fn scrape<B>(
    handle: PrometheusHandle,
    request: hyper::Request<B>,
) -> Result<hyper::Response<String>, std::convert::Infallible> {
    use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
    use hyper::{Method, StatusCode};
    let plain = |status: StatusCode, body: &str| {
        let mut response = hyper::Response::new(body.to_owned());
        *response.status_mut() = status;
        response
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let rendered = match request.uri().path() {
        "/health" => Ok("OK".to_owned()),
        "/metrics" => tokio::task::spawn_blocking(move || handle.render()).await,
        _ => {
            return Ok(plain(
                StatusCode::NOT_FOUND,
                "not found: the metrics are at /metrics\n",
            ))
        }
    };
    let mut response = match rendered {
        Ok(body) => hyper::Response::new(body),
        Err(e) => {
            tracing::warn!(error = %e, "rendering the metrics failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the metrics failed\n",
            )
        }
    };
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(response)
}
