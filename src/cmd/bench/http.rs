//! `farewell bench http`: parse the flags, run the engine
//! ([`farewell_lab::bench::http`]), print the table or the JSON.

use std::time::Duration;

use clap::Args;
use farewell::Policy;
use farewell_lab::bench::http::{self, Clients, HttpConfig, Mode, Proxy, WrkSettings};

use crate::duration::parse_duration_in;

pub const HTTP_HELP: &str = "\
Benchmark farewell-http against plain hyper (and nginx, if installed) with wrk, and with a
client of our own that models many client hosts.

Each run starts a fresh server on its own loopback port (so the TIME-WAIT count is that run's
alone): farewell-http with peer-first, plain hyper-util with the same handler (GET / answers
`hello from farewell-http`), and nginx with a generated config (temp dir, its own pid and log
files, `return 200` with the same body; stopped after: SIGQUIT, then
SIGKILL to its process group). Runs are interleaved (A B C A B C ...)
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
  server       farewell-http, hyper (plain hyper-util), nginx; with --node also node (a Node.js
               http.Server, crates/farewell-node/js/fixture/server.mjs) and node+farewell (the
               same with farewell.attach(server)); their CPU µs/r is the node process's
  mode         close, close-spread or keep-alive (above)
  clients      where the load came from: `lo, 1 wrk`, `lo, spread` (loopback), `N hosts` or
               `N hosts, spread` (--hosts, below)
  req/s        responses per second (wrk's Requests/sec in the wrk modes), mean over rounds
  vs hyper     req/s divided by plain hyper's in the same mode and clients
  CPU µs/r     the in-process server's threads' CPU time per response (- for nginx, another
               process); loopback's kernel work is charged partly to the client's threads,
               so compare rows, not absolute costs
  all µs/r     the whole machine's busy CPU time during the load (every process: server,
               clients, kernel; /proc/stat) per response: what a response cost everyone,
               wherever loopback charged it; nginx gets a figure too. Anything else running
               on the machine adds to it
  all vs hy    all µs/r divided by plain hyper's in the same mode and clients. Closed-loop
               runs keep the cores busy, so there it mostly mirrors the rate's ratio; with
               --rate below every server's capacity it is each response's cost, side by side
  server TW    TIME-WAIT entries on the server's port after the run (census, sock_diag),
               mean over the rounds
  client TW    TIME-WAIT entries whose remote port is the server's port, i.e. the clients'
               (wrk's, or all 127.1.x.y sources'; with --hosts all the hosts'), mean over
               the rounds
  errors       wrk socket errors + non-2xx responses; close-spread: failed connects,
               timeouts, resets and bad responses; summed over the rounds

With CAP_NET_ADMIN both sides' TIME-WAIT entries are removed (SOCK_DESTROY) after they are
counted, so no run inherits a full TIME-WAIT table (tcp_max_tw_buckets) from the one before;
a close-spread run also stops after 3/4 of tcp_max_tw_buckets connections (its rate is taken
over the time it ran). If the table overflows during a run anyway, a note under the table says
so (the TW columns are capped there).

--hosts N also runs the modes from N client hosts: N network namespaces, each joined to a
server namespace by its own veth pair (private addresses 10.201.i.1/.2 that exist only inside
them), made fresh for every run, so every server starts with an empty TIME-WAIT table; the
servers listen inside the server namespace (nginx through `ip netns exec`). In the wrk modes
each host runs `wrk -t1` with --connections shared out among the hosts (clients `N hosts`):
one source address per host, so under peer-first each wrk still holds thousands of TIME-WAIT
entries and pays for them in connect(). In close-spread (clients `N hosts, spread`) each host
runs our own client on one thread of its own, inside its namespace, with its share of the
connections, each connection from the next of the host's own 65024 source addresses (host i
owns 10.(128+i).0.0/16 by a local route; the server namespace routes it back over that host's
veth), so each source holds a few entries, as real client hosts do; every response is checked
as on loopback, and the run's request budget is shared out among the hosts. req/s are summed
over the hosts. The TW columns are the census inside the server namespace and inside the
hosts' namespaces; under the table, each many-host row's TIME-WAIT per host (census in each
host's namespace, toward the server; JSON: client_time_wait_per_host). --json adds to each
many-host run client_time_wait_per_source_max, the most entries one client source address
holds (a wrk: all its host's; spread: a few). Needs
CAP_NET_ADMIN and CAP_SYS_ADMIN (without them the many-host runs are skipped with a message).

With --node, node and node+farewell swap places every other round (node first in odd rounds),
and under the table each mode and clients get the pair round by round: the ratio of the rates
(node+farewell over node in the same round), the node process's CPU µs per response of each,
and the medians (JSON: node_rounds), so that one noisy round does not decide the figure.
--node-only runs the Node rows alone (no farewell-http, hyper nor nginx; baseline node), so
that more rounds fit: e.g. --node-only --hosts 4 --modes close --rounds 8.

--tls serves TLS instead: farewell-http (close_notify, no FIN, then peer-first), plain hyper on
tokio-rustls (its shutdown sends close_notify and a FIN), and nginx with `ssl`, all with a
self-signed certificate made for the run; wrk speaks https (it does not verify certificates).
The close-spread mode is left out then: its client speaks plain HTTP only.

--policy NAMES runs farewell-http once per teardown policy given (comma-separated; default
peer-first), each with rows of its own, labelled `farewell-http` for peer-first and
`farewell-http/NAME` for the others (`--policy peer-first,plain`: farewell-http's default
against the same server closing first, side by side in one run). --baseline LABEL adds a
`vs base` column (JSON: ratio_to_baseline): each row's req/s over that row's, in the same mode
and clients; e.g. --baseline farewell-http/plain. The default, hyper, is the `vs hyper` column.

--proxy nginx also runs the wrk modes through a reverse proxy, the heavy client of a real
deployment: nginx with its DEFAULT upstream settings (no proxy_http_version, so HTTP/1.0 with
`Connection: close`; no keepalive: one new upstream connection per request, which nginx closes
itself once it has read the response). Per run, fresh: the server (each farewell-http policy,
plain hyper) listens in a server namespace (10.201.0.1:8080); nginx listens on 127.0.0.1:8080
in a proxy namespace joined to it by a veth pair (10.201.0.2), and wrk (--threads,
--connections, keep-alive or close as the mode says) runs in the proxy namespace into nginx.
Under peer-first the server never sends the first FIN, so every upstream connection leaves
its TIME-WAIT with the proxy, all on one source address toward one server port: nginx's
connect() searches its ~28k ephemeral ports past them for a free one (the rate falls, the
machine's CPU per request rises), and once all are held it fails (502s, `upstream` lines in
its error log). A server that closes first keeps them itself. The proxy rows get a table of
their own:
  proxy TW     TIME-WAIT entries in the proxy namespace toward the server's address and port
               (census inside that namespace), mean over the rounds
  server TW    TIME-WAIT entries in the server namespace (census inside it)
  errors       wrk's socket errors + non-2xx responses (nginx's 502/504)
  upstr err    lines of nginx's error log naming `upstream` (failed connects, resets or early
               closes while reading the response), summed over the rounds
--json gives the same per run and row (proxy, proxy_time_wait, proxy_upstream_errors;
client_time_wait there is wrk's toward nginx). close-spread does not run through the proxy;
--tls and --proxy do not mix. Needs CAP_NET_ADMIN and nginx (else skipped with a message).

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
    #[arg(long, value_enum, value_delimiter = ',', value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Mode>()), default_value = "close,close-spread,keep-alive")]
    modes: Vec<Mode>,
    /// Leave nginx out even if installed.
    #[arg(long)]
    no_nginx: bool,
    /// Also run Node.js: a plain http.Server (`node`) and the same with farewell.attach
    /// (`node+farewell`); needs node and the addon (cargo build --release -p farewell-node).
    #[arg(long)]
    node: bool,
    /// Only the Node rows (node, node+farewell; implies --node): more rounds of the pair in the
    /// same time. The baseline is then node unless --baseline says node+farewell.
    #[arg(long)]
    node_only: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also run the modes from N client hosts (network namespaces over veth pairs; close-spread
    /// from many source addresses per host; needs CAP_NET_ADMIN).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(http::MAX_HOSTS)))]
    hosts: Option<u32>,
    /// Serve TLS: farewell-http, hyper on tokio-rustls and nginx with ssl, a self-signed certificate
    /// made for the run; wrk over https (close-spread is left out: its client speaks plain HTTP).
    #[arg(long, conflicts_with = "proxy")]
    tls: bool,
    /// farewell-http's teardown policies, comma-separated: one farewell-http row per policy
    /// (`farewell-http` for peer-first, `farewell-http/NAME` for the others).
    #[arg(long, value_name = "NAMES", value_delimiter = ',', default_value = "peer-first", value_parser = clap::builder::PossibleValuesParser::new(Policy::NAMES))]
    policy: Vec<String>,
    /// The row each row's req/s is divided by (`vs base`, ratio_to_baseline), by its label:
    /// hyper, nginx, farewell-http or farewell-http/NAME.
    #[arg(long, value_name = "LABEL", default_value = "hyper")]
    baseline: String,
    /// Also run the wrk modes through this reverse proxy (nginx, default upstream settings: a new
    /// HTTP/1.0 connection per request) in its own namespace, in front of each server in another;
    /// reports the proxy's and the server's TIME-WAIT (needs CAP_NET_ADMIN).
    #[arg(long, value_name = "PROXY", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Proxy>()))]
    proxy: Option<Proxy>,
    /// close-spread: start at most R requests per second in all (paced: request k starts at
    /// k/R s, when a connection is free), from loopback and from the hosts alike. Below what
    /// the machine can take, nothing saturates, so `all µs/r` is what each response cost the
    /// machine rather than a restatement of the rate; pick R under every server's req/s of an
    /// unpaced run.
    #[arg(long, value_name = "R", value_parser = positive_rate)]
    rate: Option<f64>,
}

/// A request rate: a finite number above 0.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{s}` is not a rate: give requests per second, a number above 0 (e.g. 8000)"
        )),
    }
}

/// Runs the benchmark and prints the report.
pub fn run(args: HttpArgs) -> anyhow::Result<()> {
    let wrk = if args.quick {
        WrkSettings::QUICK
    } else {
        WrkSettings {
            threads: args.threads,
            connections: args.connections,
            duration_s: args.duration.as_secs_f64(),
            rounds: args.rounds,
            max_responses_per_thread: None,
        }
    };
    let policies = args
        .policy
        .iter()
        .map(|name| name.parse::<Policy>())
        .collect::<Result<Vec<_>, _>>()?;
    let config = HttpConfig {
        wrk,
        modes: args.modes,
        nginx: !args.no_nginx,
        node: args.node || args.node_only,
        node_only: args.node_only,
        tls: args.tls,
        hosts: args.hosts,
        rate: args.rate,
        policies,
        // --node-only has no hyper row: its default baseline is plain node.
        baseline: if args.node_only && args.baseline == "hyper" {
            "node".to_owned()
        } else {
            args.baseline
        },
        proxy: args.proxy,
    };
    let report = http::run(&config, |server, mode, clients, round| {
        let clients = match clients {
            Clients::Loopback => String::new(),
            Clients::Hosts(n) => format!(" from {n} hosts"),
            Clients::Proxy(proxy) => format!(" behind {proxy}"),
        };
        eprintln!(
            "{} {mode}{clients} round {round}/{}",
            server.label(),
            wrk.rounds
        );
    })?;
    crate::cmd::print_report(
        args.json,
        || Ok(serde_json::to_string_pretty(&report)?),
        || report.table(),
    )
}
