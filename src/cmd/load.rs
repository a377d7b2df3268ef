//! `farewell load HOST:PORT`: a mix of FLP/1 client behaviours against any server on loopback.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use farewell_lab::load::{self, ClientConfig, LoadConfig, Mix, Sources};

use crate::duration::parse_duration_in;

pub const LOAD_HELP: &str = "\
Drive any FLP/1 server (farewell serve's line protocol) with a mix of client behaviours,
bounded in count, rate, concurrency and time, and report what the clients saw.

Loopback only: every address HOST resolves to must be in 127.0.0.0/8 or be ::1, or
nothing is sent. farewell load creates no network namespaces, so that is the whole rule.

Behaviours (--mix NAME=WEIGHT,...; a bare NAME weighs 1). Each client says HELLO <name>-<n>:
  cooperative    HELLO, 3 echo lines (checked), QUIT, reads until BYE, closes
  ignore         as cooperative, but keeps the socket open after BYE until the server
                 closes or resets it (or --timeout)
  silent         connects, sends nothing, reads until BYE (expects BYE handshake-timeout)
  flood          HELLO, writes echo lines as fast as it can (reading the echoes) for at
                 most 1 MiB / 1 s, then QUIT and reads until BYE
  never-read     tiny receive buffer; HELLO, then writes without ever reading until its
                 writes stall (or 1 MiB); waits for the server to close or reset it
  bad-handshake  sends GET / HTTP/1.0 instead of HELLO (expects BYE bad-handshake)
  overlong       HELLO, then a line one byte over --max-line (expects BYE line-too-long)
  reset          HELLO, one echo, then resets the connection (SO_LINGER 0)
  half-close     HELLO, one echo, then shutdown(SHUT_WR) without QUIT; reads until the
                 server closes or resets

How to read the table (one row per behaviour, then the total):
  goodbyes seen  reason of the BYE each client read, and how many
  no BYE         clients that read no goodbye
  EOF w/o BYE    connections the server closed without a goodbye
  echo bad       echo lines that came back changed
  ends           how connections ended: closed (by the client, script done), aborted
                 (the reset behaviour), eof (the server closed first), reset (by the
                 server), timeout (--timeout ran out), connect-error, error
Then connect, handshake (HELLO to WELCOME) and time-to-goodbye (connected to BYE)
latencies: median, p99, max. --json prints one object (schema: farewell_lab::load docs).

Bounds: at most --connections clients (default 100 when no --rate), at most --rate per
second, at most --concurrency at once, none started after --duration; each client is
bounded by --timeout. Ctrl-C stops early and still prints the report.";

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The server, as HOST:PORT (loopback only), e.g. 127.0.0.1:7878 or [::1]:7878.
    target: String,
    /// Behaviour weights, e.g. cooperative=70,ignore=10,silent=10,flood=5,never-read=5.
    #[arg(long, default_value = load::DEFAULT_MIX, value_parser = parse_mix)]
    mix: Mix,
    /// Clients to start (default 100 when --rate is not given).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=load::MAX_CONNECTIONS))]
    connections: Option<u64>,
    /// Clients to start per second (at most 20000); with --duration sets how many.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Clients open at once, at most.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=load::MAX_CONCURRENCY as u64))]
    concurrency: u64,
    /// No client starts after this (at most 1h); open ones then finish within --timeout.
    #[arg(long, default_value = "30s", value_parser = |s: &str| parse_duration_in(s, Duration::from_millis(1), load::MAX_DURATION))]
    duration: Duration,
    /// The bound on one client's whole connection (at most 10m).
    #[arg(long, default_value = "15s", value_parser = |s: &str| parse_duration_in(s, Duration::from_millis(1), load::MAX_CLIENT_TIMEOUT))]
    timeout: Duration,
    /// The server's line limit, newline included (FLP/1 --max-line).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(8..=(1 << 24)))]
    max_line: u64,
    /// Source addresses: auto (one per 10000 planned clients), or a count; more than 1
    /// spreads clients over 127.1.0.1, 127.1.0.2, … (IPv4 targets) so ports never run out.
    #[arg(long, default_value = "auto", value_parser = parse_sources)]
    sources: Sources,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn parse_mix(s: &str) -> Result<Mix, String> {
    s.parse().map_err(|e: load::MixError| e.to_string())
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= load::MAX_RATE => Ok(r),
        _ => Err(format!(
            "{s:?}: give clients per second, above 0 and at most {}",
            load::MAX_RATE
        )),
    }
}

fn parse_sources(s: &str) -> Result<Sources, String> {
    if s == "auto" {
        return Ok(Sources::Auto);
    }
    match s.parse::<usize>() {
        Ok(n) if (1..=load::MAX_SOURCES).contains(&n) => Ok(Sources::Count(n)),
        _ => Err(format!(
            "{s:?}: write auto or a count from 1 to {}",
            load::MAX_SOURCES
        )),
    }
}

/// Resolves the target (bounded: a resolver that hangs is not waited for).
fn resolve(target: &str) -> anyhow::Result<Vec<std::net::SocketAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = target.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(load::resolve_loopback(&owned));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => bail!(
            "{e}\nhint: start a server on this machine (e.g. farewell serve) and give its \
             loopback address, e.g. 127.0.0.1:7878"
        ),
        Err(_) => {
            bail!("resolving {target} took longer than 5 s; give an address, e.g. 127.0.0.1:7878")
        }
    }
}

/// Runs the load and prints the report.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let addresses = resolve(&args.target)?;
    let config = LoadConfig {
        target: args.target.clone(),
        addresses,
        mix: args.mix,
        connections: args.connections.or(args.rate.is_none().then_some(100)),
        rate: args.rate,
        concurrency: args.concurrency as usize,
        duration: args.duration,
        sources: args.sources,
        client: ClientConfig {
            max_line: args.max_line as usize,
            timeout: args.timeout,
            ..ClientConfig::default()
        },
    };
    config.validate()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if std::io::stderr().is_terminal() && !args.json {
        eprintln!(
            "farewell load: {} clients at most ({}), mix {}, against {}",
            config.planned(),
            config
                .rate
                .map_or("as fast as concurrency allows".to_owned(), |r| format!(
                    "{r}/s"
                )),
            config.mix,
            config.addresses[0]
        );
    }
    let bar = super::progress::bar(config.planned(), "clients");
    let tick = bar.clone();
    let report = runtime.block_on(load::run(&config, Arc::new(move |_| tick.inc(1)), async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    bar.finish_and_clear();

    super::print_report(args.json, || Ok(report.to_json()), || report.table())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_are_checked() {
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("1e9").is_err());
        assert_eq!(parse_rate("250"), Ok(250.0));
        assert_eq!(parse_sources("auto"), Ok(Sources::Auto));
        assert_eq!(parse_sources("8"), Ok(Sources::Count(8)));
        assert!(parse_sources("0").unwrap_err().contains("auto or a count"));
        assert!(parse_mix("x=1").unwrap_err().contains("unknown behaviour"));
    }
}
