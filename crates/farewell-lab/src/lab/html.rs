//! The lab's HTML report: one self-contained page (inline CSS, inline SVG,
//! no scripts, nothing fetched) with the kernel header, the charts, the
//! verdicts and the tables.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::peer::Behaviour;
use super::report::LabReport;
use super::svg::{escape, line_chart, strip_chart};

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;font-size:13px;margin:1em 0}\
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}\
th{background:#f2f2f2}td.l,th.l{text-align:left}\
tr.bad td.tw{background:#fde2e0}tr.skip td{color:#888}\
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
    if !report.churn.is_empty() {
        out.push_str(&churn_chart(report));
    }
    if !report.cells.is_empty() {
        out.push_str(&release_chart(report));
    }
    out.push_str("<h2>Verdicts</h2>\n<ul>\n");
    for v in &report.verdicts {
        let _ = writeln!(out, "<li>{}</li>", escape(v));
    }
    out.push_str("</ul>\n");
    out.push_str(&matrix_table(report));
    if !report.churn.is_empty() {
        out.push_str(&churn_table(report));
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
        "<h2>Churn: server TIME-WAIT over time</h2>\n<figure>{}<figcaption>Server-side \
         sockets in TIME-WAIT on the listening port, by the kernel's own table, sampled every \
         100 ms while cooperative clients connect at {rate}/s; the last point is after the \
         drain. Each entry lives 60 s on Linux: a policy that sends the first FIN piles \
         them up, peer-first leaves them with the clients.</figcaption></figure>\n",
        line_chart(
            "server TIME-WAIT entries",
            "seconds since the churn started",
            "server TIME-WAIT",
            &series
        )
    )
}

fn release_chart(report: &LabReport) -> String {
    let behaviours: Vec<String> = Behaviour::ALL.iter().map(|b| b.name().to_owned()).collect();
    let mut rows: Vec<(String, Vec<(f64, usize)>)> = Vec::new();
    for c in &report.cells {
        let lane = behaviours
            .iter()
            .position(|b| *b == c.behaviour)
            .unwrap_or(0);
        if !rows.iter().any(|(p, _)| *p == c.policy) {
            rows.push((c.policy.clone(), Vec::new()));
        }
        let row = rows
            .iter_mut()
            .find(|(p, _)| *p == c.policy)
            .expect("pushed");
        row.1.extend(c.release_ms.iter().map(|&ms| (ms, lane)));
    }
    format!(
        "<h2>Time until the server released the socket</h2>\n<figure>{}<figcaption>One dot per \
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
        "<h2>The matrix</h2>\n<table><tr><th class=\"l\">policy</th><th class=\"l\">behaviour</th>\
         <th>conns</th><th>server TW</th><th>client TW</th><th>delivered</th><th>acked</th>\
         <th>lost B</th><th>release median</th><th>release p99</th><th>leftover</th>\
         <th class=\"l\">paths</th></tr>\n",
    );
    let pct = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.0}%"));
    let ms = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.1} ms"));
    for c in &report.cells {
        if let Some(why) = &c.skipped {
            let _ = writeln!(
                out,
                "<tr class=\"skip\"><td class=\"l\">{}</td><td class=\"l\">{}</td>\
                 <td class=\"l\" colspan=\"10\">skipped: {}</td></tr>",
                escape(&c.policy),
                escape(&c.behaviour),
                escape(why)
            );
            continue;
        }
        let bad = c.server_time_wait > 0 || c.leftover_sockets > 0;
        out.push_str(if bad { "<tr class=\"bad\">" } else { "<tr>" });
        cell(&mut out, "l", &c.policy);
        cell(&mut out, "l", &c.behaviour);
        cell(&mut out, "", &c.connections.to_string());
        cell(&mut out, "tw", &c.server_time_wait.to_string());
        cell(&mut out, "", &c.client_time_wait.to_string());
        cell(&mut out, "", &pct(c.goodbye_delivered_pct));
        cell(&mut out, "", &pct(c.goodbye_acked_pct));
        cell(&mut out, "", &c.bytes_lost.to_string());
        cell(&mut out, "", &ms(c.release_ms_median));
        cell(&mut out, "", &ms(c.release_ms_p99));
        cell(&mut out, "tw", &c.leftover_sockets.to_string());
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
        out.push_str(if c.peak_server_time_wait > 0 {
            "<tr class=\"bad\">"
        } else {
            "<tr>"
        });
        cell(&mut out, "l", &c.policy);
        cell(&mut out, "", &c.connections.to_string());
        cell(&mut out, "", &c.failed.to_string());
        cell(
            &mut out,
            "",
            &format!("{:.0} of {}", c.rate_achieved, c.rate_target),
        );
        cell(&mut out, "tw", &c.peak_server_time_wait.to_string());
        cell(&mut out, "tw", &c.final_server_time_wait.to_string());
        cell(&mut out, "", &c.final_client_time_wait.to_string());
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}
