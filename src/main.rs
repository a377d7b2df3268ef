//! `farewell`: the command-line tool over the farewell library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod duration;

/// End TCP connections the right way: the peer gets the last bytes, the server keeps no TIME_WAIT.
#[derive(Parser, Debug)]
#[command(name = "farewell", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once; boxing buys nothing
enum Command {
    /// Run every teardown policy against every peer behaviour on this kernel and print the matrix.
    #[command(long_about = cmd::lab::LAB_HELP)]
    Lab(cmd::lab::LabArgs),
    /// Measure what peer-first costs against a plain tokio server, side by side.
    #[command(long_about = cmd::bench::BENCH_HELP)]
    Bench(cmd::bench::BenchArgs),
    /// Serve FLP/1 (the line protocol) and end every connection the right way.
    #[command(long_about = cmd::serve::SERVE_HELP)]
    Serve(cmd::serve::ServeArgs),
    /// Drive any FLP/1 server on loopback with a mix of client behaviours and report what they saw.
    #[command(long_about = cmd::load::LOAD_HELP)]
    Load(cmd::load::LoadArgs),
    /// Live per-state counts of TCP sockets (one port's, or all) from the kernel's table.
    #[command(long_about = cmd::watch::WATCH_HELP)]
    Watch(cmd::watch::WatchArgs),
    /// Serve HTTP (hyper, HTTP/1.1 and h2) with a teardown policy: no server TIME_WAIT.
    #[command(name = "serve-http", long_about = cmd::serve_http::SERVE_HTTP_HELP)]
    ServeHttp(cmd::serve_http::ServeHttpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lab(args) => cmd::lab::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Load(args) => cmd::load::run(args),
        Command::Watch(args) => cmd::watch::run(args),
        Command::ServeHttp(args) => cmd::serve_http::run(args),
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
