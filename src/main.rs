//! `farewell`: the command-line tool over the farewell library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Lab,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Lab => {
            eprintln!(
                "farewell: the lab is not built yet (issue 5); the library and its tests are"
            );
            ExitCode::from(2)
        }
    }
}
