//! The lab's report: the kernel's settings, the cells, a verdict per policy,
//! as an aligned table or as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::cell::CellReport;
use super::churn::ChurnReport;
use super::peer::Behaviour;
pub use crate::support::kernel::KernelInfo;

/// The whole lab run. Serializes to the JSON object described in the [module docs](super).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabReport {
    /// The kernel and its TCP settings.
    pub kernel: KernelInfo,
    /// One cell per policy × behaviour, policy-major.
    pub cells: Vec<CellReport>,
    /// One plain-words verdict per policy, derived from the cells.
    pub verdicts: Vec<String>,
    /// One entry per policy of the churn run, empty when no churn ran.
    pub churn: Vec<ChurnReport>,
}

impl LabReport {
    /// Builds the report and derives the verdicts from `cells`.
    pub fn new(kernel: KernelInfo, cells: Vec<CellReport>, churn: Vec<ChurnReport>) -> LabReport {
        let verdicts = verdicts(&cells);
        LabReport {
            kernel,
            cells,
            verdicts,
            churn,
        }
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
        align(&rows, 1, false)
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }

    /// The cells as an aligned table, then the verdicts, one per line.
    pub fn table(&self) -> String {
        let header = [
            "policy",
            "behaviour",
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
        for c in &self.cells {
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
        let mut out = align(&rows, 2, true);
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
        let errors: Vec<&CellReport> = self.cells.iter().filter(|c| !c.errors.is_empty()).collect();
        if !errors.is_empty() {
            out.push('\n');
            for c in errors {
                let _ = writeln!(out, "{} × {}: {}", c.policy, c.behaviour, c.errors[0]);
            }
        }
        out
    }
}

/// Rows as aligned columns: the first `left` left-aligned, the others
/// right-aligned; a row's last cell is left unpadded when `ragged` (or when
/// the row ends early).
fn align(rows: &[Vec<String>], left: usize, ragged: bool) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter(|r| i + 1 < r.len() || !ragged && r.len() == columns)
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let w = widths[i];
            if i + 1 == row.len() && (ragged || row.len() < columns) {
                line.push_str(cell);
            } else if i < left {
                let _ = write!(line, "{cell:<w$}  ");
            } else {
                let _ = write!(line, "{cell:>w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn behaviour_reads(name: &str) -> bool {
    Behaviour::from_name(name).is_some_and(Behaviour::reads)
}

/// One verdict per policy, in the order the policies first appear in `cells`.
pub fn verdicts(cells: &[CellReport]) -> Vec<String> {
    let mut policies: Vec<&str> = Vec::new();
    for c in cells {
        if !policies.contains(&c.policy.as_str()) {
            policies.push(&c.policy);
        }
    }
    policies
        .into_iter()
        .map(|p| {
            let mine: Vec<&CellReport> = cells.iter().filter(|c| c.policy == p).collect();
            verdict(p, &mine)
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
    if readers.is_empty() {
    } else if missed.is_empty() {
        parts.push("goodbye delivered to every peer that reads".to_owned());
    } else {
        parts.push(format!(
            "goodbye not always delivered to peers that read (delivered: {})",
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
