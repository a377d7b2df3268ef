//! `farewell bench`: what peer-first costs, measured side by side in one run.
//!
//! Timing goals live here, never in unit tests: the servers run interleaved
//! in one process on one machine, so drift hits all alike, and every figure is
//! also given as a ratio to the baseline measured in the same run.

pub mod churn;
pub mod clients;
pub use farewell_testkit::cpu;
pub mod http;
pub mod http_clients;
pub mod overhead;
pub mod scale;
pub mod servers;

use std::fmt::Write as _;

use crate::lab::KernelInfo;
use serde::Serialize;

/// The whole bench run; `--json` prints it.
///
/// Schema (stable; fields may be added, never renamed):
/// `{ "kernel": {release, tcp_fin_timeout, …}, "churn": {duration_ms, rounds, clients} | null,
///    "servers": [ {name, connections, errors, connections_per_sec, cpu_us_per_connection,
///                  client_cpu_us_per_connection, total_cpu_us_per_connection,
///                  server_time_wait, leftover, ratio_to_plain, runs: [f64]} ],
///    "scale": {clients, failed_to_connect, grace_ms, release_ms, released_within_goal,
///              server_time_wait, paths: [[path, n]], peak_rss_bytes,
///              bytes_per_closing_connection} | null }`
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// The kernel and its TIME-WAIT settings.
    pub kernel: KernelInfo,
    /// How the churn ran, if it did.
    pub churn: Option<ChurnSettings>,
    /// The churn's servers (empty if churn did not run).
    pub servers: Vec<churn::ChurnServer>,
    /// The scale bench, if it ran.
    pub scale: Option<scale::ScaleReport>,
}

/// The churn settings, echoed in the report.
#[derive(Debug, Serialize)]
pub struct ChurnSettings {
    /// Length of each run, in milliseconds.
    pub duration_ms: u64,
    /// Runs per server.
    pub rounds: usize,
    /// Closed-loop clients.
    pub clients: usize,
}

impl BenchReport {
    /// The report as aligned text tables.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if let Some(churn) = &self.churn {
            let _ = writeln!(
                out,
                "churn: {} closed-loop clients, connect → HELLO → QUIT → close; {} runs of {} ms per server, interleaved",
                churn.clients, churn.rounds, churn.duration_ms
            );
            let _ = writeln!(
                out,
                "{:<22} {:>10} {:>8} {:>10} {:>10} {:>8} {:>10} {:>9} {:>8}",
                "server",
                "conn/s",
                "ratio",
                "CPU µs/c",
                "total µs/c",
                "errors",
                "server TW",
                "leftover",
                "spread"
            );
            for s in &self.servers {
                let (lo, hi) = s
                    .runs
                    .iter()
                    .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
                let spread = if s.runs.len() > 1 && hi > 0.0 {
                    format!("±{:.0}%", (hi - lo) / (hi + lo) * 100.0)
                } else {
                    "-".into()
                };
                let _ = writeln!(
                    out,
                    "{:<22} {:>10.0} {:>8.3} {:>10.1} {:>10.1} {:>8} {:>10} {:>9} {:>8}",
                    s.name,
                    s.connections_per_sec,
                    s.ratio_to_plain,
                    s.cpu_us_per_connection,
                    s.total_cpu_us_per_connection,
                    s.errors,
                    s.server_time_wait,
                    s.leftover,
                    spread
                );
            }
            out.push('\n');
        }
        if let Some(s) = &self.scale {
            let _ = writeln!(
                out,
                "scale: {} idle clients told goodbye at once (clients ignore it; peer-first grace {} ms)",
                s.clients, s.grace_ms
            );
            let _ = writeln!(
                out,
                "  released in {} ms ({}), server TIME-WAIT {}, {} B per closing connection (goal ≤ 1024), peak RSS {:.1} MiB",
                s.release_ms,
                if s.released_within_goal { "within grace + 1 s" } else { "MISSED grace + 1 s" },
                s.server_time_wait,
                s.bytes_per_closing_connection,
                s.peak_rss_bytes as f64 / (1024.0 * 1024.0)
            );
            let paths: Vec<String> = s.paths.iter().map(|(p, n)| format!("{p} {n}")).collect();
            let _ = writeln!(out, "  paths: {}", paths.join(", "));
            if s.failed_to_connect > 0 {
                let _ = writeln!(out, "  {} clients could not connect", s.failed_to_connect);
            }
        }
        out
    }
}
