//! One cell of the lab (one policy against one peer behaviour): the policy
//! with the lab's short deadlines on a path ([`lab_policy_on`]), one
//! connection across a path ([`run_connection_on`]; the runner and its
//! [`Trial`] are `farewell_testkit`'s, which the core's tests share), and the
//! cell's aggregate of its trials, the [`CellReport`] that the matrix, the
//! vanished peers' column and the report share.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::net::Net;
use super::path::{NetPath, PathKind, PathSpec, Slow};
use super::peer::Behaviour;
use super::LabError;
use farewell::{Delivery, Policy};
pub use farewell_testkit::lab::lab_policy;
pub(crate) use farewell_testkit::lab::Trial;
use farewell_testkit::lab::{bounded, run_on};

/// [`lab_policy`] for a run on `path`: the stall timeout gets the path's
/// [`slack`] on top, so that a retransmission
/// timeout after a loss on a path with a deep queue or a long round trip
/// (Linux: at least 200 ms, plus four times the round-trip variation, which
/// a queue makes) does not pass for a stalled peer.
///
/// # Errors
///
/// As [`lab_policy`].
pub fn lab_policy_on(name: &str, grace: Duration, path: &PathSpec) -> Result<Policy, LabError> {
    let policy = lab_policy(name, grace)?;
    Ok(match policy.stall_timeout() {
        Some(stall) => policy.with_stall_timeout(bounded(stall + slack(path))),
        None => policy,
    })
}

/// What a path adds to a stall timeout: four times the longest its queue
/// can hold a full frame (`slow`: `queue` frames of 1514 bytes at `rate`)
/// plus four times its round trip (`wan`), at most 5 s; nothing on loopback.
pub fn slack(path: &PathSpec) -> Duration {
    let queue_delay = |rate: u64, frames: u32| {
        Duration::from_secs_f64(f64::from(frames) * 1514.0 * 8.0 / rate.max(1) as f64)
    };
    let slack = match path {
        PathSpec::Slow(slow) => queue_delay(slow.rate, slow.queue) * 4,
        PathSpec::Wan(wan) => {
            let queue = wan.rate.map_or(Duration::ZERO, |rate| {
                queue_delay(rate, Slow::default().queue)
            });
            (wan.delay * 2 + queue) * 4
        }
        _ => Duration::ZERO,
    };
    slack.min(Duration::from_secs(5))
}

/// Runs one connection across `path` (the server socket in its server
/// namespace, the client in its client namespace; both on 127.0.0.1 for a
/// loopback path) with `policy` against a peer that behaves as
/// `behaviour`; the server says `goodbye` (the line, or a large
/// [`last_message`](super::last_message)). The verdict is the kernel's
/// census of both ends, read in their own namespaces, and what the peer's
/// application received, checked byte for byte. Errors as [`run_connection`](super::run_connection).
pub async fn run_connection_on(
    path: &Arc<NetPath>,
    policy: Policy,
    behaviour: Behaviour,
    goodbye: Bytes,
) -> Result<Trial, LabError> {
    let net = match path.kind() {
        PathKind::Loopback => Net::Loopback(path.server_ip()),
        _ => Net::Path(Arc::clone(path)),
    };
    run_on(&net, policy, behaviour, goodbye).await
}

/// The aggregate of one cell: one policy against one behaviour. Serialized as
/// one element of the `cells` array (see the [module docs](super)).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellReport {
    /// The policy's name.
    pub policy: String,
    /// The behaviour's name.
    pub behaviour: String,
    /// The name of the network path the cell ran on (one of the report's
    /// `paths`; `"loopback"` unless the lab was given others).
    pub path: String,
    /// The length of the goodbye the server said: the line, or a large last
    /// message (the lab's `large_goodbye`) for the peers that take one.
    pub goodbye_bytes: usize,
    /// Connections that ran to the end (failed ones are in `errors`).
    pub connections: usize,
    /// Connections whose server end the kernel kept in TIME-WAIT.
    pub server_time_wait: usize,
    /// Connections whose client end the kernel kept in TIME-WAIT.
    pub client_time_wait: usize,
    /// Percentage of connections whose client application received the whole goodbye.
    pub goodbye_delivered_pct: Option<f64>,
    /// Percentage of connections whose outcome confirmed the goodbye ACKed.
    pub goodbye_acked_pct: Option<f64>,
    /// Goodbye bytes the client applications did not receive, summed.
    pub bytes_lost: u64,
    /// Median time until the server released the socket, in milliseconds.
    pub release_ms_median: Option<f64>,
    /// 99th percentile (nearest rank) of the time until the server released
    /// the socket, in milliseconds; equals the max below 100 connections.
    pub release_ms_p99: Option<f64>,
    /// Longest time until the server released the socket, in milliseconds.
    pub release_ms_max: Option<f64>,
    /// Every connection's time until release, in milliseconds, ascending
    /// (the distribution the HTML report draws).
    pub release_ms: Vec<f64>,
    /// Server ends still in the kernel's table, not in TIME-WAIT, after settling.
    pub leftover_sockets: usize,
    /// Those left-over server ends by kernel state (`"FIN-WAIT-1"` -> count).
    pub leftover_states: BTreeMap<String, usize>,
    /// How many connections took each outcome path (by [`Ending::name`](farewell::Ending::name)).
    pub paths: BTreeMap<String, usize>,
    /// Why the cell did not run (`"needs CAP_NET_ADMIN"`), or `None`.
    pub skipped: Option<String>,
    /// One message per connection that failed.
    pub errors: Vec<String>,
}

impl CellReport {
    fn empty(policy: &str, behaviour: Behaviour) -> CellReport {
        CellReport {
            policy: policy.to_owned(),
            behaviour: behaviour.name().to_owned(),
            path: "loopback".to_owned(),
            goodbye_bytes: behaviour.goodbye().len(),
            connections: 0,
            server_time_wait: 0,
            client_time_wait: 0,
            goodbye_delivered_pct: None,
            goodbye_acked_pct: None,
            bytes_lost: 0,
            release_ms_median: None,
            release_ms_p99: None,
            release_ms_max: None,
            release_ms: Vec::new(),
            leftover_sockets: 0,
            leftover_states: BTreeMap::new(),
            paths: BTreeMap::new(),
            skipped: None,
            errors: Vec::new(),
        }
    }

    /// The same cell, on the path named `path`.
    pub fn on_path(mut self, path: &str) -> CellReport {
        self.path = path.to_owned();
        self
    }

    /// A cell that did not run, and why (e.g. `"needs CAP_NET_ADMIN"`).
    pub fn skipped(policy: &str, behaviour: Behaviour, why: &str) -> CellReport {
        let mut cell = CellReport::empty(policy, behaviour);
        cell.skipped = Some(why.to_owned());
        cell
    }

    /// Aggregates the trials of one cell.
    pub fn from_trials(
        policy: &str,
        behaviour: Behaviour,
        trials: &[Trial],
        errors: Vec<String>,
    ) -> CellReport {
        let mut cell = CellReport::empty(policy, behaviour);
        cell.errors = errors;
        let n = trials.len();
        cell.connections = n;
        if let Some(t) = trials.first() {
            cell.goodbye_bytes = t.goodbye_bytes;
        }
        if n == 0 {
            return cell;
        }
        let pct = |count: usize| Some(round1(100.0 * count as f64 / n as f64));
        let count = |f: &dyn Fn(&Trial) -> bool| trials.iter().filter(|t| f(t)).count();
        cell.server_time_wait = count(&|t| t.server_time_wait);
        cell.client_time_wait = count(&|t| t.client_time_wait);
        cell.leftover_sockets = count(&|t| t.server_leftover);
        cell.goodbye_delivered_pct = pct(count(&|t| t.peer_got_goodbye));
        cell.goodbye_acked_pct = pct(count(&|t| t.outcome.goodbye == Delivery::Confirmed));
        cell.bytes_lost = trials.iter().map(|t| t.goodbye_bytes_lost as u64).sum();
        let mut ms: Vec<f64> = trials
            .iter()
            .map(|t| round1(t.release.as_secs_f64() * 1000.0))
            .collect();
        ms.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        cell.release_ms_median = Some(round1(median));
        // Nearest rank: the smallest sample with at least 99% at or below it.
        let p99 = ((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1;
        cell.release_ms_p99 = Some(round1(ms[p99]));
        cell.release_ms_max = ms.last().copied().map(round1);
        cell.release_ms = ms;
        for state in trials.iter().filter(|t| t.server_leftover) {
            if let Some(state) = state.server_state {
                *cell.leftover_states.entry(state.to_string()).or_default() += 1;
            }
        }
        for t in trials {
            *cell
                .paths
                .entry(t.outcome.ending.name().to_owned())
                .or_default() += 1;
        }
        cell
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::{lab_policy_on, slack, Duration, PathKind, PathSpec, Policy, Slow};

    #[test]
    fn a_deep_slow_queue_or_a_long_round_trip_lengthens_the_stall_timeout() {
        assert_eq!(slack(&PathSpec::Loopback), Duration::ZERO);
        // 32 frames at 4 Mbit/s: 97 ms of queue, 388 ms of slack.
        let slow = slack(&PathKind::Slow.into());
        assert!(slow > Duration::from_millis(380) && slow < Duration::from_millis(400));
        // 20 ms each way: 160 ms.
        assert_eq!(slack(&PathKind::Wan.into()), Duration::from_millis(160));
        let crawl = PathSpec::Slow(Slow {
            rate: 1000,
            queue: 100,
        });
        assert_eq!(slack(&crawl), Duration::from_secs(5));
        let grace = Duration::from_millis(300);
        match lab_policy_on("peer-first", grace, &PathKind::Wan.into()).unwrap() {
            Policy::PeerFirst(p) => assert_eq!(p.stall_timeout, Duration::from_millis(760)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lab_deadlines_are_derived_from_the_grace_for_every_policy() {
        let g = Duration::from_millis(300);
        let ms = Duration::from_millis;
        let expected = [
            ("plain", None, Some(ms(600)), Some(ms(8000))),
            ("lingering", None, Some(ms(600)), Some(ms(1500))),
            ("lingering-reset", None, Some(ms(600)), Some(ms(1500))),
            ("fin-then-reset", None, Some(ms(600)), Some(ms(8000))),
            ("abort", None, None, None),
            ("silent", None, None, None),
            ("peer-first", Some(g), Some(ms(600)), Some(ms(8000))),
        ];
        assert_eq!(expected.len(), Policy::NAMES.len());
        for (name, grace, stall, cap) in expected {
            let p = super::lab_policy(name, g).unwrap();
            assert_eq!(p.name(), name);
            assert_eq!(
                (p.grace(), p.stall_timeout(), p.delivery_timeout()),
                (grace, stall, cap),
                "{name}"
            );
            // On a path, only the stall timeout grows.
            let on = lab_policy_on(name, g, &PathKind::Wan.into()).unwrap();
            assert_eq!(on.stall_timeout(), stall.map(|s| s + ms(160)), "{name}");
            assert_eq!((on.grace(), on.delivery_timeout()), (grace, cap), "{name}");
        }
    }
}
