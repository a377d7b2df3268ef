//! The lab's report: the kernel's settings, the cells, a verdict per policy,
//! as an aligned table or as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::cell::CellReport;
use super::churn::ChurnReport;
use super::heavy::{ClientReport, HeavyReport};
use super::matrix::PathReport;
use super::peer::Behaviour;
pub use crate::support::kernel::KernelInfo;
use crate::support::table;

/// The whole lab run. Serializes to the JSON object described in the [module docs](super).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabReport {
    /// The kernel and its TCP settings.
    pub kernel: KernelInfo,
    /// The network paths every cell ran on, in order.
    pub paths: Vec<PathReport>,
    /// What the reader must know before trusting the verdicts (e.g. that the
    /// run had loopback only), one sentence each; empty when nothing.
    pub warnings: Vec<String>,
    /// One cell per path × policy × behaviour, path-major, then policy-major.
    pub cells: Vec<CellReport>,
    /// One plain-words verdict per policy, derived from the cells.
    pub verdicts: Vec<String>,
    /// One entry per policy of the churn run, empty when no churn ran.
    pub churn: Vec<ChurnReport>,
    /// One entry per policy of the heavy-client run, empty when none ran.
    pub heavy: Vec<HeavyReport>,
}

impl LabReport {
    /// Builds the report and derives the verdicts (and the warnings) from
    /// `paths` and `cells`.
    pub fn new(
        kernel: KernelInfo,
        paths: Vec<PathReport>,
        cells: Vec<CellReport>,
        churn: Vec<ChurnReport>,
    ) -> LabReport {
        let verdicts = verdicts(&cells);
        let mut warnings = Vec::new();
        if paths.iter().all(|p| p.name == "loopback") {
            warnings.push(loopback_only_warning(kernel.net_admin));
        }
        LabReport {
            kernel,
            paths,
            warnings,
            cells,
            verdicts,
            churn,
            heavy: Vec::new(),
        }
    }

    /// The same report with the heavy-client run; a run on loopback adds a
    /// warning (no namespace, no network: nothing is lost on the way).
    pub fn with_heavy(mut self, heavy: Vec<HeavyReport>) -> LabReport {
        if heavy.iter().any(|h| h.path == "loopback") {
            self.warnings.push(
                "the heavy client ran on loopback (no CAP_NET_ADMIN, or no tc): who keeps \
                 TIME-WAIT holds, but no goodbye is lost to a network and connect() rates are \
                 loopback's; run as root for the slow path"
                    .to_owned(),
            );
        }
        self.heavy = heavy;
        self
    }

    /// The heavy-client run as an aligned table, two rows per policy (empty when none ran).
    pub fn heavy_table(&self) -> String {
        if self.heavy.is_empty() {
            return String::new();
        }
        let mut rows: Vec<Vec<String>> =
            vec![HEAVY_COLUMNS.iter().map(|h| h.to_string()).collect()];
        for h in &self.heavy {
            for (kind, c) in [("heavy", &h.heavy), ("light", &h.light)] {
                let mut row = vec![h.label(), format!("{kind} {}", c.address)];
                row.extend(heavy_row(c));
                rows.push(row);
            }
        }
        table::render(&rows, &[0, 1], false)
    }

    /// The paths, one line each: name, mechanism, measured round-trip time.
    pub fn paths_header(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .paths
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    format!("{}, RTT {:.2} ms", p.mechanism, p.rtt_ms),
                ]
            })
            .collect();
        let mut out = String::from("paths (every cell runs on each):\n");
        for line in table::render(&rows, &[0], false).lines() {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    /// The churn as an aligned table (empty when no churn ran).
    pub fn churn_table(&self) -> String {
        if self.churn.is_empty() {
            return String::new();
        }
        let mut rows: Vec<Vec<String>> = vec![[
            "policy",
            "conns",
            "no goodbye",
            "rate/s",
            "peak server TW",
            "final server TW",
            "final client TW",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect()];
        for c in &self.churn {
            if let Some(why) = &c.skipped {
                rows.push(vec![c.policy.clone(), format!("skipped: {why}")]);
                continue;
            }
            rows.push(vec![
                c.policy.clone(),
                c.connections.to_string(),
                c.failed.to_string(),
                format!("{:.0} of {}", c.rate_achieved, c.rate_target),
                c.peak_server_time_wait.to_string(),
                c.final_server_time_wait.to_string(),
                c.final_client_time_wait.to_string(),
            ]);
        }
        table::render(&rows, &[0], true)
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }

    /// The warnings, the paths, the cells as one aligned table per path,
    /// then the verdicts, one per line.
    pub fn table(&self) -> String {
        let mut out = String::new();
        // What the reader must know before the figures: a warning (loopback
        // hides loss), then the one-line result.
        for w in &self.warnings {
            let _ = writeln!(out, "WARNING: {w}\n");
        }
        out.push_str(&headline(&self.cells));
        out.push('\n');
        out.push_str(&self.paths_header());
        for path in &self.paths {
            let cells: Vec<&CellReport> =
                self.cells.iter().filter(|c| c.path == path.name).collect();
            let _ = writeln!(
                out,
                "\npath {}: {}, RTT {:.2} ms",
                path.name, path.mechanism, path.rtt_ms
            );
            out.push_str(&cell_table(&cells));
        }
        out.push_str(LEGEND);
        out.push('\n');
        for v in &self.verdicts {
            out.push_str(v);
            out.push('\n');
        }
        if !self.churn.is_empty() {
            out.push_str(
                "\nchurn: server and client TIME-WAIT on one port under a sustained rate\n",
            );
            out.push_str(&self.churn_table());
        }
        if let Some(first) = self.heavy.first() {
            let _ = writeln!(
                out,
                "\nheavy client: one address as fast as it can, next to a light one, on {} \
                 (threshold {} endings/min)",
                first.path, first.threshold
            );
            out.push_str(&self.heavy_table());
        }
        let errors: Vec<&CellReport> = self.cells.iter().filter(|c| !c.errors.is_empty()).collect();
        if !errors.is_empty() {
            out.push('\n');
            for c in errors {
                let _ = writeln!(
                    out,
                    "{} × {} on {}: {}",
                    c.policy, c.behaviour, c.path, c.errors[0]
                );
            }
        }
        out
    }
}

/// The columns of the heavy-client table, text and HTML alike.
pub(crate) const HEAVY_COLUMNS: [&str; 10] = [
    "policy",
    "client",
    "done",
    "failed",
    "connect/s",
    "slowest connect",
    "client TW",
    "server TW",
    "lost B",
    "endings",
];

/// The cells of one client's row after its policy and address: done,
/// failed, connect/s, slowest connect, client TW, server TW, lost B, endings.
pub(crate) fn heavy_row(c: &ClientReport) -> Vec<String> {
    let endings: Vec<String> = c.endings.iter().map(|(e, n)| format!("{e} {n}")).collect();
    vec![
        c.completed.to_string(),
        (c.opened + c.connect_failed - c.completed).to_string(),
        format!("{:.0}", c.connect_per_s),
        c.connect_ms_max
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms")),
        c.client_time_wait.to_string(),
        c.server_time_wait.to_string(),
        c.bytes_lost.to_string(),
        endings.join(", "),
    ]
}

/// What the cell table's columns mean, printed under it.
pub const LEGEND: &str = "\
legend: goodbye B = the last message's size; conns = connections in the cell; server TW /
  client TW = TIME-WAIT entries on each side after the cell, by the kernel's census;
  delivered = connections whose peer read the whole goodbye (what the peer application
  got); acked = connections whose teardown saw the goodbye ACKed by the peer's kernel
  before it closed (plain closes without waiting, so 0% there while delivered is 100%);
  lost B = goodbye bytes that did not arrive intact; release med / p99 = time from the
  goodbye to the server's socket gone; leftover = server sockets still open after the
  cell; paths = the teardown endings taken.
";

/// One line first: which policies left server TIME-WAIT, or lost bytes of
/// a peer that reads, and on which paths; the tables below give the details.
pub fn headline(cells: &[CellReport]) -> String {
    // policy -> the paths where it left server TIME-WAIT / lost bytes.
    let mut tw: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut lost: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut clean: Vec<&str> = Vec::new();
    let mut policies: Vec<&str> = Vec::new();
    for c in cells.iter().filter(|c| c.skipped.is_none()) {
        if !policies.contains(&c.policy.as_str()) {
            policies.push(&c.policy);
        }
    }
    for &p in &policies {
        let mine = cells
            .iter()
            .filter(|c| c.policy == p && c.skipped.is_none());
        let (mut tw_paths, mut lost_paths): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for c in mine {
            if c.server_time_wait > 0 && !tw_paths.contains(&c.path.as_str()) {
                tw_paths.push(&c.path);
            }
            // Loss counts for peers that read (as in the verdicts): a peer
            // that never reads or vanished cannot get the goodbye at all.
            if behaviour_reads(&c.behaviour)
                && c.bytes_lost > 0
                && !lost_paths.contains(&c.path.as_str())
            {
                lost_paths.push(&c.path);
            }
        }
        if tw_paths.is_empty() && lost_paths.is_empty() {
            clean.push(p);
        }
        if !tw_paths.is_empty() {
            tw.push((p, tw_paths));
        }
        if !lost_paths.is_empty() {
            lost.push((p, lost_paths));
        }
    }
    let list = |items: &[(&str, Vec<&str>)]| {
        items
            .iter()
            .map(|(p, paths)| format!("{p} ({})", paths.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !tw.is_empty() {
        parts.push(format!("server TIME-WAIT: {}", list(&tw)));
    }
    if !lost.is_empty() {
        parts.push(format!("bytes lost: {}", list(&lost)));
    }
    if !clean.is_empty() {
        parts.push(format!("neither: {}", clean.join(", ")));
    }
    format!("headline: {}\n", parts.join("; "))
}

/// What a run on loopback alone cannot show, said loudly.
pub fn loopback_only_warning(net_admin: bool) -> String {
    let why = if net_admin {
        "only the loopback path ran"
    } else {
        "only the loopback path ran: this run has no CAP_NET_ADMIN, which the slow and wan \
         paths need (run as root, or grant CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    };
    format!(
        "{why}. Loopback has no rate limit, round-trip time or loss, so it hides what a \
         teardown loses on a network: abort's and silent's losses of a large last message \
         look smaller than they are, a slow reader is slow only by its application (whether \
         a policy cuts a peer still taking bytes over a slow link is not tested), and \
         release times are loopback's. Who keeps TIME-WAIT mostly holds on any path; races \
         between a peer's FIN and a reset do not."
    )
}

/// The cells of one path as an aligned table.
fn cell_table(cells: &[&CellReport]) -> String {
    let header = [
        "policy",
        "behaviour",
        "goodbye B",
        "conns",
        "server TW",
        "client TW",
        "delivered",
        "acked",
        "lost B",
        "release med",
        "release p99",
        "leftover",
        "paths",
    ];
    let pct = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.0}%"));
    let ms = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.1} ms"));
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for c in cells {
        if let Some(why) = &c.skipped {
            let mut row = vec![c.policy.clone(), c.behaviour.clone()];
            row.extend(std::iter::repeat("-".to_owned()).take(header.len() - 3));
            row.push(format!("skipped: {why}"));
            rows.push(row);
            continue;
        }
        let mut paths: Vec<String> = c.paths.iter().map(|(p, n)| format!("{p} {n}")).collect();
        if !c.errors.is_empty() {
            paths.push(format!("FAILED {}", c.errors.len()));
        }
        rows.push(vec![
            c.policy.clone(),
            c.behaviour.clone(),
            c.goodbye_bytes.to_string(),
            c.connections.to_string(),
            c.server_time_wait.to_string(),
            c.client_time_wait.to_string(),
            pct(c.goodbye_delivered_pct),
            pct(c.goodbye_acked_pct),
            c.bytes_lost.to_string(),
            ms(c.release_ms_median),
            ms(c.release_ms_p99),
            c.leftover_sockets.to_string(),
            paths.join(", "),
        ]);
    }
    table::render(&rows, &[0, 1], false)
}

fn behaviour_reads(name: &str) -> bool {
    Behaviour::from_name(name).is_some_and(Behaviour::reads)
}

/// One verdict per path and policy, in the order they first appear in
/// `cells`; each starts with `[path] ` when the cells ran on several paths.
pub fn verdicts(cells: &[CellReport]) -> Vec<String> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for c in cells {
        if !keys.contains(&(c.path.as_str(), c.policy.as_str())) {
            keys.push((&c.path, &c.policy));
        }
    }
    let several = keys.iter().any(|(path, _)| *path != keys[0].0);
    keys.into_iter()
        .map(|(path, p)| {
            let mine: Vec<&CellReport> = cells
                .iter()
                .filter(|c| c.policy == p && c.path == path)
                .collect();
            let verdict = verdict(p, &mine);
            if several {
                format!("[{path}] {verdict}")
            } else {
                verdict
            }
        })
        .collect()
}

fn verdict(policy: &str, cells: &[&CellReport]) -> String {
    let ran: Vec<&&CellReport> = cells.iter().filter(|c| c.skipped.is_none()).collect();
    if ran.is_empty() {
        let why = cells
            .iter()
            .find_map(|c| c.skipped.clone())
            .unwrap_or_else(|| "no cells".to_owned());
        return format!("{policy}: skipped ({why})");
    }
    let mut parts = Vec::new();
    let conns: usize = ran.iter().map(|c| c.connections).sum();
    let tw: usize = ran.iter().map(|c| c.server_time_wait).sum();
    if tw == 0 {
        parts.push("no server TIME-WAIT in any cell".to_owned());
    } else {
        let which: Vec<&str> = ran
            .iter()
            .filter(|c| c.server_time_wait > 0)
            .map(|c| c.behaviour.as_str())
            .collect();
        parts.push(format!(
            "server TIME-WAIT in {tw} of {conns} connections ({})",
            which.join(", ")
        ));
    }
    let readers: Vec<&&&CellReport> = ran
        .iter()
        .filter(|c| behaviour_reads(&c.behaviour) && c.connections > 0)
        .collect();
    let missed: Vec<String> = readers
        .iter()
        .filter(|c| c.goodbye_delivered_pct.is_some_and(|p| p < 100.0))
        .map(|c| {
            format!(
                "{} {:.0}%",
                c.behaviour,
                c.goodbye_delivered_pct.unwrap_or(0.0)
            )
        })
        .collect();
    let lost: u64 = readers.iter().map(|c| c.bytes_lost).sum();
    if readers.is_empty() {
    } else if missed.is_empty() {
        parts.push("goodbye delivered to every peer that reads, every byte".to_owned());
    } else {
        parts.push(format!(
            "goodbye not always delivered to peers that read (delivered: {}; {lost} bytes lost)",
            missed.join(", ")
        ));
    }
    let leftover: usize = ran.iter().map(|c| c.leftover_sockets).sum();
    if leftover > 0 {
        let which: Vec<String> = ran
            .iter()
            .filter(|c| c.leftover_sockets > 0)
            .map(|c| {
                let states: Vec<String> = c
                    .leftover_states
                    .iter()
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect();
                format!("{}: {}", c.behaviour, states.join(", "))
            })
            .collect();
        parts.push(format!(
            "{leftover} server sockets left over in the kernel after close ({})",
            which.join("; ")
        ));
    }
    let failed: usize = ran.iter().map(|c| c.errors.len()).sum();
    if failed > 0 {
        parts.push(format!("{failed} connections failed to run"));
    }
    format!("{policy}: {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(net_admin: bool) -> KernelInfo {
        KernelInfo {
            release: None,
            tcp_fin_timeout: None,
            tcp_tw_reuse: None,
            tcp_max_tw_buckets: None,
            ip_local_port_range: None,
            net_admin,
        }
    }

    fn path(name: &str) -> PathReport {
        PathReport {
            name: name.to_owned(),
            spec: name.to_owned(),
            mechanism: "test".to_owned(),
            rtt_ms: 1.0,
        }
    }

    /// A cell that ran 5 connections on `path`, `lost` bytes lost.
    fn ran(path: &str, policy: &str, behaviour: Behaviour, lost: u64) -> CellReport {
        let mut cell = CellReport::skipped(policy, behaviour, "").on_path(path);
        cell.skipped = None;
        cell.connections = 5;
        cell.bytes_lost = lost;
        cell.goodbye_delivered_pct = Some(if lost > 0 { 0.0 } else { 100.0 });
        cell
    }

    #[test]
    fn a_run_on_loopback_alone_warns_that_it_hides_loss() {
        let cells = vec![ran("loopback", "abort", Behaviour::SlowReader, 0)];
        let report = LabReport::new(kernel(false), vec![path("loopback")], cells, Vec::new());
        assert_eq!(report.warnings.len(), 1);
        assert!(
            report.warnings[0].contains("hides"),
            "{:?}",
            report.warnings
        );
        assert!(report.warnings[0].contains("CAP_NET_ADMIN"));
        assert!(report.table().starts_with("WARNING: "));

        let cells = vec![ran("slow", "abort", Behaviour::SlowReader, 10)];
        let paths = vec![path("loopback"), path("slow")];
        let report = LabReport::new(kernel(true), paths, cells, Vec::new());
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn headline_names_the_policies_that_left_time_wait_or_lost_bytes_by_path() {
        let mut plain = ran("slow", "plain", Behaviour::Cooperative, 0);
        plain.server_time_wait = 3;
        let abort = ran("slow", "abort", Behaviour::SlowReader, 1000);
        let first = ran("slow", "peer-first", Behaviour::Cooperative, 0);
        let line = headline(&[plain, abort, first]);
        assert_eq!(
            line,
            "headline: server TIME-WAIT: plain (slow); bytes lost: abort (slow); neither: peer-first\n"
        );
    }

    #[test]
    fn verdicts_are_per_path_and_count_lost_bytes() {
        let cells = vec![
            ran("loopback", "abort", Behaviour::SlowReader, 0),
            ran("slow", "abort", Behaviour::SlowReader, 4096),
        ];
        let v = verdicts(&cells);
        assert_eq!(v.len(), 2);
        assert!(v[0].starts_with("[loopback] abort: "), "{v:?}");
        assert!(v[0].contains("every byte"), "{v:?}");
        assert!(v[1].starts_with("[slow] abort: "), "{v:?}");
        assert!(v[1].contains("slow-reader 0%; 4096 bytes lost"), "{v:?}");
        // One path: no prefix, as before paths existed.
        let v = verdicts(&cells[..1]);
        assert!(v[0].starts_with("abort: "), "{v:?}");
    }

    #[test]
    fn the_table_has_one_section_per_path_naming_its_rtt() {
        let cells = vec![
            ran("loopback", "plain", Behaviour::Cooperative, 0),
            ran("slow", "plain", Behaviour::Cooperative, 0),
        ];
        let paths = vec![path("loopback"), path("slow")];
        let table = LabReport::new(kernel(true), paths, cells, Vec::new()).table();
        assert!(
            table.contains("path loopback: test, RTT 1.00 ms"),
            "{table}"
        );
        assert!(table.contains("path slow: test, RTT 1.00 ms"), "{table}");
    }
}
