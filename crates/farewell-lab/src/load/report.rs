//! What the clients saw, added up: per behaviour and in total, as JSON or a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::{Behaviour, ConnResult, End};
use crate::support::table;

/// Median, 99th percentile (nearest rank) and maximum of one latency, in ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// How many connections measured it.
    pub count: usize,
    /// `null` when `count` is 0.
    pub median: Option<f64>,
    /// `null` when `count` is 0.
    pub p99: Option<f64>,
    /// `null` when `count` is 0.
    pub max: Option<f64>,
}

impl Latency {
    /// Summarises `samples` (sorted here).
    pub fn of(samples: &mut [Duration]) -> Latency {
        samples.sort_unstable();
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let rank = |p: f64| {
            let n = samples.len();
            let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            ms(&samples[i])
        };
        if samples.is_empty() {
            return Latency::default();
        }
        Latency {
            count: samples.len(),
            median: Some(rank(0.5)),
            p99: Some(rank(0.99)),
            max: samples.last().map(ms),
        }
    }
}

/// The three latencies a report gives.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latencies {
    /// Start of connect to connected.
    pub connect: Latency,
    /// `HELLO` sent to `WELCOME` read.
    pub handshake: Latency,
    /// Connected to `BYE` read.
    pub goodbye: Latency,
}

/// What a group of clients saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Connections that finished (each counted once in `ends`).
    pub connections: u64,
    /// Goodbye reason → how many clients read `BYE <reason>`.
    pub goodbyes: BTreeMap<String, u64>,
    /// Clients that saw no goodbye.
    pub no_goodbye: u64,
    /// End name ([`End::name`]) → count; every end is listed, zeros too.
    pub ends: BTreeMap<&'static str, u64>,
    /// Clients whose connection the server closed (EOF) without a goodbye.
    pub eof_without_goodbye: u64,
    /// Echo lines that came back changed.
    pub echo_mismatches: u64,
    /// Latencies in milliseconds.
    pub latency_ms: Latencies,
}

/// Raw samples for one group, before summarising.
#[derive(Default)]
struct Samples {
    tally: Tally,
    connect: Vec<Duration>,
    handshake: Vec<Duration>,
    goodbye: Vec<Duration>,
}

impl Samples {
    fn add(&mut self, r: &ConnResult) {
        let t = &mut self.tally;
        t.connections += 1;
        match &r.goodbye {
            Some(reason) => *t.goodbyes.entry(reason.clone()).or_default() += 1,
            None => t.no_goodbye += 1,
        }
        *t.ends.entry(r.end.name()).or_default() += 1;
        if r.end == End::Eof && r.goodbye.is_none() {
            t.eof_without_goodbye += 1;
        }
        t.echo_mismatches += r.echo_mismatches;
        self.connect.extend(r.connect);
        self.handshake.extend(r.handshake);
        self.goodbye.extend(r.to_goodbye);
    }

    fn finish(mut self) -> Tally {
        for end in End::ALL {
            self.tally.ends.entry(end.name()).or_default();
        }
        self.tally.latency_ms = Latencies {
            connect: Latency::of(&mut self.connect),
            handshake: Latency::of(&mut self.handshake),
            goodbye: Latency::of(&mut self.goodbye),
        };
        self.tally
    }
}

/// At most this many distinct error messages are kept in a report.
pub const MAX_ERRORS: usize = 20;

/// Collects [`ConnResult`]s as they finish.
#[derive(Default)]
pub struct Collector {
    totals: Samples,
    by_behaviour: BTreeMap<Behaviour, Samples>,
    errors: BTreeMap<String, u64>,
}

impl Collector {
    /// An empty collector that lists `behaviours` even if none of them runs.
    pub fn new(behaviours: impl IntoIterator<Item = Behaviour>) -> Collector {
        let mut c = Collector::default();
        for b in behaviours {
            c.by_behaviour.entry(b).or_default();
        }
        c
    }

    /// Counts one finished connection.
    pub fn add(&mut self, r: &ConnResult) {
        self.totals.add(r);
        self.by_behaviour.entry(r.behaviour).or_default().add(r);
        if let Some(e) = &r.error {
            let msg = format!("{}: {e}", r.behaviour.load_name());
            if self.errors.len() < MAX_ERRORS || self.errors.contains_key(&msg) {
                *self.errors.entry(msg).or_default() += 1;
            }
        }
    }

    /// Connections counted so far.
    pub fn finished(&self) -> u64 {
        self.totals.tally.connections
    }

    /// The totals and per-behaviour tallies, and the error messages with their counts.
    pub fn finish(self) -> (Tally, BTreeMap<String, Tally>, Vec<String>) {
        let by = self
            .by_behaviour
            .into_iter()
            .map(|(b, s)| (b.load_name().to_owned(), s.finish()))
            .collect();
        let errors = self
            .errors
            .into_iter()
            .map(|(m, n)| if n > 1 { format!("{m} (×{n})") } else { m })
            .collect();
        (self.totals.finish(), by, errors)
    }
}

/// One load run. Serializes to the JSON object described in the [module docs](super).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadReport {
    /// The target as given.
    pub target: String,
    /// The addresses it resolved to (all loopback).
    pub addresses: Vec<String>,
    /// The mix, as `name=weight,…`.
    pub mix: String,
    /// `--connections`, or `null`.
    pub connections_planned: Option<u64>,
    /// `--rate` in connections per second, or `null`.
    pub rate: Option<f64>,
    /// `--duration`: no connection starts after it.
    pub duration_ms: f64,
    /// How long the run took, in-flight connections included.
    pub elapsed_ms: f64,
    /// Source addresses the clients were spread over (1: the kernel chose).
    pub sources: usize,
    /// True when the run was stopped early (Ctrl-C).
    pub interrupted: bool,
    /// Connections started.
    pub started: u64,
    /// Started connections that never reported (cut off by an interrupt or
    /// the final bound, or a client task that failed).
    pub unfinished: u64,
    /// All clients together.
    pub totals: Tally,
    /// Behaviour name → what those clients saw; every behaviour in the mix.
    pub behaviours: BTreeMap<String, Tally>,
    /// Distinct error messages (`behaviour: message (×count)`), at most [`MAX_ERRORS`].
    pub errors: Vec<String>,
}

impl LoadReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }

    /// The report as aligned tables: one row per behaviour and a total, then
    /// the latencies, then the errors.
    pub fn table(&self) -> String {
        let mut rows: Vec<Vec<String>> = vec![[
            "behaviour",
            "conns",
            "goodbyes seen",
            "no BYE",
            "EOF w/o BYE",
            "echo bad",
            "ends",
        ]
        .map(String::from)
        .to_vec()];
        let row = |name: &str, t: &Tally| {
            let goodbyes: Vec<String> =
                t.goodbyes.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let ends: Vec<String> = End::ALL
                .iter()
                .filter_map(|e| {
                    let n = t.ends.get(e.name()).copied().unwrap_or(0);
                    (n > 0).then(|| format!("{} {n}", e.name()))
                })
                .collect();
            vec![
                name.to_owned(),
                t.connections.to_string(),
                if goodbyes.is_empty() {
                    "-".into()
                } else {
                    goodbyes.join(", ")
                },
                t.no_goodbye.to_string(),
                t.eof_without_goodbye.to_string(),
                t.echo_mismatches.to_string(),
                ends.join(", "),
            ]
        };
        for (name, t) in &self.behaviours {
            rows.push(row(name, t));
        }
        rows.push(row("total", &self.totals));
        let mut out = table::render(&rows, &[0, 2, 6], false);

        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        let l = &self.totals.latency_ms;
        let mut lat: Vec<Vec<String>> = vec![["latency ms", "count", "median", "p99", "max"]
            .map(String::from)
            .to_vec()];
        for (name, x) in [
            ("connect", &l.connect),
            ("handshake", &l.handshake),
            ("to goodbye", &l.goodbye),
        ] {
            lat.push(vec![
                name.to_owned(),
                x.count.to_string(),
                ms(x.median),
                ms(x.p99),
                ms(x.max),
            ]);
        }
        out.push('\n');
        out.push_str(&table::render(&lat, &[0], false));
        let _ = writeln!(
            out,
            "\n{} connections started in {:.1} s{}{}",
            self.started,
            self.elapsed_ms / 1000.0,
            if self.unfinished > 0 {
                format!(", {} unfinished", self.unfinished)
            } else {
                String::new()
            },
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
        );
        for e in &self.errors {
            let _ = writeln!(out, "error: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn latency_nearest_rank() {
        assert_eq!(Latency::of(&mut []), Latency::default());
        let l = Latency::of(&mut ms(&[5, 1, 3]));
        assert_eq!(
            (l.count, l.median, l.p99, l.max),
            (3, Some(3.0), Some(5.0), Some(5.0))
        );
        let mut many: Vec<u64> = (1..=200).collect();
        many.reverse();
        let l = Latency::of(&mut ms(&many));
        assert_eq!(
            (l.median, l.p99, l.max),
            (Some(100.0), Some(198.0), Some(200.0))
        );
    }

    #[test]
    fn collector_counts_goodbyes_ends_and_errors() {
        let r = |b, goodbye: Option<&str>, end, error: Option<&str>| ConnResult {
            behaviour: b,
            goodbye: goodbye.map(String::from),
            end,
            connect: Some(Duration::from_millis(1)),
            handshake: None,
            to_goodbye: goodbye.map(|_| Duration::from_millis(2)),
            echo_mismatches: 0,
            error: error.map(String::from),
        };
        let mut c = Collector::new([
            Behaviour::Cooperative,
            Behaviour::NeverHandshakes,
            Behaviour::Floods,
        ]);
        c.add(&r(Behaviour::Cooperative, Some("quit"), End::Closed, None));
        c.add(&r(Behaviour::Cooperative, Some("quit"), End::Closed, None));
        c.add(&r(Behaviour::NeverHandshakes, None, End::Eof, None));
        c.add(&r(
            Behaviour::NeverHandshakes,
            None,
            End::Error,
            Some("boom"),
        ));
        c.add(&r(
            Behaviour::NeverHandshakes,
            None,
            End::Error,
            Some("boom"),
        ));
        let (totals, by, errors) = c.finish();
        assert_eq!(totals.connections, 5);
        assert_eq!(totals.goodbyes["quit"], 2);
        assert_eq!(totals.no_goodbye, 3);
        assert_eq!(totals.eof_without_goodbye, 1);
        assert_eq!(totals.ends["closed"], 2);
        assert_eq!(totals.ends["timeout"], 0);
        assert_eq!(totals.latency_ms.goodbye.count, 2);
        assert_eq!(by["silent"].ends["error"], 2);
        assert_eq!(by["flood"].connections, 0);
        assert_eq!(errors, ["silent: boom (×2)"]);
    }
}
