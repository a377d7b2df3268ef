//! The text `farewell bench http` prints without `--json`: the settings, one
//! table of the loopback and many-host rows, each many-host row's TIME-WAIT
//! per host, and a table of the proxy rows.

use std::fmt::Write as _;

use super::{Clients, HttpReport, Mode, Row, Target};

/// `-` for a missing figure, else the figure with `decimals` decimals.
/// The columns every row starts with: label, mode, clients, req/s, the
/// ratio to hyper and, with a baseline, to it; `widths` of the first three.
fn lead(out: &mut String, row: &Row, clients: &str, widths: [usize; 3], baseline: bool) {
    let [label, mode, who] = widths;
    let _ = write!(
        out,
        "{:<label$} {:<mode$} {:<who$} {:>10.0} {:>9}",
        row.label,
        row.mode.name(),
        clients,
        row.requests_per_sec,
        or_dash(row.ratio_to_hyper, 2),
    );
    if baseline {
        let _ = write!(out, " {:>8}", or_dash(row.ratio_to_baseline, 2));
    }
}

fn or_dash(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

impl HttpReport {
    /// The table `farewell bench http` prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        self.settings(&mut out);
        let direct: Vec<&Row> = self.rows.iter().filter(|r| r.proxy.is_none()).collect();
        let behind: Vec<&Row> = self.rows.iter().filter(|r| r.proxy.is_some()).collect();
        // A second ratio column only when it says something `vs hyper` does not.
        let base = (self.baseline != Target::Hyper.name()).then_some(self.baseline.as_str());
        let width = self
            .rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(0)
            .max("server".len());
        if !direct.is_empty() {
            self.direct_table(&mut out, &direct, width, base);
        }
        if !behind.is_empty() {
            if !direct.is_empty() {
                out.push('\n');
            }
            self.proxy_table(&mut out, &behind, width, base);
        }
        self.node_rounds_table(&mut out);
        self.overflow_note(&mut out);
        out
    }

    /// With the Node rows: node+farewell against node round by round (the
    /// ratio of the rates, the node process's CPU µs per response of each),
    /// and the medians.
    fn node_rounds_table(&self, out: &mut String) {
        for pair in &self.node_rounds {
            let clients = match pair.hosts {
                Some(n) => format!("{n} hosts"),
                None => "lo".to_owned(),
            };
            let _ = writeln!(
                out,
                "node+farewell vs node, {} from {clients}, by round (first to run; ratio of req/s; \
                 node CPU µs/r plain / attached):",
                pair.mode.name()
            );
            for r in &pair.rounds {
                let first = if r.first == Target::Node {
                    "node"
                } else {
                    "node+farewell"
                };
                let _ = writeln!(
                    out,
                    "  round {:>2} ({first:<13}) {:>10.0} {:>10.0} {:>6.3}x   {:>7} / {:<7}",
                    r.round,
                    r.node_requests_per_sec,
                    r.attached_requests_per_sec,
                    r.ratio,
                    or_dash(r.node_cpu_us_per_request, 1),
                    or_dash(r.attached_cpu_us_per_request, 1),
                );
            }
            let ratios: Vec<String> = pair
                .rounds
                .iter()
                .map(|r| format!("{:.3}", r.ratio))
                .collect();
            let _ = writeln!(
                out,
                "  median {}x (rounds: {}); median CPU µs/r attached minus plain: {}",
                or_dash(pair.median_ratio, 3),
                ratios.join(" "),
                pair.median_cpu_us_delta
                    .map_or_else(|| "-".to_owned(), |d| format!("{d:+.1}")),
            );
        }
    }

    /// The lines above the tables: how wrk, the spread clients, the hosts and
    /// the proxy ran.
    fn settings(&self, out: &mut String) {
        let w = self.wrk;
        let _ = writeln!(
            out,
            "wrk -t{} -c{} -d{}s, {} round(s) per mode, interleaved{}{}",
            w.threads,
            w.connections,
            w.duration_s,
            w.rounds,
            if self.node_rounds.is_empty() || w.rounds < 2 {
                ""
            } else {
                " (node and node+farewell swap places every other round)"
            },
            if self.tls {
                "; TLS (self-signed, rustls with ring in-process, nginx ssl)"
            } else {
                ""
            }
        );
        if let Some(s) = self.spread {
            let _ = writeln!(
                out,
                "close-spread: our client, {} thread(s), {} connections, {}s, each connection from \
                 its own source address (127.1.x.y, {} in turn)",
                s.threads, s.connections, s.duration_s, s.source_addresses
            );
            if let Some(rate) = s.rate {
                let _ = writeln!(
                    out,
                    "close-spread paced: at most {rate} requests started per second in all \
                     (shared out among the hosts); compare the CPU columns, not req/s"
                );
            }
        }
        if let Some(h) = self.hosts {
            let _ = writeln!(
                out,
                "{} hosts: wrk -t1 -c{} in each of {} client namespaces, each over its own veth \
                 pair to a fresh server namespace per run",
                h.hosts, h.connections_per_host, h.hosts
            );
            if self.spread.is_some() {
                let _ = writeln!(
                    out,
                    "{} hosts, spread: our client, 1 thread and {} connections in each host, each \
                     connection from the next of its host's {} source addresses (10.(128+i).x.y)",
                    h.hosts, h.connections_per_host, h.source_addresses_per_host
                );
            }
        }
        if let Some(why) = &self.hosts_skipped {
            let _ = writeln!(out, "--hosts: the many-host runs were skipped: {why}");
        }
        if let Some(p) = &self.proxy {
            let _ = writeln!(
                out,
                "behind {}: wrk -t{} -c{} into {} in its own namespace, which forwards each \
                 request over a veth pair to the server in another (default upstream settings: \
                 HTTP/1.0, a new connection per request, closed by {} after the response)",
                p.proxy, w.threads, w.connections, p.proxy, p.proxy
            );
        }
        if let Some(why) = &self.proxy_skipped {
            let _ = writeln!(out, "--proxy: the proxy runs were skipped: {why}");
        }
        if self.baseline != Target::Hyper.name() {
            let _ = writeln!(
                out,
                "vs base: req/s over {}'s in the same mode and clients",
                self.baseline
            );
        }
    }

    /// Loopback and many-host rows, then each many-host row's TIME-WAIT per host.
    fn direct_table(&self, out: &mut String, rows: &[&Row], width: usize, base: Option<&str>) {
        let _ = write!(
            out,
            "{:<width$} {:<13} {:<16} {:>10} {:>9}",
            "server", "mode", "clients", "req/s", "vs hyper"
        );
        if base.is_some() {
            let _ = write!(out, " {:>8}", "vs base");
        }
        let _ = writeln!(
            out,
            " {:>9} {:>9} {:>9} {:>10} {:>10} {:>7}",
            "CPU µs/r", "all µs/r", "all vs hy", "server TW", "client TW", "errors"
        );
        for row in rows {
            let clients = match (row.clients(), row.mode) {
                (Clients::Hosts(n), Mode::CloseSpread) => format!("{n} hosts, spread"),
                (Clients::Hosts(n), _) => format!("{n} hosts"),
                (_, Mode::CloseSpread) => "lo, spread".to_owned(),
                (_, _) => "lo, 1 wrk".to_owned(),
            };
            lead(out, row, &clients, [width, 13, 16], base.is_some());
            let _ = writeln!(
                out,
                " {:>9} {:>9} {:>9} {:>10.0} {:>10.0} {:>7}",
                or_dash(row.server_cpu_us_per_request, 1),
                or_dash(row.machine_cpu_us_per_request, 1),
                or_dash(row.machine_cpu_ratio_to_hyper, 2),
                row.server_time_wait,
                row.client_time_wait,
                row.errors
            );
        }
        let per_host: Vec<&&Row> = rows
            .iter()
            .filter(|r| r.client_time_wait_per_host.is_some())
            .collect();
        if !per_host.is_empty() {
            let _ = writeln!(
                out,
                "client TW per host (census in each host's namespace, toward the server; host 0 \
                 first, mean over the rounds):"
            );
        }
        for row in per_host {
            let counts: Vec<String> = row
                .client_time_wait_per_host
                .iter()
                .flatten()
                .map(|tw| format!("{tw:.0}"))
                .collect();
            let _ = writeln!(
                out,
                "  {:<width$} {:<13} {}",
                row.label,
                row.mode.name(),
                counts.join(" ")
            );
        }
    }

    /// The rows behind the proxy: the rate, the proxy's and the server's
    /// TIME-WAIT, the errors wrk saw and the proxy's upstream errors.
    fn proxy_table(&self, out: &mut String, rows: &[&Row], width: usize, base: Option<&str>) {
        let _ = write!(
            out,
            "{:<width$} {:<11} {:<14} {:>10} {:>9}",
            "server", "mode", "clients", "req/s", "vs hyper"
        );
        if base.is_some() {
            let _ = write!(out, " {:>8}", "vs base");
        }
        let _ = writeln!(
            out,
            " {:>9} {:>9} {:>10} {:>7} {:>9}",
            "all µs/r", "proxy TW", "server TW", "errors", "upstr err"
        );
        for row in rows {
            let clients = match row.clients() {
                Clients::Proxy(p) => format!("wrk → {p}"),
                _ => "-".to_owned(),
            };
            lead(out, row, &clients, [width, 11, 14], base.is_some());
            let _ = writeln!(
                out,
                " {:>9} {:>9} {:>10.0} {:>7} {:>9}",
                or_dash(row.machine_cpu_us_per_request, 1),
                or_dash(row.proxy_time_wait, 0),
                row.server_time_wait,
                row.errors,
                row.proxy_upstream_errors
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            );
        }
    }

    /// A note naming the runs in which the kernel's TIME-WAIT table overflowed.
    fn overflow_note(&self, out: &mut String) {
        let overflowed: Vec<String> = self
            .runs
            .iter()
            .filter(|r| r.time_wait_overflow.is_some_and(|n| n > 0))
            .map(|r| {
                let clients = match r.clients() {
                    Clients::Loopback => String::new(),
                    Clients::Hosts(n) => format!(" {n} hosts"),
                    Clients::Proxy(p) => format!(" behind {p}"),
                };
                format!(
                    "{} {}{clients} round {} ({})",
                    r.label(),
                    r.mode,
                    r.round,
                    r.time_wait_overflow.unwrap_or(0)
                )
            })
            .collect();
        if !overflowed.is_empty() {
            let _ = writeln!(
                out,
                "note: the kernel's TIME-WAIT table (tcp_max_tw_buckets) overflowed in: {}; \
                 TW counts of those runs are capped",
                overflowed.join(", ")
            );
        }
    }
}
