//! `farewell bench http`: wrk and a many-sources client against farewell-http,
//! plain hyper and nginx, on loopback, interleaved, in one run; with
//! `--hosts N`, also wrk and the many-sources client from N client hosts
//! (network namespaces, `hosts`).
//!
//! The CLI (`src/cmd/bench/http.rs`) parses flags and prints; everything that
//! runs is here: the servers ([`in_process`], [`nginx`]), the loads ([`wrk`],
//! and the close-spread clients of [`super::http_clients`]), the census of
//! both sides' TIME-WAIT, and the summary rows.

mod hosts;
mod in_process;
mod nginx;
mod wrk;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use farewell::census::{self, Filter, StateSet};
use farewell::TcpState;
use serde::Serialize;

use crate::bench::churn::clear_time_wait;
use crate::bench::clients::SourceAddrs;
use crate::bench::cpu::{machine_busy_during, ThreadCpu};
use crate::bench::http_clients::{self, HttpErrors, HttpLoad};
pub use hosts::MAX_HOSTS;
use in_process::InProcess;
use nginx::Nginx;

/// What to run: the load settings, the modes, and whether nginx may take part.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// wrk's settings; the close-spread clients use the same threads,
    /// connections and duration.
    pub wrk: WrkSettings,
    /// The modes to run (run in [`Mode::ALL`]'s order).
    pub modes: Vec<Mode>,
    /// Include nginx when it is installed (a line on stderr says when it is not).
    pub nginx: bool,
    /// Serve TLS (a self-signed certificate made for the run): farewell-http,
    /// hyper on tokio-rustls, nginx with `ssl`; wrk speaks https. The
    /// close-spread client speaks plain HTTP only, so that mode is left out.
    pub tls: bool,
    /// Also run the modes from this many client hosts (`hosts`: a network
    /// namespace each, over its own veth pair to a fresh server namespace;
    /// one `wrk -t1` per host, or in close-spread one client thread per host
    /// binding each connection to the next of the host's own source
    /// addresses; the connections shared out). Skipped, with a line on
    /// stderr, without `CAP_NET_ADMIN`.
    pub hosts: Option<u32>,
    /// close-spread: start at most this many requests per second in all
    /// (see [`HttpLoad::rate`]); `None` runs closed-loop, as fast as the
    /// clients go.
    pub rate: Option<f64>,
}

impl WrkSettings {
    /// `--quick`: 1 thread, 4 connections, 1 round, at most 1 s and 300
    /// responses per thread and run.
    pub const QUICK: WrkSettings = WrkSettings {
        threads: 1,
        connections: 4,
        duration_s: 1.0,
        rounds: 1,
        max_responses_per_thread: Some(300),
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
/// A benchmarked server.
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// farewell-http with peer-first, in this process.
    FarewellHttp,
    /// Plain hyper-util with the same handler, in this process.
    Hyper,
    /// nginx with a generated config, another process.
    Nginx,
}

impl Target {
    /// The name in the table and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Target::FarewellHttp => "farewell-http",
            Target::Hyper => "hyper",
            Target::Nginx => "nginx",
        }
    }
}

/// How the load runs; the order is the table's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// wrk with `Connection: close`.
    Close,
    /// Our client with `Connection: close`, every connection from its own source address.
    CloseSpread,
    /// wrk with keep-alive.
    KeepAlive,
}

impl Mode {
    /// Every mode, in the table's order.
    pub const ALL: [Mode; 3] = [Mode::Close, Mode::CloseSpread, Mode::KeepAlive];

    /// The name in the table, the JSON and `--modes`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Close => "close",
            Mode::CloseSpread => "close-spread",
            Mode::KeepAlive => "keep-alive",
        }
    }

    /// True for the modes wrk drives.
    pub fn uses_wrk(self) -> bool {
        self != Mode::CloseSpread
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown mode `{s}`; choose from close, close-spread, keep-alive")
            })
    }
}

/// One load run (wrk or our clients) against one server.
#[derive(Debug, Serialize)]
pub struct Run {
    /// The server that ran.
    pub server: Target,
    /// How the load ran.
    pub mode: Mode,
    /// Which round (from 1).
    pub round: u32,
    /// The number of client hosts (`--hosts`); `None`: the clients ran on
    /// loopback, in this host.
    pub hosts: Option<u32>,
    /// Responses counted.
    pub requests: u64,
    /// Responses per second (wrk's Requests/sec in the wrk modes).
    pub requests_per_sec: f64,
    /// wrk socket errors + non-2xx responses; close-spread: failed connects, timeouts, resets and bad responses.
    pub errors: u64,
    /// close-spread only: the errors by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kinds: Option<HttpErrors>,
    /// In-process servers' threads' CPU time (user + system) per response, in
    /// microseconds; `None` for nginx (another process). Kernel work that
    /// loopback does in the sending thread's context is charged to the sender.
    pub server_cpu_us_per_request: Option<f64>,
    /// The whole machine's busy CPU time (every process: server, clients,
    /// kernel) during the load, per response, in microseconds: what a
    /// response cost, wherever loopback charged it ([`super::cpu::machine_busy`]).
    pub machine_cpu_us_per_request: Option<f64>,
    /// TIME-WAIT entries on the server's address after the run (census).
    pub server_time_wait: usize,
    /// TIME-WAIT entries whose remote port is the server's: the clients'.
    pub client_time_wait: usize,
    /// Many-host runs only: the most TIME-WAIT entries one client source
    /// address holds (census inside the hosts' namespaces): all of its
    /// host's for a wrk, a few for the close-spread clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_time_wait_per_source_max: Option<usize>,
    /// TIME-WAIT entries the kernel could not create during the run
    /// (`TCPTimeWaitOverflow`: its table, `tcp_max_tw_buckets`, was full); the
    /// TW counts are capped when this is not 0. `None`: the counter is unreadable.
    pub time_wait_overflow: Option<u64>,
}

/// The summary of one server in one mode.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The server that ran.
    pub server: Target,
    /// How the load ran.
    pub mode: Mode,
    /// The number of client hosts; `None`: loopback.
    pub hosts: Option<u32>,
    /// Responses per second (wrk's Requests/sec in the wrk modes).
    pub requests_per_sec: f64,
    /// `requests_per_sec` over plain hyper's in the same mode and clients.
    pub ratio_to_hyper: Option<f64>,
    /// The in-process server's threads' CPU time per response, in µs (`None` for nginx).
    pub server_cpu_us_per_request: Option<f64>,
    /// The whole machine's busy CPU time per response, in µs (every process).
    pub machine_cpu_us_per_request: Option<f64>,
    /// `machine_cpu_us_per_request` over plain hyper's in the same mode and
    /// clients: what a response costs the machine, side by side. With `--rate`
    /// (nothing saturated) the figure to compare; closed-loop, it mostly
    /// mirrors the rate's ratio.
    pub machine_cpu_ratio_to_hyper: Option<f64>,
    /// TIME-WAIT entries on the server's address after the run (census).
    pub server_time_wait: f64,
    /// TIME-WAIT entries whose remote address is the server's: the clients'.
    pub client_time_wait: f64,
    /// wrk socket errors + non-2xx responses; close-spread: failed connects, timeouts, resets and bad responses.
    pub errors: u64,
}

/// The whole `bench http` run; `--json` prints it.
#[derive(Debug, Serialize)]
pub struct HttpReport {
    /// The servers served TLS (`--tls`).
    pub tls: bool,
    /// wrk's settings.
    pub wrk: WrkSettings,
    /// How the close-spread clients ran (null when that mode did not run).
    pub spread: Option<SpreadSettings>,
    /// How the many-host runs ran (null without `--hosts`, or when they were skipped).
    pub hosts: Option<HostsSettings>,
    /// Why the many-host runs were skipped (`--hosts` without `CAP_NET_ADMIN`).
    pub hosts_skipped: Option<String>,
    /// One summary row per server and mode (means over the rounds).
    pub rows: Vec<Row>,
    /// Every run.
    pub runs: Vec<Run>,
}

/// The close-spread clients' settings.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SpreadSettings {
    /// Worker threads of the clients' own runtime.
    pub threads: u32,
    /// Clients running at once.
    pub connections: u32,
    /// Length of each run, in seconds.
    pub duration_s: f64,
    /// Distinct source addresses used in turn (127.1.x.y), one per connection.
    pub source_addresses: u64,
    /// --quick: the run stops after this many requests in all.
    pub max_requests: Option<u64>,
    /// `--rate`: requests started per second at most, in all (null: unpaced).
    pub rate: Option<f64>,
}

/// The many-host runs' settings (`--hosts`).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct HostsSettings {
    /// Client hosts (network namespaces), each over its own veth pair.
    pub hosts: u32,
    /// wrk -c of each host's `wrk -t1` (and the close-spread clients of each
    /// host): the connections shared out (at least 1).
    pub connections_per_host: u32,
    /// close-spread: distinct source addresses of each host, used in turn
    /// (host `i`: `10.(128+i).x.y`).
    pub source_addresses_per_host: u64,
}

/// wrk's settings (the close-spread clients take theirs from these too).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct WrkSettings {
    /// Client threads (wrk -t).
    pub threads: u32,
    /// Connections at once (wrk -c).
    pub connections: u32,
    /// Length of each run, in seconds.
    pub duration_s: f64,
    /// Rounds of interleaved runs per mode.
    pub rounds: u32,
    /// --quick: each wrk thread stops after this many responses.
    pub max_responses_per_thread: Option<u32>,
}

/// Runs the benchmark: every mode, round and server of `config`,
/// interleaved (A B C A B C …), then, with `hosts`, every mode from that
/// many client hosts; calls `on_run` before each run (for progress; the
/// number of hosts is `None` for loopback runs).
///
/// # Errors
///
/// wrk is needed for a wrk mode and missing (the message says how to install
/// it); a server or the async runtime cannot start; the kernel's socket table
/// cannot be read.
pub fn run(
    config: &HttpConfig,
    mut on_run: impl FnMut(Target, Mode, Option<u32>, u32),
) -> anyhow::Result<HttpReport> {
    let wrk = config.wrk;
    let mut modes: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| config.modes.contains(m))
        .collect();
    if config.tls && modes.contains(&Mode::CloseSpread) {
        eprintln!("--tls: close-spread's client speaks plain HTTP only; leaving that mode out");
        modes.retain(|&m| m != Mode::CloseSpread);
    }
    let tls = config.tls.then(|| {
        let made = crate::support::tls::SelfSigned::localhost();
        let server_config = Arc::new(made.server_config());
        Tls {
            made: Arc::new(made),
            config: server_config,
        }
    });
    let spread = SpreadSettings {
        threads: wrk.threads,
        connections: wrk.connections,
        duration_s: wrk.duration_s,
        source_addresses: SourceAddrs::COUNT,
        max_requests: Some(match wrk.max_responses_per_thread {
            Some(max) => u64::from(max) * u64::from(wrk.threads),
            None => time_wait_budget(),
        }),
        rate: config.rate,
    };
    if modes.iter().any(|m| m.uses_wrk()) {
        wrk::check()?;
    }
    let mut targets = vec![Target::FarewellHttp, Target::Hyper];
    if config.nginx && nginx::installed() {
        targets.push(Target::Nginx);
    } else if config.nginx {
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
        tls,
    };
    let mut runs = Vec::new();
    for &mode in &modes {
        for round in 1..=wrk.rounds {
            for &target in &targets {
                on_run(target, mode, None, round);
                runs.push(runtime.block_on(run_one(target, mode, round, &load))?);
            }
        }
    }
    let (hosts, hosts_skipped) = match config.hosts {
        None => (None, None),
        Some(n) => match crate::lab::netns::unavailable() {
            Some(why) => {
                eprintln!("--hosts: skipping the many-host runs: {why}");
                (None, Some(why))
            }
            None => (
                Some(HostsSettings {
                    hosts: n.clamp(1, MAX_HOSTS),
                    connections_per_host: (wrk.connections / n.clamp(1, MAX_HOSTS)).max(1),
                    source_addresses_per_host: hosts::HostSources::COUNT,
                }),
                None,
            ),
        },
    };
    if let Some(settings) = hosts {
        for &mode in &modes {
            for round in 1..=wrk.rounds {
                for &target in &targets {
                    on_run(target, mode, Some(settings.hosts), round);
                    runs.push(
                        runtime
                            .block_on(hosts::run_one_hosts(target, mode, round, settings, &load))?,
                    );
                }
            }
        }
    }
    Ok(HttpReport {
        tls: config.tls,
        wrk,
        spread: modes.contains(&Mode::CloseSpread).then_some(spread),
        hosts,
        hosts_skipped,
        rows: summarise(&runs),
        runs,
    })
}

/// What drives the load: wrk's settings, or our clients on their own runtime.
struct Load {
    wrk: WrkSettings,
    spread: SpreadSettings,
    clients: tokio::runtime::Handle,
    sources: SourceAddrs,
    /// The in-process servers' threads.
    server_cpu: ThreadCpu,
    /// The run's certificate, when it serves TLS.
    tls: Option<Tls>,
}

/// A TLS run's certificate (for nginx's files) and the rustls configuration.
struct Tls {
    made: Arc<crate::support::tls::SelfSigned>,
    config: Arc<farewell_http::rustls::ServerConfig>,
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
    let (measured, server, server_cpu, busy) = match target {
        Target::Nginx => {
            let nginx = Nginx::start(load.tls.as_ref().map(|t| &*t.made)).await?;
            let (measured, busy) = machine_busy_during(drive(nginx.addr, mode, load)).await;
            settle(nginx.addr).await;
            (measured?, nginx.addr, None, busy)
        }
        _ => {
            let cpu_before = load.server_cpu.total();
            let server =
                InProcess::start(target, load.tls.as_ref().map(|t| Arc::clone(&t.config))).await?;
            let addr = server.addr;
            let (measured, busy) = machine_busy_during(drive(addr, mode, load)).await;
            server.stop().await;
            let cpu = load
                .server_cpu
                .total()
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            settle(addr).await;
            (measured?, addr, cpu, busy)
        }
    };
    let machine_cpu_us_per_request = per_request(busy, measured.requests);
    let server_cpu_us_per_request = per_request(server_cpu, measured.requests);
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
        hosts: None,
        requests: measured.requests,
        requests_per_sec: measured.requests_per_sec,
        errors: measured.errors,
        error_kinds: measured.error_kinds,
        server_cpu_us_per_request,
        machine_cpu_us_per_request,
        server_time_wait,
        client_time_wait,
        client_time_wait_per_source_max: None,
        time_wait_overflow,
    })
}

/// Runs the mode's load against `addr`: wrk, or our many-sources clients on
/// their own runtime.
async fn drive(addr: SocketAddr, mode: Mode, load: &Load) -> anyhow::Result<Measured> {
    if mode.uses_wrk() {
        let (requests, requests_per_sec, errors) =
            wrk::run(None, addr, mode, load.wrk, load.tls.is_some()).await?;
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
            rate: spread.rate,
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
    // The calling thread's namespace (`/proc/net` is the main thread's).
    let netstat = std::fs::read_to_string("/proc/thread-self/net/netstat").ok()?;
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

fn summarise(runs: &[Run]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut clients: Vec<Option<u32>> = Vec::new();
    for run in runs {
        if !clients.contains(&run.hosts) {
            clients.push(run.hosts);
        }
    }
    for (hosts, mode) in clients
        .iter()
        .flat_map(|&h| Mode::ALL.into_iter().map(move |m| (h, m)))
    {
        for server in [Target::FarewellHttp, Target::Hyper, Target::Nginx] {
            let these: Vec<&Run> = runs
                .iter()
                .filter(|r| r.server == server && r.mode == mode && r.hosts == hosts)
                .collect();
            if these.is_empty() {
                continue;
            }
            let n = these.len() as f64;
            rows.push(Row {
                server,
                mode,
                hosts,
                requests_per_sec: these.iter().map(|r| r.requests_per_sec).sum::<f64>() / n,
                ratio_to_hyper: None,
                server_cpu_us_per_request: mean(these.iter().map(|r| r.server_cpu_us_per_request)),
                machine_cpu_us_per_request: mean(
                    these.iter().map(|r| r.machine_cpu_us_per_request),
                ),
                machine_cpu_ratio_to_hyper: None,
                server_time_wait: these.iter().map(|r| r.server_time_wait as f64).sum::<f64>() / n,
                client_time_wait: these.iter().map(|r| r.client_time_wait as f64).sum::<f64>() / n,
                errors: these.iter().map(|r| r.errors).sum(),
            });
        }
    }
    let hyper_row = |mode, hosts| {
        rows.iter()
            .find(|r| r.server == Target::Hyper && r.mode == mode && r.hosts == hosts)
            .map(|r| (r.requests_per_sec, r.machine_cpu_us_per_request))
    };
    let bases: Vec<_> = rows.iter().map(|r| hyper_row(r.mode, r.hosts)).collect();
    for (row, base) in rows.iter_mut().zip(bases) {
        let Some((rate, cpu)) = base else { continue };
        row.ratio_to_hyper = (rate > 0.0).then(|| row.requests_per_sec / rate);
        row.machine_cpu_ratio_to_hyper = row
            .machine_cpu_us_per_request
            .zip(cpu.filter(|&c| c > 0.0))
            .map(|(ours, hypers)| ours / hypers);
    }
    rows
}

/// The mean of the values, `None` if any is `None` (or there are none).
/// `used` CPU time per response, in microseconds.
pub(super) fn per_request(used: Option<std::time::Duration>, requests: u64) -> Option<f64> {
    used.filter(|_| requests > 0)
        .map(|cpu| cpu.as_secs_f64() * 1e6 / requests as f64)
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let values: Option<Vec<f64>> = values.collect();
    values
        .filter(|v| !v.is_empty())
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

impl HttpReport {
    /// The table `farewell bench http` prints.
    pub fn table(&self) -> String {
        let report = self;
        let mut out = String::new();
        let w = report.wrk;
        let _ = writeln!(
            out,
            "wrk -t{} -c{} -d{}s, {} round(s) per mode, interleaved{}",
            w.threads,
            w.connections,
            w.duration_s,
            w.rounds,
            if report.tls {
                "; TLS (self-signed, rustls with ring in-process, nginx ssl)"
            } else {
                ""
            }
        );
        if let Some(s) = report.spread {
            let _ = writeln!(
        out,
            "close-spread: our client, {} thread(s), {} connections, {}s, each connection from \
             its own source address (127.1.x.y, {} in turn)",
            s.threads, s.connections, s.duration_s, s.source_addresses
        );
            if let Some(rate) = s.rate {
                let _ = writeln!(
                    out,
                    "close-spread paced: at most {rate} requests started per second in all \
                     (shared out among the hosts); compare the CPU columns, not req/s"
                );
            }
        }
        if let Some(h) = report.hosts {
            let _ = writeln!(
                out,
                "{} hosts: wrk -t1 -c{} in each of {} client namespaces, each over its own veth \
                 pair to a fresh server namespace per run",
                h.hosts, h.connections_per_host, h.hosts
            );
            if report.spread.is_some() {
                let _ = writeln!(
                    out,
                    "{} hosts, spread: our client, 1 thread and {} connections in each host, each \
                     connection from the next of its host's {} source addresses (10.(128+i).x.y)",
                    h.hosts, h.connections_per_host, h.source_addresses_per_host
                );
            }
        }
        if let Some(why) = &report.hosts_skipped {
            let _ = writeln!(out, "--hosts: the many-host runs were skipped: {why}");
        }
        let _ = writeln!(
            out,
            "{:<14} {:<13} {:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>7}",
            "server",
            "mode",
            "clients",
            "req/s",
            "vs hyper",
            "CPU µs/r",
            "all µs/r",
            "all vs hy",
            "server TW",
            "client TW",
            "errors"
        );
        for row in &report.rows {
            let ratio = row
                .ratio_to_hyper
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
            let cpu = row
                .server_cpu_us_per_request
                .map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"));
            let all = row
                .machine_cpu_us_per_request
                .map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"));
            let all_ratio = row
                .machine_cpu_ratio_to_hyper
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
            let clients = match (row.hosts, row.mode) {
                (Some(n), Mode::CloseSpread) => format!("{n} hosts, spread"),
                (Some(n), _) => format!("{n} hosts"),
                (None, Mode::CloseSpread) => "lo, spread".to_owned(),
                (None, _) => "lo, 1 wrk".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<14} {:<13} {:<16} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>10.0} {:>10.0} {:>7}",
                row.server.name(),
                row.mode.name(),
                clients,
                row.requests_per_sec,
                ratio,
                cpu,
                all,
                all_ratio,
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
                    "{} {}{} round {} ({})",
                    r.server.name(),
                    r.mode,
                    r.hosts.map_or_else(String::new, |n| format!(" {n} hosts")),
                    r.round,
                    r.time_wait_overflow.unwrap_or(0)
                )
            })
            .collect();
        if !overflowed.is_empty() {
            let _ = writeln!(
                out,
                "note: the kernel's TIME-WAIT table (tcp_max_tw_buckets) overflowed in: {}; \
             TW counts of those runs are capped",
                overflowed.join(", ")
            );
        }
        out
    }
}
