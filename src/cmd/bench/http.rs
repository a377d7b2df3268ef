//! `farewell bench http`: wrk and a many-sources client against farewell-http,
//! plain hyper and nginx, on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::duration::parse_duration_in;
use farewell_lab::bench::churn::clear_time_wait;
use farewell_lab::bench::clients::SourceAddrs;
use farewell_lab::bench::cpu::ThreadCpu;
use farewell_lab::bench::http_clients::{self, HttpErrors, HttpLoad};

pub const HTTP_HELP: &str = "\
Benchmark farewell-http against plain hyper (and nginx, if installed) with wrk, and with a
client of our own that models many client hosts.

Each run starts a fresh server on its own loopback port (so the TIME-WAIT count is that run's
alone): farewell-http with peer-first, plain hyper-util with the same handler (GET / answers
`hello from farewell-http`), and nginx with a generated config (temp dir, its own pid and log
files, `return 200` with the same body; killed after). Runs are interleaved (A B C A B C ...)
in three modes:
  close         wrk -H 'Connection: close': every request a new connection
  close-spread  the same requests from our own closed-loop client (--connections clients on
                --threads threads of their own, like wrk), each connection from its own
                source address 127.1.x.y (IP_BIND_ADDRESS_NO_PORT); it checks every response
                is a 200 with the expected body
  keep-alive    wrk, connections reused

Why close-spread: peer-first never sends the first FIN, so the CLIENT keeps TIME-WAIT (that is
the design: RFC 9293 section 3.5.2, after Faber, Touch and Yue). wrk is one process on one
source address to one server address; in close mode it soon holds ~15k TIME-WAIT entries of
its own on its ~28k ephemeral ports, and every connect() searches past them for a usable
port, so wrk, not the server, runs out of CPU. Plain hyper and nginx send the first FIN and
keep TIME-WAIT themselves, so wrk never pays that there. Real clients are many hosts, each
holding a few entries: close-spread models that, so its row compares the servers without the
single-source client's cost. The `client TW` column shows where TIME-WAIT went.

Columns:
  server       farewell-http, hyper (plain hyper-util), nginx
  mode         close, close-spread or keep-alive (above)
  req/s        responses per second (wrk's Requests/sec in the wrk modes), mean over rounds
  vs hyper     req/s divided by plain hyper's in the same mode
  CPU µs/r     the in-process server's threads' CPU time per response (- for nginx, another
               process); loopback's kernel work is charged partly to the client's threads,
               so compare rows, not absolute costs
  server TW    TIME-WAIT entries on the server's port after the run (census, sock_diag),
               mean over the rounds
  client TW    TIME-WAIT entries whose remote port is the server's port, i.e. the clients'
               (wrk's, or all 127.1.x.y sources'), mean over the rounds
  errors       wrk socket errors + non-2xx responses; close-spread: failed connects,
               timeouts, resets and bad responses; summed over the rounds

With CAP_NET_ADMIN both sides' TIME-WAIT entries are removed (SOCK_DESTROY) after they are
counted, so no run inherits a full TIME-WAIT table (tcp_max_tw_buckets) from the one before;
a close-spread run also stops after 3/4 of tcp_max_tw_buckets connections (its rate is taken
over the time it ran). If the table overflows during a run anyway, a note under the table says
so (the TW columns are capped there).

Needs wrk (`apt-get install wrk`) for the wrk modes. --modes picks modes (default all three).
--quick runs short, small loads (for tests); --json prints one object with every run and the
summary rows.";

#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Length of each run (wrk and close-spread).
    #[arg(long, default_value = "5s", value_parser = |s: &str| parse_duration_in(s, Duration::from_secs(1), Duration::from_secs(60)))]
    duration: Duration,
    /// Connections at once: wrk -c, and the close-spread clients.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,
    /// Client threads: wrk -t, and the close-spread clients' own runtime.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    threads: u32,
    /// Rounds of interleaved runs per mode.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// Short runs for tests: 1 thread, 4 connections, 1 round, at most 1s and 300 responses per run
    /// (per mode).
    #[arg(long)]
    quick: bool,
    /// Modes to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Mode::ALL)]
    modes: Vec<Mode>,
    /// Leave nginx out even if installed.
    #[arg(long)]
    no_nginx: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Target {
    FarewellHttp,
    Hyper,
    Nginx,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::FarewellHttp => "farewell-http",
            Target::Hyper => "hyper",
            Target::Nginx => "nginx",
        }
    }
}

/// How the load runs; the order is the table's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// wrk with `Connection: close`.
    Close,
    /// Our client with `Connection: close`, every connection from its own source address.
    CloseSpread,
    /// wrk with keep-alive.
    KeepAlive,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Close, Mode::CloseSpread, Mode::KeepAlive];

    fn name(self) -> &'static str {
        match self {
            Mode::Close => "close",
            Mode::CloseSpread => "close-spread",
            Mode::KeepAlive => "keep-alive",
        }
    }

    fn uses_wrk(self) -> bool {
        self != Mode::CloseSpread
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One load run (wrk or our clients) against one server.
#[derive(Debug, Serialize)]
struct Run {
    server: Target,
    mode: Mode,
    round: u32,
    requests: u64,
    requests_per_sec: f64,
    errors: u64,
    /// close-spread only: the errors by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kinds: Option<HttpErrors>,
    /// In-process servers' threads' CPU time (user + system) per response, in
    /// microseconds; `None` for nginx (another process). Kernel work that
    /// loopback does in the sending thread's context is charged to the sender.
    server_cpu_us_per_request: Option<f64>,
    server_time_wait: usize,
    /// TIME-WAIT entries whose remote port is the server's: the clients'.
    client_time_wait: usize,
    /// TIME-WAIT entries the kernel could not create during the run
    /// (`TCPTimeWaitOverflow`: its table, `tcp_max_tw_buckets`, was full); the
    /// TW counts are capped when this is not 0. `None`: the counter is unreadable.
    time_wait_overflow: Option<u64>,
}

/// The summary of one server in one mode.
#[derive(Debug, Serialize)]
struct Row {
    server: Target,
    mode: Mode,
    requests_per_sec: f64,
    ratio_to_hyper: Option<f64>,
    server_cpu_us_per_request: Option<f64>,
    server_time_wait: f64,
    client_time_wait: f64,
    errors: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    wrk: WrkSettings,
    /// How the close-spread clients ran (null when that mode did not run).
    spread: Option<SpreadSettings>,
    rows: Vec<Row>,
    runs: Vec<Run>,
}

/// The close-spread clients' settings.
#[derive(Clone, Copy, Debug, Serialize)]
struct SpreadSettings {
    /// Worker threads of the clients' own runtime.
    threads: u32,
    /// Clients running at once.
    connections: u32,
    duration_s: f64,
    /// Distinct source addresses used in turn (127.1.x.y), one per connection.
    source_addresses: u64,
    /// --quick: the run stops after this many requests in all.
    max_requests: Option<u64>,
}

#[derive(Clone, Copy, Debug, Serialize)]
struct WrkSettings {
    threads: u32,
    connections: u32,
    duration_s: f64,
    rounds: u32,
    /// --quick: each wrk thread stops after this many responses.
    max_responses_per_thread: Option<u32>,
}

/// A wrk Lua script that stops each thread after `max` responses; removed on drop.
struct WrkScript {
    path: PathBuf,
}

impl WrkScript {
    fn new(max: u32) -> anyhow::Result<WrkScript> {
        let path = std::env::temp_dir().join(format!(
            "farewell-bench-wrk-{}-{max}.lua",
            std::process::id()
        ));
        std::fs::write(
            &path,
            format!(
                "local n = 0\nfunction response(status, headers, body)\n  n = n + 1\n  \
                 if n >= {max} then wrk.thread:stop() end\nend\n"
            ),
        )?;
        Ok(WrkScript { path })
    }
}

impl Drop for WrkScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs the benchmark and prints the report.
pub fn run(args: HttpArgs) -> anyhow::Result<()> {
    let wrk = if args.quick {
        WrkSettings {
            threads: 1,
            connections: 4,
            duration_s: 1.0,
            rounds: 1,
            max_responses_per_thread: Some(300),
        }
    } else {
        WrkSettings {
            threads: args.threads,
            connections: args.connections,
            duration_s: args.duration.as_secs_f64(),
            rounds: args.rounds,
            max_responses_per_thread: None,
        }
    };
    let modes: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| args.modes.contains(m))
        .collect();
    let spread = SpreadSettings {
        threads: wrk.threads,
        connections: wrk.connections,
        duration_s: wrk.duration_s,
        source_addresses: SourceAddrs::COUNT,
        max_requests: Some(match wrk.max_responses_per_thread {
            Some(max) => u64::from(max) * u64::from(wrk.threads),
            None => time_wait_budget(),
        }),
    };
    if modes.iter().any(|m| m.uses_wrk()) {
        check_wrk()?;
    }
    let mut targets = vec![Target::FarewellHttp, Target::Hyper];
    if !args.no_nginx && nginx_installed() {
        targets.push(Target::Nginx);
    } else if !args.no_nginx {
        eprintln!("nginx is not installed (apt-get install nginx); leaving its row out");
    }

    // The in-process servers' runtime; its threads' CPU is the servers'.
    let server_cpu = ThreadCpu::default();
    let register = server_cpu.clone();
    let server_threads = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .thread_name("bench-http-server")
        .on_thread_start(move || register.register_current())
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Every worker must be on the list before the first run reads it.
    server_cpu.wait_for_threads(server_threads, Duration::from_secs(5));
    // The close-spread clients compete for CPU as wrk does: threads of their own.
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spread.threads as usize)
        .thread_name("bench-http-clients")
        .enable_all()
        .build()
        .context("starting the clients' runtime")?;
    let load = Load {
        wrk,
        spread,
        clients: clients.handle().clone(),
        sources: SourceAddrs::default(),
        server_cpu,
    };
    let mut runs = Vec::new();
    for &mode in &modes {
        for round in 1..=wrk.rounds {
            for &target in &targets {
                eprintln!("{} {mode} round {round}/{}", target.name(), wrk.rounds);
                runs.push(runtime.block_on(run_one(target, mode, round, &load))?);
            }
        }
    }
    let report = Report {
        wrk,
        spread: modes.contains(&Mode::CloseSpread).then_some(spread),
        rows: summarise(&runs),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn check_wrk() -> anyhow::Result<()> {
    match std::process::Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("wrk is not installed; install it with `apt-get install wrk`")
        }
        Err(e) => Err(e).context("running wrk"),
    }
}

fn nginx_installed() -> bool {
    std::process::Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// What drives the load: wrk's settings, or our clients on their own runtime.
struct Load {
    wrk: WrkSettings,
    spread: SpreadSettings,
    clients: tokio::runtime::Handle,
    sources: SourceAddrs,
    /// The in-process servers' threads.
    server_cpu: ThreadCpu,
}

/// What one load run measured.
struct Measured {
    requests: u64,
    requests_per_sec: f64,
    errors: u64,
    error_kinds: Option<HttpErrors>,
}

/// Starts `target` on a fresh port, runs the load once, stops the server, and
/// counts the TIME-WAIT entries on both sides of its port.
async fn run_one(target: Target, mode: Mode, round: u32, load: &Load) -> anyhow::Result<Run> {
    let overflow_before = time_wait_overflows();
    let (measured, server, server_cpu) = match target {
        Target::Nginx => {
            let nginx = Nginx::start().await?;
            let measured = drive(nginx.addr, mode, load).await?;
            settle(nginx.addr).await;
            (measured, nginx.addr, None)
        }
        _ => {
            let cpu_before = load.server_cpu.total();
            let server = InProcess::start(target).await?;
            let addr = server.addr;
            let measured = drive(addr, mode, load).await;
            server.stop().await;
            let cpu = load
                .server_cpu
                .total()
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            settle(addr).await;
            (measured?, addr, cpu)
        }
    };
    let server_cpu_us_per_request = server_cpu
        .filter(|_| measured.requests > 0)
        .map(|cpu| cpu.as_secs_f64() * 1e6 / measured.requests as f64);
    let time_wait = |filter: Filter| -> anyhow::Result<usize> {
        Ok(
            census::count_by_state(&filter.states(StateSet::single(TcpState::TimeWait)))
                .context("reading the kernel's socket table")?
                .get(TcpState::TimeWait),
        )
    };
    let server_time_wait = time_wait(Filter::local(server))?;
    let client_time_wait = time_wait(Filter::remote(server))?;
    let time_wait_overflow = overflow_before
        .zip(time_wait_overflows())
        .map(|(before, after)| after.saturating_sub(before));
    // Counted: now neither side's entries may fill the table under the next run.
    clear_time_wait(server);
    Ok(Run {
        server: target,
        mode,
        round,
        requests: measured.requests,
        requests_per_sec: measured.requests_per_sec,
        errors: measured.errors,
        error_kinds: measured.error_kinds,
        server_cpu_us_per_request,
        server_time_wait,
        client_time_wait,
        time_wait_overflow,
    })
}

/// Runs the mode's load against `addr`: wrk, or our many-sources clients on
/// their own runtime.
async fn drive(addr: SocketAddr, mode: Mode, load: &Load) -> anyhow::Result<Measured> {
    if mode.uses_wrk() {
        let (requests, requests_per_sec, errors) = wrk_run(addr, mode, load.wrk).await?;
        return Ok(Measured {
            requests,
            requests_per_sec,
            errors,
            error_kinds: None,
        });
    }
    let spread = load.spread;
    let clients = http_clients::closed_loop(
        HttpLoad {
            server: addr,
            connections: spread.connections as usize,
            duration: Duration::from_secs_f64(spread.duration_s),
            max_requests: spread.max_requests,
        },
        load.sources.clone(),
    );
    let count = load
        .clients
        .spawn(clients)
        .await
        .context("the close-spread clients panicked")?;
    if let Some(first) = &count.first_error {
        eprintln!(
            "  {} failed requests; the first: {first}",
            count.errors.total()
        );
    }
    Ok(Measured {
        requests: count.responses,
        requests_per_sec: count.responses as f64 / count.elapsed.as_secs_f64().max(1e-9),
        errors: count.errors.total(),
        error_kinds: Some(count.errors),
    })
}

/// The kernel's count of TIME-WAIT entries it could not create because its
/// table was full (`TcpExt: TCPTimeWaitOverflow` in `/proc/net/netstat`).
/// How many connections one close-spread run may make: three quarters of the
/// kernel's TIME-WAIT table (`tcp_max_tw_buckets`), so the run ends (and its
/// rate is taken) before the table overflows and starts dropping entries,
/// which would make the side that keeps them look cheaper than it is.
fn time_wait_budget() -> u64 {
    let buckets = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_max_tw_buckets")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(131_072);
    (buckets / 4 * 3).max(1_000)
}

fn time_wait_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut tcp_ext = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (tcp_ext.next()?, tcp_ext.next()?);
    let at = names
        .split_whitespace()
        .position(|name| name == "TCPTimeWaitOverflow")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Waits (bounded, 2 s) until no connection to or from the server's address is
/// still closing (FIN-WAIT, CLOSING, LAST-ACK, …), so the census that follows
/// sees every TIME-WAIT entry the run made, on both sides.
async fn settle(server: SocketAddr) {
    let closing = StateSet::all()
        .without(TcpState::TimeWait)
        .without(TcpState::Listen);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        let busy = [Filter::local(server), Filter::remote(server)]
            .into_iter()
            .map(|f| census::count_by_state(&f.states(closing)).map_or(0, |c| c.total()))
            .sum::<usize>();
        if busy == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs wrk against `addr`; returns (requests, requests/s, errors).
async fn wrk_run(
    addr: SocketAddr,
    mode: Mode,
    wrk: WrkSettings,
) -> anyhow::Result<(u64, f64, u64)> {
    let mut command = tokio::process::Command::new("wrk");
    command
        .arg(format!("-t{}", wrk.threads))
        .arg(format!("-c{}", wrk.connections))
        .arg(format!("-d{}s", wrk.duration_s))
        .arg("--timeout")
        .arg("2s");
    if mode == Mode::Close {
        command.arg("-H").arg("Connection: close");
    }
    let _script = match wrk.max_responses_per_thread {
        Some(max) => {
            let script = WrkScript::new(max)?;
            command.arg("-s").arg(&script.path);
            Some(script)
        }
        None => None,
    };
    command
        .arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let bound = Duration::from_secs_f64(wrk.duration_s) + Duration::from_secs(15);
    let output = tokio::time::timeout(bound, command.output())
        .await
        .context("wrk ran past its duration; killed")?
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&stdout).with_context(|| format!("unexpected wrk output:\n{stdout}"))
}

/// Reads requests, Requests/sec and errors (socket errors + non-2xx/3xx) from wrk's report.
fn parse_wrk(out: &str) -> Option<(u64, f64, u64)> {
    let mut requests = None;
    let mut rate = None;
    let mut errors = 0;
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rate = rest.trim().parse().ok();
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next()?.parse().ok();
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().ok()?;
        }
    }
    Some((requests?, rate?, errors))
}

const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A listener on a port below the ephemeral range with no sockets on it, so the
/// census on it counts this server's TIME-WAIT and not that of earlier wrk clients.
fn quiet_listener() -> anyhow::Result<TcpListener> {
    let listener = farewell_lab::support::port::bind_quiet_port(LOOPBACK)?;
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener)?)
}

/// farewell-http or plain hyper, running the demo handler in this process.
struct InProcess {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl InProcess {
    async fn start(target: Target) -> anyhow::Result<InProcess> {
        let listener = quiet_listener()?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let service = hyper::service::service_fn(farewell_lab::support::http_demo::handle);
        let done = match target {
            Target::FarewellHttp => {
                let policy =
                    super::super::serve_http::http_policy("peer-first", Duration::from_secs(2))?;
                tokio::spawn(async move {
                    let server = farewell_http::Server::new()
                        .policy(policy)
                        .shutdown_timeout(Duration::from_secs(5));
                    if let Ok(report) = server.serve_hyper(listener, service, stopped).await {
                        eprintln!("  farewell-http: {report}");
                    }
                })
            }
            _ => tokio::spawn(async move {
                farewell_lab::support::http_baseline::serve(
                    listener,
                    service,
                    stopped,
                    Duration::from_secs(5),
                )
                .await;
            }),
        };
        Ok(InProcess { addr, stop, done })
    }

    /// Shuts the server down; returns once every connection (and teardown) is over.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

/// nginx started with a generated config in a temp dir; killed and cleaned up on drop.
struct Nginx {
    addr: SocketAddr,
    child: std::process::Child,
    dir: PathBuf,
}

impl Nginx {
    async fn start() -> anyhow::Result<Nginx> {
        // Find a quiet port, then hand it to nginx.
        let addr = farewell_lab::support::port::bind_quiet_port(LOOPBACK)?.local_addr()?;
        let dir = std::env::temp_dir().join(format!(
            "farewell-bench-nginx-{}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        let config = format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    listen {addr};\n    location / {{ default_type text/plain; return 200 \"{}\"; }}\n  }}\n}}\n",
            farewell_lab::support::http_demo::HELLO.replace('\n', "\\n")
        );
        std::fs::write(dir.join("nginx.conf"), config)?;
        let child = std::process::Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nginx")?;
        let mut nginx = Nginx { addr, child, dir };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(nginx);
            }
            if let Some(status) = nginx.child.try_wait()? {
                let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited at start ({status}): {log}");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        bail!("nginx did not start listening on {addr} within 3s")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn summarise(runs: &[Run]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for mode in Mode::ALL {
        for server in [Target::FarewellHttp, Target::Hyper, Target::Nginx] {
            let these: Vec<&Run> = runs
                .iter()
                .filter(|r| r.server == server && r.mode == mode)
                .collect();
            if these.is_empty() {
                continue;
            }
            let n = these.len() as f64;
            rows.push(Row {
                server,
                mode,
                requests_per_sec: these.iter().map(|r| r.requests_per_sec).sum::<f64>() / n,
                ratio_to_hyper: None,
                server_cpu_us_per_request: mean(these.iter().map(|r| r.server_cpu_us_per_request)),
                server_time_wait: these.iter().map(|r| r.server_time_wait as f64).sum::<f64>() / n,
                client_time_wait: these.iter().map(|r| r.client_time_wait as f64).sum::<f64>() / n,
                errors: these.iter().map(|r| r.errors).sum(),
            });
        }
    }
    let hyper_rate = |mode| {
        rows.iter()
            .find(|r| r.server == Target::Hyper && r.mode == mode)
            .map(|r| r.requests_per_sec)
    };
    let rates: Vec<Option<f64>> = rows.iter().map(|r| hyper_rate(r.mode)).collect();
    for (row, base) in rows.iter_mut().zip(rates) {
        row.ratio_to_hyper = base.filter(|&b| b > 0.0).map(|b| row.requests_per_sec / b);
    }
    rows
}

/// The mean of the values, `None` if any is `None` (or there are none).
fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let values: Option<Vec<f64>> = values.collect();
    values
        .filter(|v| !v.is_empty())
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

fn print_table(report: &Report) {
    let w = report.wrk;
    println!(
        "wrk -t{} -c{} -d{}s, {} round(s) per mode, interleaved",
        w.threads, w.connections, w.duration_s, w.rounds
    );
    if let Some(s) = report.spread {
        println!(
            "close-spread: our client, {} thread(s), {} connections, {}s, each connection from \
             its own source address (127.1.x.y, {} in turn)",
            s.threads, s.connections, s.duration_s, s.source_addresses
        );
    }
    println!(
        "{:<14} {:<13} {:>10} {:>9} {:>9} {:>10} {:>10} {:>7}",
        "server", "mode", "req/s", "vs hyper", "CPU µs/r", "server TW", "client TW", "errors"
    );
    for row in &report.rows {
        let ratio = row
            .ratio_to_hyper
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        let cpu = row
            .server_cpu_us_per_request
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"));
        println!(
            "{:<14} {:<13} {:>10.0} {:>9} {:>9} {:>10.0} {:>10.0} {:>7}",
            row.server.name(),
            row.mode.name(),
            row.requests_per_sec,
            ratio,
            cpu,
            row.server_time_wait,
            row.client_time_wait,
            row.errors
        );
    }
    let overflowed: Vec<String> = report
        .runs
        .iter()
        .filter(|r| r.time_wait_overflow.is_some_and(|n| n > 0))
        .map(|r| {
            format!(
                "{} {} round {} ({})",
                r.server.name(),
                r.mode,
                r.round,
                r.time_wait_overflow.unwrap_or(0)
            )
        })
        .collect();
    if !overflowed.is_empty() {
        println!(
            "note: the kernel's TIME-WAIT table (tcp_max_tw_buckets) overflowed in: {}; \
             TW counts of those runs are capped",
            overflowed.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_report() {
        let out = "Running 1s test @ http://127.0.0.1:1/\n  1 threads and 4 connections\n\
                   12345 requests in 1.00s, 1.23MB read\n  Socket errors: connect 0, read 2, write 1, timeout 0\n\
                   Non-2xx or 3xx responses: 5\nRequests/sec:  12345.67\nTransfer/sec:      1.23MB\n";
        assert_eq!(parse_wrk(out), Some((12345, 12345.67, 8)));
        assert_eq!(parse_wrk("garbage"), None);
    }
}
