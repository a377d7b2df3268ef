//! `farewell lab`: every policy against every peer behaviour, judged by the kernel.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use farewell_lab::lab::path::PathSpec;
use farewell_lab::lab::{self, ChurnConfig, HeavyConfig, LabConfig};

use crate::duration::parse_duration;

pub const LAB_HELP: &str = "\
Run every teardown policy against every peer behaviour on this kernel, over real network
paths, and print the matrix.

Each cell is one policy (plain, lingering, lingering-reset, fin-then-reset, abort, silent,
peer-first) against one peer behaviour on one path, run on real connections:
  cooperative        reads the goodbye, then closes
  slow-reader        a cooperative peer with a 16 KiB receive buffer (set before it connects)
                     that reads 4 KiB every 20 ms (200 KiB/s) until it has the whole goodbye
  ignores            reads everything, closes only when the run ends
  never-handshakes   connects and never sends a byte; the goodbye is \"BYE handshake-timeout\".
                     It reads (a client of a server-speaks-first protocol waits for the
                     server's first line), ignores the goodbye, and closes on EOF
  never-reads        never reads, with its window filled: the goodbye cannot be delivered
  floods             writes as fast as it can while the server tears down
  resets-first       resets the connection before the teardown
  half-closes-first  sends its FIN first, then reads until EOF
  vanishes           its host disappears before the teardown: nothing it sends or answers
                     arrives. Played in network namespaces of its own (a veth pair for the
                     loopback column, a path like the column's otherwise; the clients'
                     address is removed); needs CAP_NET_ADMIN, and the cells say
                     \"skipped: needs CAP_NET_ADMIN\" without.
The server side says the goodbye and is torn down with the policy; the kernel's own socket
table (sock_diag) then says who holds TIME-WAIT. The goodbye is the line \"BYE quit\", except
for cooperative and slow-reader peers, who get a large last message (--large-goodbye, like a
last HTTP response: a pattern, then the line). Every peer checks every byte it received.
silent needs CAP_NET_ADMIN and is skipped without.

Paths (--path, repeatable or comma-separated; the header names each path's mechanism and its
measured round-trip time):
  loopback                 127.0.0.1: no rate limit, delay or loss
  slow[:rate=R,queue=N]    two namespaces joined by a veth pair, htb rate limit both ways
                           (default 4mbit, 32-frame queue)
  wan[:delay=D,loss=P,rate=R]
                           three namespaces: a user-space forwarder in the middle holds every
                           frame D each way, nftables drops P% at random (default 20ms, 1%)
Without --path the lab runs on loopback and, with CAP_NET_ADMIN, on slow. Loopback alone
hides what a teardown loses on a network; the output says so loudly when that is all it ran.

How to read a row:
  goodbye B    the goodbye's length: the line, or the large last message
  server TW    connections whose server end the kernel kept in TIME-WAIT (want 0)
  client TW    connections whose client end kept TIME-WAIT (the peer paying for it is fine)
  delivered    % of client applications that received the whole goodbye, every byte intact
  acked        % of outcomes that confirmed the goodbye ACKed by the peer's kernel
  lost B       goodbye bytes the client applications did not receive, summed
  release      median / p99 time until the server closed its descriptor (timed by the lab)
  leftover     server sockets still in the table, not in TIME-WAIT, after settling (want 0);
               against a vanished peer, plain and lingering leave a FIN-WAIT-1 orphan that
               retransmits for minutes: the lab reports it, destroys it and moves on
  paths        how each teardown ended (Outcome ending) and how often

A never-reading peer cannot get the goodbye whatever the policy; a peer that resets first
gets nothing. The verdict lines under the tables summarise each policy on each path from what
the peers received. The kernel release and TIME-WAIT settings go to stderr (inside \"kernel\"
with --json, the paths inside \"paths\").

--churn adds a sustained run per policy on loopback: cooperative clients connect at --rate per
second for --duration, each from its own 127.1.x.y source address (so the client side never
runs out of ports), and the census counts the port's TIME-WAIT entries every 100 ms. Its table
shows, per policy, the connections, the rate achieved and the peak and final server TIME-WAIT.

--heavy adds a heavy client next to a light one, per policy (plain, lingering, fin-then-reset,
abort, and peer-first with each peer-time-wait: auto, keep, spare), over the first --path that is
not loopback, else slow (loopback without CAP_NET_ADMIN, with a warning), in namespaces of its
own. The heavy client is ONE address (ephemeral ports from the kernel, 4 connections in flight)
that reads the goodbye and closes, as fast as it can, for --heavy-duration or
--heavy-connections, whichever comes first; the light client opens --light-connections from
another address meanwhile. Each policy gets one closer with --heavy-threshold (the heavy-client
threshold, endings per minute). Its table shows, per policy and client: connections done (the
whole goodbye received) and failed, connect() calls per second and the slowest, TIME-WAIT of
the client's ends and of the server's ends toward it (the census of each namespace, by the
listener's port), goodbye bytes lost, and how the teardowns ended. Expect, under peer-first/auto,
the heavy client to keep about the threshold in TIME-WAIT (its first endings of the minute),
every later ending a reset after its FIN (reset-after-peer-fin), the light client one per
connection, the server none; under plain, the server one per connection; under abort nobody,
but goodbyes lost over a slow path.

--report DIR writes DIR/index.html: one self-contained page (inline CSS and SVG, no scripts)
with each path's matrix as a policy × behaviour grid coloured by server TIME-WAIT and lost
bytes, the release-time distribution of every policy and, with --churn, TIME-WAIT over time;
with --heavy, its table.

Ctrl-C stops the lab, deletes its network namespaces and exits with status 130; namespaces
left by a run that was killed outright are deleted by the next run.";

#[derive(Args, Debug)]
pub struct LabArgs {
    /// Connections per cell.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub connections: u64,
    /// The lab's time scale G, e.g. 300ms or 1s, from which every policy's deadlines derive
    /// (so that cells compare): peer-first's grace G; every stall timeout 2G (plus a path's
    /// slack); every delivery timeout 30G (at most 8 s), lingering's 5G.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    grace: Duration,
    /// How many cells run at once (over all paths).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=64))]
    concurrency: u64,
    /// The network paths every cell runs on: loopback, slow, wan, or one with settings
    /// (slow:rate=500kbit,queue=16; wan:delay=50ms,loss=2%). Repeatable or comma-separated.
    /// Default: loopback, and slow with CAP_NET_ADMIN.
    #[arg(long = "path", value_name = "PATH", value_parser = parse_paths)]
    paths: Vec<Vec<PathSpec>>,
    /// The large last message said to cooperative and slow-reader peers, in bytes (K/KiB,
    /// M/MiB suffixes); 0 gives them the goodbye line like every other peer.
    #[arg(long, default_value = "128KiB", value_parser = parse_size)]
    large_goodbye: usize,
    /// Print one JSON object instead of the table (schema: the farewell_lab::lab docs).
    #[arg(long)]
    json: bool,
    /// Also run the churn: a sustained connection rate per policy, TIME-WAIT sampled every 100 ms.
    #[arg(long)]
    churn: bool,
    /// Churn: new connections per second.
    #[arg(long, default_value_t = 200, requires = "churn",
          value_parser = clap::value_parser!(u32).range(1..=5000))]
    rate: u32,
    /// Churn: how long each policy opens connections, e.g. 3s (at most 1m).
    #[arg(long, default_value = "3s", requires = "churn", value_parser = parse_duration)]
    duration: Duration,
    /// Also run a heavy client next to a light one, per policy: who keeps TIME-WAIT when one
    /// address churns connections (see below).
    #[arg(long)]
    heavy: bool,
    /// Heavy client: at most this many connections per policy.
    #[arg(long, default_value_t = 3000, requires = "heavy",
          value_parser = clap::value_parser!(u64).range(1..=20_000))]
    heavy_connections: u64,
    /// Heavy client: at most this long per policy, e.g. 2s (at most 30s).
    #[arg(long, default_value = "2s", requires = "heavy", value_parser = parse_duration)]
    heavy_duration: Duration,
    /// Light client: connections per policy, from another address.
    #[arg(long, default_value_t = 5, requires = "heavy",
          value_parser = clap::value_parser!(u64).range(0..=100))]
    light_connections: u64,
    /// The closer's heavy-client threshold: endings per client address and minute above which
    /// peer-first/auto resets after the client's FIN.
    #[arg(long, default_value_t = farewell::DEFAULT_HEAVY_CLIENT_THRESHOLD, requires = "heavy")]
    heavy_threshold: u32,
    /// Write a self-contained HTML page with SVG charts to DIR/index.html.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

/// Runs the lab and prints the matrix.
pub fn run(args: LabArgs) -> anyhow::Result<()> {
    if args.duration > Duration::from_secs(60) {
        bail!(
            "--duration {:?} is too long\nhint: the churn runs per policy; use at most 1m",
            args.duration
        );
    }
    if args.heavy_duration > Duration::from_secs(30) || args.heavy_duration.is_zero() {
        bail!(
            "--heavy-duration {:?} is out of range\nhint: the heavy client runs per policy; use \
             from 1ms to 30s",
            args.heavy_duration
        );
    }
    let mut config = LabConfig {
        connections: args.connections as usize,
        grace: args.grace,
        concurrency: args.concurrency as usize,
        large_goodbye: args.large_goodbye,
        churn: args.churn.then(|| ChurnConfig {
            rate: args.rate,
            duration: args.duration,
            grace: args.grace,
            ..ChurnConfig::default()
        }),
        ..LabConfig::default()
    };
    if !args.paths.is_empty() {
        config.paths = args.paths.into_iter().flatten().collect();
    }
    if args.heavy {
        config.heavy = Some(HeavyConfig {
            path: lab::heavy_path(&config.paths),
            connections: args.heavy_connections as usize,
            duration: args.heavy_duration,
            light: args.light_connections as usize,
            threshold: args.heavy_threshold,
            grace: args.grace,
            ..HeavyConfig::default()
        });
    }
    for spec in &config.paths {
        if let Some(why) = spec.kind().unavailable() {
            bail!(
                "the {} path {why}\nhint: run as root, or with CAP_NET_ADMIN and \
                 CAP_SYS_ADMIN and the ip, tc and nft tools; or use --path loopback",
                spec.kind()
            );
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if lab::netns::unavailable().is_none() {
        for name in lab::netns::remove_stale() {
            eprintln!("removed network namespace {name}, left by an earlier run that was killed");
        }
    }
    if !args.json {
        // The header goes first, so a reader knows what is running while it runs.
        eprintln!("{}", lab::KernelInfo::read().header());
        let paths: Vec<String> = config.paths.iter().map(lab::path_name).collect();
        eprintln!(
            "{} connections per cell, grace {:?}, at most {} cells at once, paths {}, \
             large goodbye {} B",
            config.connections,
            config.grace,
            config.concurrency,
            paths.join(", "),
            config.large_goodbye
        );
        if config.paths.iter().all(|p| *p == PathSpec::Loopback) {
            let net_admin = lab::KernelInfo::read().net_admin;
            eprintln!("WARNING: {}", lab::loopback_only_warning(net_admin));
        }
        if let Some(heavy) = &config.heavy {
            eprintln!(
                "heavy client: up to {} connections or {:?} per policy, {} light, threshold {}, \
                 on {}",
                heavy.connections,
                heavy.duration,
                heavy.light,
                heavy.threshold,
                lab::path_name(&heavy.path)
            );
            if heavy.path == PathSpec::Loopback {
                eprintln!(
                    "WARNING: the heavy client runs on loopback: no namespace can be made here \
                     (run as root); nothing is lost on the way and connect() rates are loopback's"
                );
            }
        }
    }

    let bar = super::progress::bar(lab::planned_connections(&config), "connections");
    let tick = bar.clone();
    let report = runtime.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::select! {
            // Polled first, so the handler is in place before any namespace exists.
            biased;
            _ = ctrl_c => None,
            report = lab::run(&config, Arc::new(move || tick.inc(1))) => Some(report),
        }
    });
    bar.finish_and_clear();
    let Some(report) = report else {
        // The lab's future was dropped: its namespaces were deleted with it, and
        // dropping the runtime waits for the blocking tasks that own the rest.
        drop(runtime);
        eprintln!("farewell: interrupted; the lab's sockets and network namespaces are cleaned up");
        std::process::exit(130);
    };
    let report = match report {
        Ok(report) => report,
        Err(e @ (lab::LabError::Census(_) | lab::LabError::CensusBlind)) => bail!(
            "{e}\nhint: the lab judges TIME-WAIT by the kernel's table (sock_diag netlink, \
             or /proc/net/tcp); run it on Linux where one of them is readable"
        ),
        Err(e) => return Err(e).context("the lab could not run"),
    };

    if let Some(dir) = &args.report {
        let path = lab::html::write(&report, dir)
            .with_context(|| format!("writing the report to {}", dir.display()))?;
        eprintln!("report: {}", path.display());
    }
    super::print_report(args.json, || Ok(report.to_json()), || report.table())
}

/// `--path`: one path or several separated by commas. A comma also
/// separates a path's own settings (`wan:delay=50ms,loss=2%`), so a piece
/// that is a `key=value` setting belongs to the path before it.
fn parse_paths(text: &str) -> Result<Vec<PathSpec>, String> {
    let mut specs: Vec<String> = Vec::new();
    for piece in text.split(',') {
        let setting = piece.contains('=') && !piece.contains(':');
        match specs.last_mut() {
            Some(last) if setting => {
                last.push(',');
                last.push_str(piece);
            }
            _ => specs.push(piece.trim().to_owned()),
        }
    }
    specs
        .iter()
        .map(|s| s.parse::<PathSpec>().map_err(|e| e.to_string()))
        .collect()
}

/// `--large-goodbye`: bytes, with an optional K/KiB (1024) or M/MiB suffix.
fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (number, scale) = [("kib", 1024), ("k", 1024), ("mib", 1 << 20), ("m", 1 << 20)]
        .iter()
        .find_map(|(suffix, scale)| lower.strip_suffix(suffix).map(|n| (n.trim(), *scale)))
        .unwrap_or((lower.trim_end_matches('b'), 1));
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n <= 64 << 20)
        .ok_or_else(|| format!("{text:?} is not a size up to 64MiB (e.g. 128KiB, 1MiB, 0)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_on_commas_but_keep_their_settings() {
        let specs = parse_paths("loopback,slow:rate=500kbit,queue=16,wan:delay=50ms,loss=2%")
            .expect("parses");
        let texts: Vec<String> = specs.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "loopback",
                "slow:rate=500000bit,queue=16",
                "wan:delay=50ms,loss=2%"
            ]
        );
        assert!(parse_paths("lan").is_err());
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("128KiB"), Ok(128 * 1024));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1GiB").is_err());
    }
}
