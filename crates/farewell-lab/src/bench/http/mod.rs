//! `farewell bench http`: wrk and a many-sources client against farewell-http
//! (one server per teardown policy asked for), plain hyper and nginx, on
//! loopback, interleaved, in one run; with `--hosts N`, also wrk and the
//! many-sources client from N client hosts (network namespaces, `hosts`);
//! with `--proxy nginx`, also wrk through nginx as a reverse proxy in front
//! of each in-process server (`proxy`).
//!
//! The CLI (`src/cmd/bench/http.rs`) parses flags and prints; everything that
//! runs is here: the servers (`in_process`, `nginx`), the loads (`wrk`,
//! and the close-spread clients of [`super::http_clients`]), the census of
//! both sides' TIME-WAIT, and the summary rows (printed by `table`).

mod hosts;
mod in_process;
mod nginx;
mod node;
mod proxy;
mod table;
pub(crate) mod wrk;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use farewell::census::{self, Filter, StateSet};
use farewell::{Policy, TcpState};
use serde::Serialize;

use crate::bench::churn::clear_time_wait;
use crate::bench::clients::SourceAddrs;
use crate::bench::cpu::{machine_busy_during, ThreadCpu};
use crate::bench::http_clients::{self, HttpErrors, HttpLoad};
pub use hosts::MAX_HOSTS;
use in_process::InProcess;
use nginx::Nginx;
pub use proxy::Proxy;

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
    /// Include Node.js: a plain `http.Server` (`node`) and the same with
    /// `farewell.attach` (`node+farewell`), when node and the farewell-node
    /// addon are there (a line on stderr says when not). Plain HTTP only:
    /// left out with `tls`, and not run behind the proxy.
    pub node: bool,
    /// Only the Node rows (`node`, `node+farewell`): no farewell-http, hyper
    /// nor nginx, so that more rounds of the pair fit in the same time.
    /// Implies `node`.
    pub node_only: bool,
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
    /// farewell-http's teardown policies: one farewell-http server per
    /// policy, in this order, each with rows of its own ([`Server::label`]).
    /// Usually `[peer-first]`, farewell-http's default.
    pub policies: Vec<Policy>,
    /// The label ([`Server::label`]) of the row whose rate every row of the
    /// same mode and clients is divided by (`ratio_to_baseline`), e.g.
    /// `hyper` or `farewell-http/plain`.
    pub baseline: String,
    /// Also run the wrk modes through this reverse proxy, in a network
    /// namespace of its own, in front of each in-process server in a
    /// namespace of its own ([`Proxy`]). Skipped, with a line on stderr,
    /// without `CAP_NET_ADMIN` or without the proxy installed.
    pub proxy: Option<Proxy>,
}

/// The label of the default policy's farewell-http rows: the target's name alone.
const DEFAULT_POLICY: &str = "peer-first";

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
    /// A Node.js `http.Server`, another process.
    Node,
    /// The same with `farewell.attach(server)` (the farewell-node addon).
    NodeFarewell,
}

impl Target {
    /// The name in the table and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Target::FarewellHttp => "farewell-http",
            Target::Hyper => "hyper",
            Target::Nginx => "nginx",
            Target::Node => "node",
            Target::NodeFarewell => "node+farewell",
        }
    }

    /// True for the servers that run in this process (farewell-http, hyper).
    fn in_process(self) -> bool {
        matches!(self, Target::FarewellHttp | Target::Hyper)
    }
}

/// One server of a run: the target and, for farewell-http, its teardown policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    /// The server.
    pub target: Target,
    /// farewell-http's teardown policy (`None` for hyper and nginx).
    pub policy: Option<Policy>,
}

impl Server {
    /// The name of its rows, and what `--baseline` takes: the target's name,
    /// then `/` and the policy for a farewell-http with another policy than
    /// peer-first (`farewell-http/plain`).
    pub fn label(&self) -> String {
        label(self.target, self.policy.map(|p| p.name()))
    }

    /// The policy's name, as the JSON gives it.
    fn policy_name(&self) -> Option<&'static str> {
        self.policy.map(|p| p.name())
    }
}

/// See [`Server::label`].
fn label(target: Target, policy: Option<&str>) -> String {
    match policy {
        Some(name) if name != DEFAULT_POLICY => format!("{}/{name}", target.name()),
        _ => target.name().to_owned(),
    }
}

/// Where a run's load came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clients {
    /// wrk or our clients in this host, over loopback.
    Loopback,
    /// That many client hosts (`--hosts`).
    Hosts(u32),
    /// wrk into the reverse proxy, which forwards to the server (`--proxy`).
    Proxy(Proxy),
}

impl Clients {
    /// From a run's or row's `hosts` and `proxy` fields.
    fn of(hosts: Option<u32>, proxy: Option<Proxy>) -> Clients {
        match (hosts, proxy) {
            (_, Some(proxy)) => Clients::Proxy(proxy),
            (Some(n), None) => Clients::Hosts(n),
            (None, None) => Clients::Loopback,
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
    /// farewell-http's teardown policy (null for hyper and nginx).
    pub policy: Option<&'static str>,
    /// How the load ran.
    pub mode: Mode,
    /// Which round (from 1).
    pub round: u32,
    /// The number of client hosts (`--hosts`); `None`: the clients ran on
    /// loopback, in this host, or into the proxy.
    pub hosts: Option<u32>,
    /// The reverse proxy the load went through (`--proxy`); `None`: straight
    /// to the server.
    pub proxy: Option<Proxy>,
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
    /// Behind a proxy: the entries toward the proxy's port (wrk's).
    pub client_time_wait: usize,
    /// Many-host runs only: each host's TIME-WAIT entries toward the server
    /// (census inside that host's namespace), host 0 first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_time_wait_per_host: Option<Vec<usize>>,
    /// Proxy runs only: the proxy's TIME-WAIT entries toward the server
    /// (census in the proxy's namespace, remote = the server's address and port).
    pub proxy_time_wait: Option<usize>,
    /// Proxy runs only: lines of nginx's error log that name `upstream`
    /// (a failed connect to the server, a reset or early close while reading
    /// its response, …).
    pub proxy_upstream_errors: Option<u64>,
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

impl Run {
    /// Where the load came from.
    pub fn clients(&self) -> Clients {
        Clients::of(self.hosts, self.proxy)
    }

    /// The name of its server's rows ([`Server::label`]).
    pub fn label(&self) -> String {
        label(self.server, self.policy)
    }
}

/// The summary of one server in one mode.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The server that ran.
    pub server: Target,
    /// farewell-http's teardown policy (null for hyper and nginx).
    pub policy: Option<&'static str>,
    /// The row's name ([`Server::label`]): the server, and farewell-http's
    /// policy when it is not peer-first (`farewell-http/plain`).
    pub label: String,
    /// How the load ran.
    pub mode: Mode,
    /// The number of client hosts; `None`: loopback, or through the proxy.
    pub hosts: Option<u32>,
    /// The reverse proxy in front of the server; `None`: none.
    pub proxy: Option<Proxy>,
    /// Responses per second (wrk's Requests/sec in the wrk modes).
    pub requests_per_sec: f64,
    /// `requests_per_sec` over plain hyper's in the same mode and clients.
    pub ratio_to_hyper: Option<f64>,
    /// `requests_per_sec` over the baseline row's ([`HttpReport::baseline`])
    /// in the same mode and clients; null when that row did not run.
    pub ratio_to_baseline: Option<f64>,
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
    /// Behind a proxy: the entries toward the proxy's port (wrk's).
    pub client_time_wait: f64,
    /// Many-host rows only: each host's TIME-WAIT entries toward the server,
    /// host 0 first, mean over the rounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_time_wait_per_host: Option<Vec<f64>>,
    /// Proxy rows only: the proxy's TIME-WAIT entries toward the server,
    /// mean over the rounds.
    pub proxy_time_wait: Option<f64>,
    /// Proxy rows only: lines of the proxy's error log that name `upstream`,
    /// summed over the rounds.
    pub proxy_upstream_errors: Option<u64>,
    /// wrk socket errors + non-2xx responses (behind a proxy: its 502s and
    /// 504s); close-spread: failed connects, timeouts, resets and bad
    /// responses; summed over the rounds.
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
    /// How the proxy runs ran (null without `--proxy`, or when they were skipped).
    pub proxy: Option<ProxySettings>,
    /// Why the proxy runs were skipped (`--proxy` without `CAP_NET_ADMIN`,
    /// or without the proxy installed).
    pub proxy_skipped: Option<String>,
    /// The label of the row each row's `ratio_to_baseline` divides by.
    pub baseline: String,
    /// One summary row per server and mode (means over the rounds).
    pub rows: Vec<Row>,
    /// With the Node rows: `node+farewell` against `node` round by round,
    /// per clients and mode (empty without them).
    pub node_rounds: Vec<NodeRounds>,
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

/// The proxy runs' settings (`--proxy`).
#[derive(Clone, Debug, Serialize)]
pub struct ProxySettings {
    /// The reverse proxy.
    pub proxy: Proxy,
    /// The modes that ran through it (the wrk modes of `--modes`).
    pub modes: Vec<Mode>,
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
/// many client hosts, then, with `proxy`, every wrk mode through the proxy;
/// calls `on_run` before each run (for progress).
///
/// # Errors
///
/// wrk is needed for a wrk mode and missing (the message says how to install
/// it); `baseline` names no server of the run; a server or the async runtime
/// cannot start; the kernel's socket table cannot be read.
pub fn run(
    config: &HttpConfig,
    mut on_run: impl FnMut(Server, Mode, Clients, u32),
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
    let servers = servers(config)?;
    if modes.iter().any(|m| m.uses_wrk()) || config.proxy.is_some() {
        wrk::check()?;
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
            for server in round_order(&servers, round) {
                on_run(server, mode, Clients::Loopback, round);
                runs.push(runtime.block_on(run_one(server, mode, round, &load))?);
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
                for server in round_order(&servers, round) {
                    on_run(server, mode, Clients::Hosts(settings.hosts), round);
                    runs.push(
                        runtime
                            .block_on(hosts::run_one_hosts(server, mode, round, settings, &load))?,
                    );
                }
            }
        }
    }
    let (proxy, proxy_skipped) = match config.proxy {
        None => (None, None),
        Some(proxy) => match proxy::unavailable(proxy, config.tls) {
            Some(why) => {
                eprintln!("--proxy {proxy}: skipping the proxy runs: {why}");
                (None, Some(why))
            }
            None => {
                let through: Vec<Mode> = modes.iter().copied().filter(|m| m.uses_wrk()).collect();
                if modes.contains(&Mode::CloseSpread) {
                    eprintln!("--proxy {proxy}: close-spread does not run through the proxy (wrk modes only)");
                }
                (
                    Some(ProxySettings {
                        proxy,
                        modes: through,
                    }),
                    None,
                )
            }
        },
    };
    if let Some(settings) = &proxy {
        // The proxy is the origin server's client: nginx behind nginx says
        // nothing; node is left out (its rows are a server's, not a proxy's).
        let behind: Vec<Server> = servers
            .iter()
            .copied()
            .filter(|s| s.target.in_process())
            .collect();
        for &mode in &settings.modes {
            for round in 1..=wrk.rounds {
                for &server in &behind {
                    on_run(server, mode, Clients::Proxy(settings.proxy), round);
                    runs.push(runtime.block_on(proxy::run_one_proxy(
                        settings.proxy,
                        server,
                        mode,
                        round,
                        &load,
                    ))?);
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
        proxy,
        proxy_skipped,
        rows: summarise(&runs, &config.baseline),
        node_rounds: node_rounds(&runs),
        baseline: config.baseline.clone(),
        runs,
    })
}

/// The servers of a run, in the table's order: farewell-http once per
/// policy, plain hyper, and nginx when asked for and installed. Fails when
/// the baseline names none of them (nor nginx, whose absence is only noted).
fn servers(config: &HttpConfig) -> anyhow::Result<Vec<Server>> {
    let nodes = [Target::Node, Target::NodeFarewell].map(|target| Server {
        target,
        policy: None,
    });
    if config.node_only {
        if !nodes.iter().any(|n| n.label() == config.baseline) {
            anyhow::bail!(
                "--baseline {:?} names no server of this run (--node-only); choose from node, node+farewell",
                config.baseline
            );
        }
        if config.tls {
            anyhow::bail!("--node-only: the Node rows serve plain HTTP only (no --tls)");
        }
        if let Some(why) = node::unavailable() {
            anyhow::bail!("--node-only: {why}");
        }
        return Ok(nodes.to_vec());
    }
    let mut servers: Vec<Server> = Vec::new();
    for &policy in &config.policies {
        let server = Server {
            target: Target::FarewellHttp,
            policy: Some(policy),
        };
        if !servers.contains(&server) {
            servers.push(server);
        }
    }
    servers.push(Server {
        target: Target::Hyper,
        policy: None,
    });
    let nginx = Server {
        target: Target::Nginx,
        policy: None,
    };
    let labels: Vec<String> = servers
        .iter()
        .chain(config.nginx.then_some(&nginx))
        .chain(nodes.iter().filter(|_| config.node))
        .map(Server::label)
        .collect();
    if !labels.contains(&config.baseline) {
        anyhow::bail!(
            "--baseline {:?} names no server of this run; choose from {}",
            config.baseline,
            labels.join(", ")
        );
    }
    if config.nginx && nginx::installed() {
        servers.push(nginx);
    } else if config.nginx {
        eprintln!("nginx is not installed (apt-get install nginx); leaving its row out");
    }
    if config.node {
        match node::unavailable() {
            _ if config.tls => {
                eprintln!("--tls: the Node rows serve plain HTTP only; leaving them out")
            }
            Some(why) => eprintln!("{why}; leaving the Node rows out"),
            None => servers.extend(nodes),
        }
    }
    Ok(servers)
}

/// The servers of round `round` (from 1), in the order they run: as
/// given, except that `node` and `node+farewell` swap places in the even
/// rounds (A B, B A, A B, …), so neither always runs right after the other
/// (a run's leftovers, such as the kernel's cleanup of a deleted namespace
/// full of TIME-WAIT entries, fall on the next run).
fn round_order(servers: &[Server], round: u32) -> Vec<Server> {
    let mut order = servers.to_vec();
    let at = |target| order.iter().position(|s: &Server| s.target == target);
    if round % 2 == 0 {
        if let (Some(a), Some(b)) = (at(Target::Node), at(Target::NodeFarewell)) {
            order.swap(a, b);
        }
    }
    order
}

/// `node+farewell` against `node`, round by round, in one mode from one
/// kind of clients (`NodeRounds::median_ratio` is the figure to quote: one
/// noisy round does not move it).
#[derive(Debug, Serialize)]
pub struct NodeRounds {
    /// How the load ran.
    pub mode: Mode,
    /// The number of client hosts; `None`: loopback.
    pub hosts: Option<u32>,
    /// Each round with both rows.
    pub rounds: Vec<NodeRound>,
    /// The median of the rounds' `ratio`.
    pub median_ratio: Option<f64>,
    /// The median of the rounds' `cpu_us_delta`.
    pub median_cpu_us_delta: Option<f64>,
}

/// One round of the Node pair.
#[derive(Debug, Serialize)]
pub struct NodeRound {
    /// Which round (from 1).
    pub round: u32,
    /// Which of the two ran first in the round (see `round_order`).
    pub first: Target,
    /// Plain node's responses per second.
    pub node_requests_per_sec: f64,
    /// The attached server's.
    pub attached_requests_per_sec: f64,
    /// `attached_requests_per_sec / node_requests_per_sec`.
    pub ratio: f64,
    /// The node process's CPU µs per response, plain.
    pub node_cpu_us_per_request: Option<f64>,
    /// The same, attached.
    pub attached_cpu_us_per_request: Option<f64>,
    /// Attached minus plain CPU µs per response.
    pub cpu_us_delta: Option<f64>,
}

/// The Node pair round by round, per clients and mode (loopback first, in
/// [`Mode::ALL`]'s order), for the rounds where both ran.
fn node_rounds(runs: &[Run]) -> Vec<NodeRounds> {
    let mut clients: Vec<Clients> = Vec::new();
    for run in runs.iter().filter(|r| r.server == Target::Node) {
        if !clients.contains(&run.clients()) {
            clients.push(run.clients());
        }
    }
    let mut out = Vec::new();
    for (from, mode) in clients
        .iter()
        .flat_map(|&c| Mode::ALL.into_iter().map(move |m| (c, m)))
    {
        let at = |target: Target, round: u32| {
            runs.iter().position(|r| {
                r.server == target && r.mode == mode && r.clients() == from && r.round == round
            })
        };
        let mut rounds = Vec::new();
        let last = runs.iter().map(|r| r.round).max().unwrap_or(0);
        for round in 1..=last {
            let (Some(plain), Some(attached)) =
                (at(Target::Node, round), at(Target::NodeFarewell, round))
            else {
                continue;
            };
            let (p, a) = (&runs[plain], &runs[attached]);
            if p.requests_per_sec <= 0.0 {
                continue;
            }
            rounds.push(NodeRound {
                round,
                first: if plain < attached {
                    Target::Node
                } else {
                    Target::NodeFarewell
                },
                node_requests_per_sec: p.requests_per_sec,
                attached_requests_per_sec: a.requests_per_sec,
                ratio: a.requests_per_sec / p.requests_per_sec,
                node_cpu_us_per_request: p.server_cpu_us_per_request,
                attached_cpu_us_per_request: a.server_cpu_us_per_request,
                cpu_us_delta: a
                    .server_cpu_us_per_request
                    .zip(p.server_cpu_us_per_request)
                    .map(|(a, p)| a - p),
            });
        }
        if rounds.is_empty() {
            continue;
        }
        let deltas: Option<Vec<f64>> = rounds.iter().map(|r| r.cpu_us_delta).collect();
        out.push(NodeRounds {
            mode,
            hosts: match from {
                Clients::Hosts(n) => Some(n),
                _ => None,
            },
            median_ratio: median(rounds.iter().map(|r| r.ratio).collect()),
            median_cpu_us_delta: deltas.and_then(median),
            rounds,
        });
    }
    out
}

/// The median (the mean of the middle two for an even count); `None` for none.
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
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
async fn run_one(server: Server, mode: Mode, round: u32, load: &Load) -> anyhow::Result<Run> {
    let overflow_before = time_wait_overflows();
    let (measured, addr, server_cpu, busy) = match server.target {
        Target::Nginx => {
            let nginx = Nginx::start(load.tls.as_ref().map(|t| &*t.made)).await?;
            let (measured, busy) = machine_busy_during(drive(nginx.addr, mode, load)).await;
            settle(nginx.addr).await;
            (measured?, nginx.addr, None, busy)
        }
        Target::Node | Target::NodeFarewell => {
            let quiet =
                crate::support::port::bind_quiet_port(in_process::LOOPBACK)?.local_addr()?;
            let attached = server.target == Target::NodeFarewell;
            let node = tokio::task::spawn_blocking(move || {
                node::NodeServer::start(attached, quiet, quiet.ip(), None)
            })
            .await??;
            let addr = node.addr;
            let cpu_before = node.cpu();
            let (measured, busy) = machine_busy_during(drive(addr, mode, load)).await;
            let cpu = node
                .cpu()
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            tokio::task::spawn_blocking(move || node.stop()).await?;
            settle(addr).await;
            (measured?, addr, cpu, busy)
        }
        _ => {
            let cpu_before = load.server_cpu.total();
            let running =
                InProcess::start(server, load.tls.as_ref().map(|t| Arc::clone(&t.config))).await?;
            let addr = running.addr;
            let (measured, busy) = machine_busy_during(drive(addr, mode, load)).await;
            running.stop().await;
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
    let server_time_wait = time_wait(Filter::local(addr))?;
    let client_time_wait = time_wait(Filter::remote(addr))?;
    let time_wait_overflow = overflow_before
        .zip(time_wait_overflows())
        .map(|(before, after)| after.saturating_sub(before));
    // Counted: now neither side's entries may fill the table under the next run.
    clear_time_wait(addr);
    Ok(Run {
        server: server.target,
        policy: server.policy_name(),
        mode,
        round,
        hosts: None,
        proxy: None,
        requests: measured.requests,
        requests_per_sec: measured.requests_per_sec,
        errors: measured.errors,
        error_kinds: measured.error_kinds,
        server_cpu_us_per_request,
        machine_cpu_us_per_request,
        server_time_wait,
        client_time_wait,
        client_time_wait_per_host: None,
        proxy_time_wait: None,
        proxy_upstream_errors: None,
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

/// The kernel's count of TIME-WAIT entries it could not create because its
/// table was full (`TcpExt: TCPTimeWaitOverflow` in `/proc/net/netstat`).
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

/// One row per clients, mode and server (in the order they first ran), the
/// means over the rounds; each row's rate over plain hyper's and over the
/// row labelled `baseline`, in the same mode and clients.
fn summarise(runs: &[Run], baseline: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut clients: Vec<Clients> = Vec::new();
    let mut servers: Vec<(Target, Option<&'static str>)> = Vec::new();
    for run in runs {
        if !clients.contains(&run.clients()) {
            clients.push(run.clients());
        }
        if !servers.contains(&(run.server, run.policy)) {
            servers.push((run.server, run.policy));
        }
    }
    for (from, mode) in clients
        .iter()
        .flat_map(|&c| Mode::ALL.into_iter().map(move |m| (c, m)))
    {
        for &(server, policy) in &servers {
            let these: Vec<&Run> = runs
                .iter()
                .filter(|r| {
                    r.server == server
                        && r.policy == policy
                        && r.mode == mode
                        && r.clients() == from
                })
                .collect();
            let Some(first) = these.first() else {
                continue;
            };
            let n = these.len() as f64;
            let mean_of =
                |count: fn(&Run) -> usize| these.iter().map(|r| count(r) as f64).sum::<f64>() / n;
            rows.push(Row {
                server,
                policy,
                label: label(server, policy),
                mode,
                hosts: first.hosts,
                proxy: first.proxy,
                requests_per_sec: these.iter().map(|r| r.requests_per_sec).sum::<f64>() / n,
                ratio_to_hyper: None,
                ratio_to_baseline: None,
                server_cpu_us_per_request: mean(these.iter().map(|r| r.server_cpu_us_per_request)),
                machine_cpu_us_per_request: mean(
                    these.iter().map(|r| r.machine_cpu_us_per_request),
                ),
                machine_cpu_ratio_to_hyper: None,
                server_time_wait: mean_of(|r| r.server_time_wait),
                client_time_wait: mean_of(|r| r.client_time_wait),
                client_time_wait_per_host: first.client_time_wait_per_host.as_ref().map(|hosts| {
                    (0..hosts.len())
                        .map(|i| {
                            let at = |r: &&Run| {
                                r.client_time_wait_per_host
                                    .as_ref()
                                    .and_then(|h| h.get(i))
                                    .map_or(0.0, |&tw| tw as f64)
                            };
                            these.iter().map(at).sum::<f64>() / n
                        })
                        .collect()
                }),
                proxy_time_wait: mean(these.iter().map(|r| r.proxy_time_wait.map(|tw| tw as f64))),
                proxy_upstream_errors: these
                    .iter()
                    .map(|r| r.proxy_upstream_errors)
                    .sum::<Option<u64>>(),
                errors: these.iter().map(|r| r.errors).sum(),
            });
        }
    }
    let find = |rows: &[Row], label: &str, mode: Mode, clients: Clients| {
        rows.iter()
            .find(|r| r.label == label && r.mode == mode && r.clients() == clients)
            .map(|r| (r.requests_per_sec, r.machine_cpu_us_per_request))
    };
    let bases: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                find(&rows, Target::Hyper.name(), r.mode, r.clients()),
                find(&rows, baseline, r.mode, r.clients()),
            )
        })
        .collect();
    for (row, (hyper, base)) in rows.iter_mut().zip(bases) {
        if let Some((rate, _)) = base {
            row.ratio_to_baseline = (rate > 0.0).then(|| row.requests_per_sec / rate);
        }
        let Some((rate, cpu)) = hyper else { continue };
        row.ratio_to_hyper = (rate > 0.0).then(|| row.requests_per_sec / rate);
        row.machine_cpu_ratio_to_hyper = row
            .machine_cpu_us_per_request
            .zip(cpu.filter(|&c| c > 0.0))
            .map(|(ours, hypers)| ours / hypers);
    }
    rows
}

impl Row {
    /// Where the load came from.
    pub fn clients(&self) -> Clients {
        Clients::of(self.hosts, self.proxy)
    }
}

/// `used` CPU time per response, in microseconds.
pub(super) fn per_request(used: Option<std::time::Duration>, requests: u64) -> Option<f64> {
    used.filter(|_| requests > 0)
        .map(|cpu| cpu.as_secs_f64() * 1e6 / requests as f64)
}

/// The mean of the values, `None` if any is `None` (or there are none).
fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let values: Option<Vec<f64>> = values.collect();
    values
        .filter(|v| !v.is_empty())
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keep-alive run of `server` (with `policy`) at `rate`, on loopback or through nginx.
    fn run(server: Target, policy: Option<&'static str>, rate: f64, proxy: bool) -> Run {
        Run {
            server,
            policy,
            mode: Mode::KeepAlive,
            round: 1,
            hosts: None,
            proxy: proxy.then_some(Proxy::Nginx),
            requests: rate as u64,
            requests_per_sec: rate,
            errors: 0,
            error_kinds: None,
            server_cpu_us_per_request: None,
            machine_cpu_us_per_request: None,
            server_time_wait: 0,
            client_time_wait: 0,
            client_time_wait_per_host: None,
            proxy_time_wait: proxy.then_some(7),
            proxy_upstream_errors: proxy.then_some(1),
            client_time_wait_per_source_max: None,
            time_wait_overflow: None,
        }
    }

    #[test]
    fn node_and_node_farewell_swap_places_every_other_round() {
        let server = |target| Server {
            target,
            policy: None,
        };
        let servers = [
            server(Target::Hyper),
            server(Target::Node),
            server(Target::NodeFarewell),
        ];
        let targets = |round| -> Vec<Target> {
            round_order(&servers, round)
                .iter()
                .map(|s| s.target)
                .collect()
        };
        assert_eq!(
            targets(1),
            [Target::Hyper, Target::Node, Target::NodeFarewell]
        );
        assert_eq!(
            targets(2),
            [Target::Hyper, Target::NodeFarewell, Target::Node]
        );
        assert_eq!(targets(3), targets(1));
        let no_node = [server(Target::Hyper), server(Target::FarewellHttp)];
        assert_eq!(round_order(&no_node, 2), no_node);
    }

    #[test]
    fn node_rounds_pair_each_round_and_take_the_median() {
        let mut runs = Vec::new();
        // Round 3 is the noisy one; round 2 ran node+farewell first.
        for (round, plain, attached) in [(1, 100.0, 90.0), (2, 100.0, 95.0), (3, 100.0, 50.0)] {
            let mut p = run(Target::Node, None, plain, false);
            let mut a = run(Target::NodeFarewell, None, attached, false);
            p.round = round;
            a.round = round;
            p.server_cpu_us_per_request = Some(100.0);
            a.server_cpu_us_per_request = Some(100.0 + f64::from(round));
            if round == 2 {
                runs.extend([a, p]);
            } else {
                runs.extend([p, a]);
            }
        }
        runs.push(run(Target::Hyper, None, 500.0, false));
        let pairs = node_rounds(&runs);
        assert_eq!(pairs.len(), 1);
        let pair = &pairs[0];
        assert_eq!((pair.mode, pair.hosts), (Mode::KeepAlive, None));
        let ratios: Vec<f64> = pair.rounds.iter().map(|r| r.ratio).collect();
        assert_eq!(ratios, [0.9, 0.95, 0.5]);
        let firsts: Vec<Target> = pair.rounds.iter().map(|r| r.first).collect();
        assert_eq!(firsts, [Target::Node, Target::NodeFarewell, Target::Node]);
        assert_eq!(pair.median_ratio, Some(0.9));
        assert_eq!(pair.median_cpu_us_delta, Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert!(node_rounds(&runs[6..]).is_empty());
    }

    #[test]
    fn summarise_labels_each_policy_and_divides_by_the_baseline_of_the_same_clients() {
        let runs = [
            run(Target::FarewellHttp, Some("peer-first"), 300.0, false),
            run(Target::FarewellHttp, Some("plain"), 600.0, false),
            run(Target::Hyper, None, 400.0, false),
            run(Target::FarewellHttp, Some("peer-first"), 100.0, true),
            run(Target::FarewellHttp, Some("plain"), 200.0, true),
            run(Target::Hyper, None, 250.0, true),
        ];
        let rows = summarise(&runs, "farewell-http/plain");
        let labels: Vec<(&str, Clients)> = rows
            .iter()
            .map(|r| (r.label.as_str(), r.clients()))
            .collect();
        let proxy = Clients::Proxy(Proxy::Nginx);
        assert_eq!(
            labels,
            [
                ("farewell-http", Clients::Loopback),
                ("farewell-http/plain", Clients::Loopback),
                ("hyper", Clients::Loopback),
                ("farewell-http", proxy),
                ("farewell-http/plain", proxy),
                ("hyper", proxy),
            ]
        );
        let ratios: Vec<(Option<f64>, Option<f64>)> = rows
            .iter()
            .map(|r| (r.ratio_to_baseline, r.ratio_to_hyper))
            .collect();
        assert_eq!(
            ratios,
            [
                (Some(0.5), Some(0.75)),
                (Some(1.0), Some(1.5)),
                (Some(400.0 / 600.0), Some(1.0)),
                (Some(0.5), Some(0.4)),
                (Some(1.0), Some(0.8)),
                (Some(1.25), Some(1.0)),
            ]
        );
        assert_eq!(rows[3].proxy_time_wait, Some(7.0));
        assert_eq!(rows[3].proxy_upstream_errors, Some(1));
        assert_eq!(rows[0].proxy_time_wait, None);
    }
}
