//! `farewell`: the command-line tool over the farewell library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use farewell::lab::{self, LabConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// End TCP connections the right way: the peer gets the last bytes, the server keeps no TIME_WAIT.
#[derive(Parser, Debug)]
#[command(name = "farewell", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every teardown policy against every peer behaviour on this kernel and print the matrix.
    #[command(long_about = LAB_HELP)]
    Lab(LabArgs),
}

const LAB_HELP: &str = "\
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
struct LabArgs {
    /// Connections per cell.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    connections: u64,
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

/// Parses `300ms`, `1s`, `1.5s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 300ms or 1s"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        _ => return Err(format!("{s:?} needs a unit: ms or s (e.g. 300ms)")),
    };
    if !(0.001..=60.0).contains(&secs) {
        return Err(format!("{s:?} is out of range: 1ms to 60s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lab(args) => run_lab(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stdout (e.g. `farewell lab | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("farewell: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_lab(args: LabArgs) -> anyhow::Result<()> {
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
