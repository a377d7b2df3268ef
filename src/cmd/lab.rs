//! `farewell lab`: every policy against every peer behaviour, judged by the kernel.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use farewell_lab::lab::{self, ChurnConfig, LabConfig};

use crate::duration::parse_duration;

pub const LAB_HELP: &str = "\
Run every teardown policy against every peer behaviour on this kernel and print the matrix.

Each cell is one policy (plain, lingering, lingering-reset, fin-then-reset, abort, silent,
peer-first) against one peer behaviour, run on real connections:
  cooperative        reads the goodbye, then closes
  ignores            reads everything, closes only when the run ends
  never-handshakes   connects and never sends a byte; the goodbye is \"BYE handshake-timeout\".
                     It reads (a client of a server-speaks-first protocol waits for the
                     server's first line), ignores the goodbye, and closes on EOF
  never-reads        never reads, with its window filled: the goodbye cannot be delivered
  floods             writes as fast as it can while the server tears down
  resets-first       resets the connection before the teardown
  half-closes-first  sends its FIN first, then reads until EOF
  vanishes           its host disappears before the teardown: nothing it sends or answers
                     arrives. Played in two network namespaces joined by a veth pair (server
                     in one, clients in the other; the clients' address is removed); needs
                     CAP_NET_ADMIN, and the cells say \"skipped: needs CAP_NET_ADMIN\" without.
The other behaviours run on 127.0.0.1. The server side sends the goodbye \"BYE quit\" and is
torn down with the policy; the kernel's own socket table (sock_diag) then says who holds
TIME-WAIT. silent needs CAP_NET_ADMIN and is skipped without.

How to read a row:
  server TW    connections whose server end the kernel kept in TIME-WAIT (want 0)
  client TW    connections whose client end kept TIME-WAIT (the peer paying for it is fine)
  delivered    % of client applications that received the whole goodbye
  acked        % of outcomes that confirmed the goodbye ACKed by the peer's kernel
  lost B       goodbye bytes the client applications did not receive, summed
  release      median / p99 time until the server closed its descriptor (timed by the lab)
  leftover     server sockets still in the table, not in TIME-WAIT, after settling (want 0);
               against a vanished peer, plain and lingering leave a FIN-WAIT-1 orphan that
               retransmits for minutes: the lab reports it, destroys it and moves on
  paths        how each teardown ended (Outcome path) and how often

A never-reading peer cannot get the goodbye whatever the policy; a peer that resets first
gets nothing. The verdict lines under the table summarise each policy from the data.
The kernel release and TIME-WAIT settings go to stderr (inside \"kernel\" with --json).

--churn adds a sustained run per policy: cooperative clients connect at --rate per second for
--duration, each from its own 127.1.x.y source address (so the client side never runs out of
ports), and the census counts the port's TIME-WAIT entries every 100 ms. Its table shows, per
policy, the connections, the rate achieved and the peak and final server TIME-WAIT.

--report DIR writes DIR/index.html: one self-contained page (inline CSS and SVG, no scripts)
with the release-time distribution of every policy and, with --churn, TIME-WAIT over time.

Ctrl-C stops the lab, deletes its network namespaces and exits with status 130; namespaces
left by a run that was killed outright are deleted by the next run.";

#[derive(Args, Debug)]
pub struct LabArgs {
    /// Connections per cell.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub connections: u64,
    /// The lab's main deadline, e.g. 300ms or 1s: peer-first's grace (and ACK wait); the
    /// other policies' deadlines scale with it.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    grace: Duration,
    /// How many cells run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    concurrency: u64,
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
    let config = LabConfig {
        connections: args.connections as usize,
        grace: args.grace,
        concurrency: args.concurrency as usize,
        churn: args.churn.then(|| ChurnConfig {
            rate: args.rate,
            duration: args.duration,
            grace: args.grace,
            ..ChurnConfig::default()
        }),
        ..LabConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if lab::netns::unavailable().is_none() {
        for name in lab::netns::remove_stale() {
            eprintln!("removed network namespace {name}, left by an earlier run that was killed");
        }
    }
    if !args.json {
        // The header goes first, so a reader knows what is running while it runs.
        eprintln!("{}", lab::KernelInfo::read().header());
        eprintln!(
            "{} connections per cell, grace {:?}, at most {} cells at once, on {}",
            config.connections, config.grace, config.concurrency, config.ip
        );
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
