//! `farewell bench overhead`: parse the flags, run the engine
//! ([`farewell_lab::bench::overhead`]), print the table or the JSON.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use farewell_lab::bench::http::WrkSettings;
use farewell_lab::bench::overhead::{self, OverheadConfig};

use crate::duration::parse_duration;

pub const OVERHEAD_HELP: &str = "\
What farewell-http costs over plain hyper, in instructions (callgrind) and in wrk's keep-alive
rate, side by side in one run: the figures of the README's performance table, on your machine.

The server is farewell-http's `overhead` example: the demo handler (GET / answers `hello from
farewell-http`) on one thread, served by farewell-http (defaults: peer-first) or by plain
hyper-util. This command builds nothing; build the example first, in release mode:

    cargo build --release -p farewell-http --example overhead

It lands in target/release/examples/, where this command looks for it (next to the farewell
binary: DIR/examples/overhead for DIR/farewell); --binary PATH names another.

Instructions: each server runs under `valgrind --tool=callgrind` twice per mode, with N1 and N2
requests from a client in this process (outside valgrind; every response checked):
  keep-alive  all requests on one connection; also once for plain hyper with its own HTTP/1
              header-read timeout (`hyper-timeouts`, 30 s on hyper-util's TokioTimer): the
              one bound hyper offers, which farewell-http has with the body-read, send and
              idle bounds besides
  close       each request with `Connection: close` on its own connection, twice for
              farewell-http: every client light (the passive close after its FIN, the client
              keeps TIME-WAIT) and every client heavy (a reset after its FIN, nobody keeps
              TIME-WAIT); with the default threshold (500 endings per client and minute) a
              run from one address would mix both; and once for plain hyper that sends no
              FIN and closes after the client's (`hyper-passive`): the one event peer-first
              adds to a close, priced apart from the rest of farewell-http
The figure is (Ir(N2) - Ir(N1)) / (N2 - N1): start-up and shutdown cancel out. Callgrind counts
the server's own instructions (not the kernel's), so the figure does not move with the
machine's noise; a close's figure still moves by a few hundred (whether the client's FIN is
already in when the server looks depends on timing, and that changes the path taken). The
profiles stay in --out (look at one with `callgrind_annotate`).

Rate: the same binary runs natively under `wrk -t1` with keep-alive, hyper then farewell-http,
for --rounds rounds; the mean requests/s of each and their ratio.

Last, the switch an axum user makes: one axum Router (GET /) under `axum::serve` and under
`farewell_http::serve`, keep-alive and close (every client light), counted the same way.

Columns: farewell-http's figure, the baseline's (plain hyper; axum::serve in the last two rows),
their ratio, and the goal of issue 25.
Needs valgrind (`apt-get install valgrind`) and wrk (`apt-get install wrk`). Under valgrind
the server runs ~50x slower: the defaults take a few minutes; --requests 20,60 --wrk-duration
1s --rounds 1 takes well under one (rougher figures).";

#[derive(Args, Debug)]
pub struct OverheadArgs {
    /// The `overhead` example binary [default: DIR/examples/overhead, for this DIR/farewell].
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Requests of the two callgrind runs per server and mode: N1,N2 with N1 < N2.
    #[arg(long, default_value = "300,1300", value_parser = parse_pair)]
    requests: (u32, u32),
    /// Where callgrind writes its profiles [default: a farewell-bench-overhead folder in the temp dir].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Length of each wrk run.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    wrk_duration: Duration,
    /// wrk connections (all on one wrk thread).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    connections: u32,
    /// wrk rounds, each runs hyper then farewell-http.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn parse_pair(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected N1,N2 with 0 < N1 < N2 <= 100000 (e.g. 300,1300), got {s:?}");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let (a, b): (u32, u32) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || b <= a || b > 100_000 {
        return Err(bad());
    }
    Ok((a, b))
}

/// Runs the bench and prints the report.
pub fn run(args: OverheadArgs) -> anyhow::Result<()> {
    let binary = match args.binary {
        Some(binary) => binary,
        None => std::env::current_exe()
            .context("finding the farewell binary")?
            .parent()
            .context("the farewell binary's folder")?
            .join("examples/overhead"),
    };
    let config = OverheadConfig {
        binary,
        requests: args.requests,
        out_dir: args.out.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("farewell-bench-overhead-{}", std::process::id()))
        }),
        wrk: WrkSettings {
            threads: 1,
            connections: args.connections,
            duration_s: args.wrk_duration.as_secs_f64(),
            rounds: args.rounds,
            max_responses_per_thread: None,
        },
    };
    overhead::check(&config)?;
    let report = overhead::run(&config, |what| eprintln!("farewell bench overhead: {what}"))?;
    crate::cmd::print_report(
        args.json,
        || Ok(serde_json::to_string_pretty(&report)?),
        || report.table(),
    )
}
