//! The lab's HTML report: one self-contained page (inline CSS, inline SVG,
//! no scripts, nothing fetched) with the kernel header and the paths, each
//! path's matrix as a policy × behaviour grid, the charts, the verdicts and
//! the tables.
//!
//! Every colour is judged by its own cell: a grid cell by its own server
//! TIME-WAIT, lost bytes and left-over sockets, a table cell by its own
//! value; never by another column of its row.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::cell::CellReport;
use super::peer::Behaviour;
use super::report::{heavy_row, LabReport, HEAVY_COLUMNS};
use super::svg::{escape, small_multiples, strip_chart};

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}\
table{border-collapse:collapse;font-size:13px;margin:1em 0}\
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}\
th{background:#f2f2f2}td.l,th.l{text-align:left}\
td.bad{background:#f8c4c0}tr.skip td{color:#888}\
table.grid td{text-align:center;width:92px;height:46px;font-size:12px;line-height:1.35}\
table.grid th{font-size:12px}table.grid td small{color:inherit;opacity:.75}\
.ok{background:#cdebd3}.tw{background:#f4a3a0}.lost{background:#fcd08a}\
.both{background:#c62828;color:#fff}.moot{background:#e8ecef;color:#555}\
.skip{background:#fafafa;color:#999}.left{box-shadow:inset 0 0 0 3px #6a1b9a}\
.err{outline:2px dashed #000;outline-offset:-4px}\
.warn{border:2px solid #c62828;background:#fff3f2;padding:.6em 1em;font-weight:bold}\
ul.legend{list-style:none;padding:0;font-size:13px}ul.legend li{margin:3px 0}\
ul.legend span{display:inline-block;width:28px;height:14px;margin-right:8px;vertical-align:middle;border:1px solid #bbb}\
figure{margin:1.5em 0}figcaption{font-size:13px;color:#555;max-width:760px}\
code{background:#f4f4f4;padding:0 3px}";

/// How many charts [`page`] draws for `report`: the release-time
/// distributions when the matrix has cells, TIME-WAIT over time when a churn
/// ran. The page holds exactly this many `<svg>` elements.
pub fn chart_count(report: &LabReport) -> usize {
    usize::from(!report.cells.is_empty()) + usize::from(!report.churn.is_empty())
}

/// The report as one HTML page.
pub fn page(report: &LabReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <title>farewell lab</title><style>{STYLE}</style></head><body>\n\
         <h1>farewell lab</h1>\n<p>{}</p>\n",
        escape(&report.kernel.header())
    );
    for w in &report.warnings {
        let _ = writeln!(out, "<p class=\"warn\">WARNING: {}</p>", escape(w));
    }
    out.push_str("<ul>\n");
    for p in &report.paths {
        let _ = writeln!(
            out,
            "<li>path <b>{}</b>: {}, measured RTT {:.2} ms</li>",
            escape(&p.name),
            escape(&p.mechanism),
            p.rtt_ms
        );
    }
    out.push_str("</ul>\n");
    for p in &report.paths {
        out.push_str(&grid(report, &p.name));
    }
    if !report.cells.is_empty() {
        out.push_str(LEGEND);
    }
    if !report.churn.is_empty() {
        out.push_str(&churn_chart(report));
    }
    if !report.cells.is_empty() {
        out.push_str(&release_chart(report));
    }
    out.push_str("<h2 id=\"verdicts\">Verdicts</h2>\n<ul>\n");
    for v in &report.verdicts {
        let _ = writeln!(out, "<li>{}</li>", escape(v));
    }
    out.push_str("</ul>\n");
    out.push_str(&matrix_table(report));
    if !report.churn.is_empty() {
        out.push_str(&churn_table(report));
    }
    if !report.heavy.is_empty() {
        out.push_str(&heavy_table(report));
    }
    out.push_str("</body></html>\n");
    out
}

/// Writes [`page`] to `dir/index.html`, creating `dir`; returns the file's path.
///
/// # Errors
///
/// When the directory cannot be created or the file written.
pub fn write(report: &LabReport, dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("index.html");
    std::fs::write(&path, page(report))?;
    Ok(path)
}

const LEGEND: &str = "<ul class=\"legend\">\
<li><span class=\"ok\"></span>no server TIME-WAIT, every byte of the goodbye delivered</li>\
<li><span class=\"tw\"></span>the server kept TIME-WAIT (the number: connections of the cell)</li>\
<li><span class=\"lost\"></span>a peer that reads lost bytes of the goodbye</li>\
<li><span class=\"both\"></span>both</li>\
<li><span class=\"moot\"></span>the peer cannot receive (never reads, resets first, vanished): \
no server TIME-WAIT, and its losses are not the policy's</li>\
<li><span class=\"ok left\"></span>server sockets left over in the kernel (e.g. FIN-WAIT-1 orphans)</li>\
<li><span class=\"ok err\"></span>connections that failed to run</li>\
<li><span class=\"skip\"></span>skipped (why: hover)</li></ul>\n";

/// `n` bytes for people: "0 B", "9 B", "45 KiB", "1.2 MiB".
fn bytes_text(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.0} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The grid cell's class and lines: judged by this cell's own numbers.
fn judge(c: &CellReport) -> (String, String) {
    if let Some(why) = &c.skipped {
        return (
            "skip".to_owned(),
            format!("skipped<br/><small>{}</small>", escape(why)),
        );
    }
    let reads = Behaviour::from_name(&c.behaviour).is_some_and(Behaviour::reads);
    let tw = c.server_time_wait > 0;
    let lost = reads && c.bytes_lost > 0;
    let mut class = match (tw, lost) {
        (true, true) => "both",
        (true, false) => "tw",
        (false, true) => "lost",
        (false, false) if reads => "ok",
        (false, false) => "moot",
    }
    .to_owned();
    if c.leftover_sockets > 0 {
        class.push_str(" left");
    }
    if !c.errors.is_empty() {
        class.push_str(" err");
    }
    let second = if reads {
        format!("lost {}", bytes_text(c.bytes_lost))
    } else {
        "cannot receive".to_owned()
    };
    let ending = c
        .paths
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or(String::new(), |(e, _)| e.clone());
    let mut lines = format!(
        "TW {}/{}<br/>{second}<br/><small>{}</small>",
        c.server_time_wait,
        c.connections,
        escape(&ending)
    );
    if c.leftover_sockets > 0 {
        let _ = write!(
            lines,
            "<br/><small>{} left over</small>",
            c.leftover_sockets
        );
    }
    (class, lines)
}

/// One path's matrix: policies down, behaviours across, each cell coloured
/// by its own server TIME-WAIT and lost bytes.
fn grid(report: &LabReport, path: &str) -> String {
    let cells: Vec<&CellReport> = report.cells.iter().filter(|c| c.path == path).collect();
    let mut behaviours: Vec<&str> = Vec::new();
    let mut policies: Vec<&str> = Vec::new();
    for c in &cells {
        if !behaviours.contains(&c.behaviour.as_str()) {
            behaviours.push(&c.behaviour);
        }
        if !policies.contains(&c.policy.as_str()) {
            policies.push(&c.policy);
        }
    }
    let mechanism = report
        .paths
        .iter()
        .find(|p| p.name == path)
        .map_or(String::new(), |p| {
            format!("{}, measured RTT {:.2} ms", p.mechanism, p.rtt_ms)
        });
    let mut out = format!(
        "<h2 id=\"path-{0}\">Path {0}</h2>\n<p>{1}</p>\n<table class=\"grid\"><tr><th class=\"l\">policy \\ peer</th>",
        escape(path),
        escape(&mechanism)
    );
    for b in &behaviours {
        let size = cells
            .iter()
            .find(|c| c.behaviour == *b && c.skipped.is_none())
            .map_or(String::new(), |c| {
                format!(
                    "<br/><small>goodbye {}</small>",
                    bytes_text(c.goodbye_bytes as u64)
                )
            });
        let _ = write!(out, "<th>{}{size}</th>", escape(b));
    }
    out.push_str("</tr>\n");
    for p in &policies {
        let _ = write!(out, "<tr><th class=\"l\">{}</th>", escape(p));
        for b in &behaviours {
            match cells.iter().find(|c| c.policy == *p && c.behaviour == *b) {
                Some(c) => {
                    let (class, lines) = judge(c);
                    let title = format!(
                        "{p} × {b} on {path}: server TIME-WAIT {}/{}, delivered {}, lost {} B",
                        c.server_time_wait,
                        c.connections,
                        c.goodbye_delivered_pct
                            .map_or("-".to_owned(), |d| format!("{d:.0}%")),
                        c.bytes_lost
                    );
                    let _ = write!(
                        out,
                        "<td class=\"{class}\" title=\"{}\">{lines}</td>",
                        escape(&title)
                    );
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

fn churn_chart(report: &LabReport) -> String {
    let series: Vec<(String, Vec<(f64, f64)>)> = report
        .churn
        .iter()
        .filter(|c| c.skipped.is_none())
        .map(|c| {
            let points = c
                .samples
                .iter()
                .map(|s| (s.t_ms as f64 / 1000.0, s.server_time_wait as f64))
                .collect();
            (c.policy.clone(), points)
        })
        .collect();
    let rate = report.churn.first().map_or(0, |c| c.rate_target);
    format!(
        "<h2 id=\"churn\">Churn: server TIME-WAIT over time</h2>\n<figure>{}<figcaption>Server-side \
         sockets in TIME-WAIT on the listening port, by the kernel's own table, sampled every \
         100 ms while cooperative clients connect at {rate}/s (on loopback); the last point is \
         after the drain. One panel per policy, all on the same scale. Each entry lives 60 s \
         on Linux: a policy that sends the first FIN piles them up, peer-first leaves them \
         with the clients.</figcaption></figure>\n",
        small_multiples(
            "server TIME-WAIT entries, per policy",
            "seconds since the churn started",
            "server TIME-WAIT",
            4,
            &series
        )
    )
}

fn release_chart(report: &LabReport) -> String {
    let behaviours: Vec<String> = Behaviour::LAB.iter().map(|b| b.name().to_owned()).collect();
    let mut rows: Vec<(String, Vec<(f64, usize)>)> = Vec::new();
    for c in &report.cells {
        let lane = behaviours
            .iter()
            .position(|b| *b == c.behaviour)
            .unwrap_or(0);
        let label = if report.paths.len() > 1 {
            format!("{} · {}", c.path, c.policy)
        } else {
            c.policy.clone()
        };
        if !rows.iter().any(|(p, _)| *p == label) {
            rows.push((label.clone(), Vec::new()));
        }
        let row = rows.iter_mut().find(|(p, _)| *p == label).expect("pushed");
        row.1.extend(c.release_ms.iter().map(|&ms| (ms, lane)));
    }
    format!(
        "<h2 id=\"release\">Time until the server released the socket</h2>\n<figure>{}<figcaption>One dot per \
         connection of the matrix, coloured by the peer's behaviour, on a logarithmic axis \
         (times under 0.1 ms are drawn at 0.1 ms). Long times are deadlines: the policy waited \
         for a peer that did not close.</figcaption></figure>\n",
        strip_chart(
            "release time per policy (ms, log scale)",
            "milliseconds until the server's descriptor was closed",
            0.1,
            &behaviours,
            &rows
        )
    )
}

fn cell(out: &mut String, class: &str, text: &str) {
    let _ = write!(out, "<td class=\"{class}\">{}</td>", escape(text));
}

fn matrix_table(report: &LabReport) -> String {
    let mut out = String::from(
        "<h2 id=\"matrix\">The matrix, every number</h2>\n<table><tr><th class=\"l\">path</th>\
         <th class=\"l\">policy</th><th class=\"l\">behaviour</th><th>goodbye B</th>\
         <th>conns</th><th>server TW</th><th>client TW</th><th>delivered</th><th>acked</th>\
         <th>lost B</th><th>release median</th><th>release p99</th><th>leftover</th>\
         <th class=\"l\">endings</th></tr>\n",
    );
    let pct = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.0}%"));
    let ms = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.1} ms"));
    // A cell is tinted when its own value is bad, never for another column.
    let tint = |bad: bool| if bad { "bad" } else { "" };
    for c in &report.cells {
        if let Some(why) = &c.skipped {
            let _ = writeln!(
                out,
                "<tr class=\"skip\"><td class=\"l\">{}</td><td class=\"l\">{}</td>\
                 <td class=\"l\">{}</td><td class=\"l\" colspan=\"11\">skipped: {}</td></tr>",
                escape(&c.path),
                escape(&c.policy),
                escape(&c.behaviour),
                escape(why)
            );
            continue;
        }
        let reads = Behaviour::from_name(&c.behaviour).is_some_and(Behaviour::reads);
        out.push_str("<tr>");
        cell(&mut out, "l", &c.path);
        cell(&mut out, "l", &c.policy);
        cell(&mut out, "l", &c.behaviour);
        cell(&mut out, "", &c.goodbye_bytes.to_string());
        cell(&mut out, "", &c.connections.to_string());
        cell(
            &mut out,
            tint(c.server_time_wait > 0),
            &c.server_time_wait.to_string(),
        );
        cell(&mut out, "", &c.client_time_wait.to_string());
        cell(
            &mut out,
            tint(reads && c.goodbye_delivered_pct.is_some_and(|p| p < 100.0)),
            &pct(c.goodbye_delivered_pct),
        );
        cell(&mut out, "", &pct(c.goodbye_acked_pct));
        cell(
            &mut out,
            tint(reads && c.bytes_lost > 0),
            &c.bytes_lost.to_string(),
        );
        cell(&mut out, "", &ms(c.release_ms_median));
        cell(&mut out, "", &ms(c.release_ms_p99));
        cell(
            &mut out,
            tint(c.leftover_sockets > 0),
            &c.leftover_sockets.to_string(),
        );
        let paths: Vec<String> = c.paths.iter().map(|(p, n)| format!("{p} {n}")).collect();
        cell(&mut out, "l", &paths.join(", "));
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

fn churn_table(report: &LabReport) -> String {
    let mut out = String::from(
        "<h2>Churn</h2>\n<table><tr><th class=\"l\">policy</th><th>conns</th><th>no goodbye</th>\
         <th>rate/s</th><th>peak server TW</th><th>final server TW</th><th>final client TW</th></tr>\n",
    );
    for c in &report.churn {
        if let Some(why) = &c.skipped {
            let _ = writeln!(
                out,
                "<tr class=\"skip\"><td class=\"l\">{}</td><td class=\"l\" colspan=\"6\">skipped: {}</td></tr>",
                escape(&c.policy),
                escape(why)
            );
            continue;
        }
        out.push_str("<tr>");
        cell(&mut out, "l", &c.policy);
        cell(&mut out, "", &c.connections.to_string());
        cell(&mut out, "", &c.failed.to_string());
        cell(
            &mut out,
            "",
            &format!("{:.0} of {}", c.rate_achieved, c.rate_target),
        );
        let tint = |n: usize| if n > 0 { "bad" } else { "" };
        cell(
            &mut out,
            tint(c.peak_server_time_wait),
            &c.peak_server_time_wait.to_string(),
        );
        cell(
            &mut out,
            tint(c.final_server_time_wait),
            &c.final_server_time_wait.to_string(),
        );
        cell(&mut out, "", &c.final_client_time_wait.to_string());
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// The heavy-client run: two rows per policy (the heavy client, the light
/// one), server TIME-WAIT and lost bytes tinted where not 0.
fn heavy_table(report: &LabReport) -> String {
    let first = &report.heavy[0];
    let mut out = format!(
        "<h2 id=\"heavy\">Heavy client next to a light one</h2>\n<p>One client address opens \
         connections as fast as it can (ephemeral ports from the kernel), another opens a few, \
         on the {} path; the closer's heavy-client threshold is {} endings a minute. TIME-WAIT \
         by the census of each namespace.</p>\n<table><tr>",
        escape(&first.path),
        first.threshold
    );
    for (i, h) in HEAVY_COLUMNS.iter().enumerate() {
        let class = if i < 2 || i + 1 == HEAVY_COLUMNS.len() {
            " class=\"l\""
        } else {
            ""
        };
        let _ = write!(out, "<th{class}>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for h in &report.heavy {
        for (kind, c) in [("heavy", &h.heavy), ("light", &h.light)] {
            out.push_str("<tr>");
            cell(&mut out, "l", &h.label());
            cell(&mut out, "l", &format!("{kind} {}", c.address));
            let row = heavy_row(c);
            let last = row.len() - 1;
            for (i, text) in row.iter().enumerate() {
                let bad = (i == 5 && c.server_time_wait > 0) || (i == 6 && c.bytes_lost > 0);
                let class = if i == last {
                    "l"
                } else if bad {
                    "bad"
                } else {
                    ""
                };
                cell(&mut out, class, text);
            }
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</table>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(behaviour: Behaviour, server_tw: usize, lost: u64) -> CellReport {
        let mut cell = CellReport::skipped("plain", behaviour, "");
        cell.skipped = None;
        cell.connections = 5;
        cell.server_time_wait = server_tw;
        cell.bytes_lost = lost;
        cell
    }

    #[test]
    fn each_grid_cell_is_judged_by_its_own_numbers() {
        assert_eq!(judge(&ran(Behaviour::Cooperative, 0, 0)).0, "ok");
        assert_eq!(judge(&ran(Behaviour::Cooperative, 5, 0)).0, "tw");
        assert_eq!(judge(&ran(Behaviour::SlowReader, 0, 9)).0, "lost");
        assert_eq!(judge(&ran(Behaviour::SlowReader, 2, 9)).0, "both");
        // A peer that cannot receive: its losses are not the policy's.
        assert_eq!(judge(&ran(Behaviour::NeverReads, 0, 9)).0, "moot");
        assert_eq!(judge(&ran(Behaviour::NeverReads, 1, 9)).0, "tw");
        let mut left = ran(Behaviour::Vanishes, 0, 9);
        left.leftover_sockets = 5;
        assert_eq!(judge(&left).0, "moot left");
        let skipped = CellReport::skipped("silent", Behaviour::Cooperative, "needs CAP_NET_ADMIN");
        assert_eq!(judge(&skipped).0, "skip");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes_text(9), "9 B");
        assert_eq!(bytes_text(131_072), "128 KiB");
        assert_eq!(bytes_text(1_310_965), "1.3 MiB");
    }
}
