//! One module per subcommand: its clap arguments, its `--help` text and its `run`.

pub mod bench;
pub mod deadlines;
pub mod lab;
pub mod load;
pub(crate) mod progress;
pub mod serve;
pub mod serve_http;
pub mod watch;

/// Prints a report to stdout: one JSON object (and a newline) with `--json`,
/// else the table. Only the chosen form is rendered.
pub(crate) fn print_report(
    json: bool,
    to_json: impl FnOnce() -> anyhow::Result<String>,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(stdout, "{}", to_json()?)?;
    } else {
        write!(stdout, "{}", table())?;
    }
    stdout.flush()?;
    Ok(())
}
