//! `farewell lab`: every policy against every peer behaviour, judged by the kernel.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use farewell::lab::{self, LabConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::duration::parse_duration;

pub const LAB_HELP: &str = "\
Run every teardown policy against every peer behaviour on this kernel and print the matrix.

Each cell is one policy (plain, lingering, lingering-reset, fin-then-reset, abort, silent,
peer-first) against one peer behaviour (cooperative, ignores, never-reads, floods,
resets-first, half-closes-first), run on real loopback connections. The server side sends
the goodbye \"BYE quit\" and is torn down with the policy; the kernel's own socket table
(sock_diag) then says who holds TIME-WAIT. silent needs CAP_NET_ADMIN and is skipped without.

How to read a row:
  server TW    connections whose server end the kernel kept in TIME-WAIT (want 0)
  client TW    connections whose client end kept TIME-WAIT (the peer paying for it is fine)
  delivered    % of client applications that received the whole goodbye
  acked        % of outcomes that confirmed the goodbye ACKed by the peer's kernel
  lost B       goodbye bytes the client applications did not receive, summed
  release      median / max time until the server closed its descriptor
  leftover     server sockets still in the table, not in TIME-WAIT, after settling (want 0)
  paths        how each teardown ended (Outcome path) and how often

A never-reading peer cannot get the goodbye whatever the policy; a peer that resets first
gets nothing. The verdict lines under the table summarise each policy from the data.
The kernel release and TIME-WAIT settings go to stderr (inside \"kernel\" with --json).";

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
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs the lab and prints the matrix.
pub fn run(args: LabArgs) -> anyhow::Result<()> {
    let config = LabConfig {
        connections: args.connections as usize,
        grace: args.grace,
        concurrency: args.concurrency as usize,
        ..LabConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if !args.json {
        // The header goes first, so a reader knows what is running while it runs.
        eprintln!("{}", lab::KernelInfo::read().header());
        eprintln!(
            "{} connections per cell, grace {:?}, at most {} cells at once, on {}",
            config.connections, config.grace, config.concurrency, config.ip
        );
    }

    let bar = ProgressBar::with_draw_target(
        Some(lab::planned_connections(&config)),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} connections {elapsed}")
            .expect("valid template"),
    );
    let tick = bar.clone();
    let report = runtime.block_on(lab::run(&config, Arc::new(move || tick.inc(1))));
    bar.finish_and_clear();
    let report = match report {
        Ok(report) => report,
        Err(e @ (lab::LabError::Census(_) | lab::LabError::CensusBlind)) => bail!(
            "{e}\nhint: the lab judges TIME-WAIT by the kernel's table (sock_diag netlink, \
             or /proc/net/tcp); run it on Linux where one of them is readable"
        ),
        Err(e) => return Err(e).context("the lab could not run"),
    };

    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", report.to_json())?;
    } else {
        write!(stdout, "{}", report.table())?;
    }
    stdout.flush()?;
    Ok(())
}
