//! `farewell bench [churn|scale|http|overhead]`: benchmarks, one module per kind.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use farewell_lab::lab::KernelInfo;

use crate::duration::parse_duration;
use farewell_lab::bench::churn::{self, ChurnConfig};
use farewell_lab::bench::scale::{self, ScaleConfig};
use farewell_lab::bench::{BenchReport, ChurnSettings};

pub mod http;
pub mod overhead;

pub const BENCH_HELP: &str = "\
Measure what peer-first costs, side by side with what a server would do without it.

churn: closed-loop clients do connect → HELLO → QUIT → close against three servers the
bench starts on 127.0.0.1, each on its own one-thread runtime with the same FLP/1 handling:
  plain-tokio          writes the goodbye and drops the stream (the baseline)
  farewell-peer-first  hands the stream to a peer-first Closer
  farewell-abort       hands it to an abort Closer (goodbye, then RST)
The runs are interleaved (A B C A B C …) so drift hits all alike. Columns:
  conn/s      completed sessions per second      ratio      conn/s ÷ plain-tokio's
  CPU µs/c    server threads' CPU per session    server TW  TIME-WAIT the kernel kept
  total µs/c  server + clients CPU per session (on loopback each side's system calls also run
              the other side's receive path: under peer-first the server's close() makes the
              client's TIME-WAIT, under plain the client's close() makes the server's)
  leftover    server sockets still open after settling (want 0)
  spread      how far the runs of one server differ
With CAP_NET_ADMIN, each run's TIME-WAIT entries are counted, then removed (SOCK_DESTROY)
so they cannot fill the kernel's table (tcp_max_tw_buckets) under the next run.

scale: N idle clients hold a connection, then the server says goodbye to all at once. The
clients ignore it, so every teardown is pending together: the bench reports the time until
the kernel holds no server socket (goal: within grace + 1 s), server TIME-WAIT (goal 0),
and user-space memory per closing connection (RSS growth ÷ N; goal ≤ 1 KiB). Both ends
live in this process, so N needs 2N descriptors: the bench raises RLIMIT_NOFILE as far as
the system allows and says so if N must shrink.

http: wrk against farewell-http, plain hyper and (if installed) nginx: requests/s and server
TIME-WAIT, with and without `Connection: close` (see `farewell bench http --help`), plus
close-spread: our own client, every connection from its own source address (many clients).

overhead: farewell-http vs plain hyper in instructions per request and per connection
(callgrind) and wrk's keep-alive rate, in one run (see `farewell bench overhead --help`).

With no KIND, runs churn then scale. --quick runs a tiny version of both (for tests).";

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    kind: Option<BenchKind>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Subcommand, Debug)]
enum BenchKind {
    /// Only the churn bench: connections per second and server TIME-WAIT.
    Churn(CommonArgs),
    /// Only the scale bench: N idle clients told goodbye at once.
    Scale(CommonArgs),
    /// farewell-http vs plain hyper (and nginx) under wrk and many-sources clients: requests/s, TIME-WAIT.
    #[command(long_about = http::HTTP_HELP)]
    Http(http::HttpArgs),
    /// farewell-http vs plain hyper: instructions per request (callgrind) and wrk keep-alive rate.
    #[command(long_about = overhead::OVERHEAD_HELP)]
    Overhead(overhead::OverheadArgs),
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// Length of each churn run.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    duration: Duration,
    /// Churn runs per server (interleaved).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    rounds: u64,
    /// Closed-loop churn clients.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Idle clients in the scale bench.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    idle_clients: u64,
    /// Scale bench with 100,000 idle clients (needs ~200,000 descriptors).
    #[arg(long)]
    large: bool,
    /// Peer-first grace in the scale bench.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    grace: Duration,
    /// A tiny run of everything, for tests: 300 ms churn runs, 1 round, 200 idle clients.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object (schema in `farewell bench --help`'s source, src/bench/mod.rs).
    #[arg(long)]
    json: bool,
}

/// Runs the benches and prints the report.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (c, do_churn, do_scale) = match args.kind {
        None => (args.common, true, true),
        Some(BenchKind::Churn(common)) => (common, true, false),
        Some(BenchKind::Scale(common)) => (common, false, true),
        Some(BenchKind::Http(args)) => return http::run(args),
        Some(BenchKind::Overhead(args)) => return overhead::run(args),
    };
    let c = &c;
    let churn_config = ChurnConfig {
        duration: if c.quick {
            Duration::from_millis(300)
        } else {
            c.duration
        },
        rounds: if c.quick { 1 } else { c.rounds as usize },
        clients: if c.quick { 8 } else { c.clients as usize },
    };
    let wanted = if c.quick {
        200
    } else if c.large {
        100_000
    } else {
        c.idle_clients as usize
    };
    let scale_config = ScaleConfig {
        clients: if do_scale {
            scale::fit_clients(wanted)
        } else {
            wanted
        },
        grace: if c.quick {
            Duration::from_millis(300)
        } else {
            c.grace
        },
    };
    let kernel = KernelInfo::read();
    if !c.json {
        eprintln!("{}", kernel.header());
    }
    if do_scale && scale_config.clients < wanted {
        eprintln!(
            "farewell: the descriptor limit allows {} idle clients, not {wanted} (raise `ulimit -n`, or run as root)",
            scale_config.clients
        );
    }

    let mut report = BenchReport {
        kernel,
        churn: None,
        servers: Vec::new(),
        scale: None,
    };
    if do_churn {
        let runs = (churn_config.rounds * churn::SERVER_COUNT) as u64;
        let bar = progress(runs, "churn runs");
        let servers = churn::run(&churn_config, |name| {
            bar.set_message(name.to_string());
            bar.inc(1);
        })?;
        bar.finish_and_clear();
        report.churn = Some(ChurnSettings {
            duration_ms: churn_config.duration.as_millis() as u64,
            rounds: churn_config.rounds,
            clients: churn_config.clients,
        });
        report.servers = servers;
    }
    if do_scale {
        let bar = progress(scale_config.clients as u64, "idle clients connected");
        let tick = bar.clone();
        let result = scale::run(&scale_config, move |n| tick.inc(n));
        bar.finish_and_clear();
        report.scale = Some(result.context("the scale bench failed")?);
    }

    crate::cmd::print_report(
        c.json,
        || Ok(serde_json::to_string_pretty(&report)?),
        || report.table(),
    )
}

fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = super::progress::bar(len, what);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {{bar:40}} {{pos}}/{{len}} {what} {{msg}} {{elapsed}}"
        ))
        .expect("valid template"),
    );
    bar
}
