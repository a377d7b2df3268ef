//! `farewell bench KIND`: benchmarks, one module per kind.

use clap::{Args, Subcommand};

pub mod http;

pub const BENCH_HELP: &str = "\
Run a benchmark. Each kind starts what it measures on loopback, runs bounded loads
against it, and prints a table (or --json) to stdout; progress goes to stderr.

Kinds:
  http    wrk against farewell-http, plain hyper and (if installed) nginx:
          requests/s and server TIME-WAIT, with and without `Connection: close`";

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    kind: Option<BenchKind>,
}

#[derive(Subcommand, Debug)]
enum BenchKind {
    /// farewell-http vs plain hyper (and nginx) under wrk: requests/s and server TIME-WAIT.
    #[command(long_about = http::HTTP_HELP)]
    Http(http::HttpArgs),
}

/// Runs the chosen benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.kind {
        Some(BenchKind::Http(args)) => http::run(args),
        None => anyhow::bail!(
            "which benchmark? the kinds so far: http (try `farewell bench http --help`)"
        ),
    }
}
