//! `farewell watch [--port P]`: live per-state socket counts from the kernel's table.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use clap::Args;
use farewell::census::{self, Filter, StateCounts};
use farewell::TcpState;
use serde_json::{json, Map, Value};

use crate::duration::parse_duration_in;

pub const WATCH_HELP: &str = "\
Count TCP sockets by state, live, from the kernel's own socket table (sock_diag netlink,
or /proc/net/tcp), refreshing every --interval.

With --port P it counts the sockets whose LOCAL port is P: a server's listener and the
connections it accepted (its TIME-WAIT entries included). --clients adds a second column:
sockets on this host whose REMOTE port is P, i.e. clients connected to that server (the
side that should hold TIME-WAIT under peer-first). Without --port: every TCP socket on the
host, IPv4 and IPv6.

On a terminal the table redraws in place; otherwise one line per sample:
  2025-01-01T12:00:00.000Z port 7878: ESTABLISHED 3, LISTEN 1 (total 4)
--once prints one snapshot and exits (for scripts); --count N stops after N samples;
Ctrl-C stops (exit 0). --json prints one JSON object per line per sample:
  {\"timestamp\": \"2025-01-01T12:00:00.000Z\", \"port\": 7878 (or null),
   \"counts\": {\"ESTABLISHED\": 3, \"LISTEN\": 1, \"TIME-WAIT\": 0, ...every state...},
   \"total\": 4,
   \"clients\": {\"counts\": {...}, \"total\": 3}}        (only with --clients)
State names are the RFC 9293 spellings; request sockets count as SYN-RECEIVED.";

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Count sockets whose local port is P (default: every TCP socket on the host).
    #[arg(long)]
    port: Option<u16>,
    /// Also count sockets whose remote port is P (clients of that port on this host).
    #[arg(long, requires = "port")]
    clients: bool,
    /// Time between samples.
    #[arg(long, default_value = "1s", value_parser = |s: &str| parse_duration_in(s, Duration::from_millis(10), crate::duration::MAX))]
    interval: Duration,
    /// Print one snapshot and exit.
    #[arg(long)]
    once: bool,
    /// Stop after this many samples.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// One JSON object per sample instead of text.
    #[arg(long)]
    json: bool,
}

/// The states a snapshot lists: every one the census reports (request
/// sockets are reported as SYN-RECEIVED, never NEW-SYN-RECEIVED).
fn listed_states() -> impl Iterator<Item = TcpState> {
    TcpState::ALL
        .into_iter()
        .filter(|s| *s != TcpState::NewSynReceived)
}

struct Snapshot {
    at: SystemTime,
    port: Option<u16>,
    counts: StateCounts,
    clients: Option<StateCounts>,
}

impl Snapshot {
    fn take(port: Option<u16>, clients: bool) -> anyhow::Result<Snapshot> {
        let read = |filter: Filter| {
            census::count_by_state(&filter).map_err(|e| {
                anyhow!(
                    "cannot read the kernel's socket table: {e}\nhint: farewell watch reads \
                     sock_diag netlink or /proc/net/tcp; run it on Linux where one is readable"
                )
            })
        };
        let counts = read(port.map_or_else(Filter::all, Filter::local_port))?;
        let clients = match (clients, port) {
            (true, Some(p)) => Some(read(Filter::remote_port(p))?),
            _ => None,
        };
        Ok(Snapshot {
            at: SystemTime::now(),
            port,
            counts,
            clients,
        })
    }

    fn timestamp(&self) -> String {
        humantime::format_rfc3339_millis(self.at).to_string()
    }

    fn json(&self) -> Value {
        let by_state = |c: &StateCounts| {
            let map: Map<String, Value> = listed_states()
                .map(|s| (s.rfc_name().to_owned(), json!(c.get(s))))
                .collect();
            Value::Object(map)
        };
        let mut v = json!({
            "timestamp": self.timestamp(),
            "port": self.port,
            "counts": by_state(&self.counts),
            "total": self.counts.total(),
        });
        if let Some(c) = &self.clients {
            v["clients"] = json!({ "counts": by_state(c), "total": c.total() });
        }
        v
    }

    fn line(&self) -> String {
        let scope = self
            .port
            .map_or("all ports".to_owned(), |p| format!("port {p}"));
        let mut line = format!(
            "{} {scope}: {} (total {})",
            self.timestamp(),
            self.counts,
            self.counts.total()
        );
        if let Some(c) = &self.clients {
            line.push_str(&format!("; clients: {c} (total {})", c.total()));
        }
        line
    }

    /// A small table for a terminal.
    fn table(&self, interval: Duration) -> Vec<String> {
        let scope = self
            .port
            .map_or("all TCP sockets".to_owned(), |p| format!("port {p}"));
        let mut lines = vec![
            format!(
                "farewell watch: {scope}, every {interval:?}, {} (Ctrl-C to stop)",
                self.timestamp()
            ),
            format!(
                "{:<14}{:>9}{}",
                "state",
                if self.clients.is_some() {
                    "server"
                } else {
                    "sockets"
                },
                if self.clients.is_some() {
                    "  clients"
                } else {
                    ""
                }
            ),
        ];
        let row = |name: &str, n: usize, c: Option<usize>| {
            format!(
                "{name:<14}{n:>9}{}",
                c.map_or(String::new(), |c| format!("{c:>9}"))
            )
        };
        for s in listed_states() {
            let n = self.counts.get(s);
            let c = self.clients.map(|c| c.get(s));
            if n > 0 || c.is_some_and(|c| c > 0) {
                lines.push(row(s.rfc_name(), n, c));
            }
        }
        lines.push(row(
            "total",
            self.counts.total(),
            self.clients.map(|c| c.total()),
        ));
        lines
    }
}

/// Samples and prints until --once, --count or Ctrl-C.
pub fn run(args: WatchArgs) -> anyhow::Result<()> {
    let limit = if args.once { Some(1) } else { args.count };
    let redraw = !args.json && std::io::stdout().is_terminal();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut ticker = tokio::time::interval(args.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drawn = 0usize;
        let mut taken = 0u64;
        loop {
            tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                _ = ticker.tick() => {}
            }
            let (port, clients) = (args.port, args.clients);
            let snapshot = tokio::task::spawn_blocking(move || Snapshot::take(port, clients))
                .await
                .context("the census task failed")??;
            let mut out = std::io::stdout().lock();
            if args.json {
                writeln!(out, "{}", snapshot.json())?;
            } else if redraw {
                if drawn > 0 {
                    // Back to the first line of the previous table, and clear below.
                    write!(out, "\x1b[{drawn}A\x1b[J")?;
                }
                let lines = snapshot.table(args.interval);
                drawn = lines.len();
                for l in lines {
                    writeln!(out, "{l}")?;
                }
            } else {
                writeln!(out, "{}", snapshot.line())?;
            }
            out.flush()?;
            taken += 1;
            if limit.is_some_and(|n| taken >= n) {
                return Ok(());
            }
        }
    })
}
