//! Live metrics through the [`metrics`](https://docs.rs/metrics) facade, with
//! the `metrics` feature: install a recorder (e.g.
//! `metrics-exporter-prometheus`) and every [`Server`](crate::Server) records
//! these; without a recorder they cost next to nothing. Install the recorder
//! before the server starts: the per-request counter is registered once, then. Without the feature
//! the names are still defined and nothing is recorded.
//!
//! The same counts, at the end, are in [`ServeReport`](crate::ServeReport).

#[cfg(feature = "metrics")]
pub(crate) use recording::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use silent::*;

/// Counter: connections accepted.
pub const CONNECTIONS_ACCEPTED: &str = "farewell_http_connections_accepted_total";
/// Gauge: connections being served (accepted, not yet handed to the teardown).
pub const CONNECTIONS_OPEN: &str = "farewell_http_connections_open";
/// Counter: requests handed to the service. Each connection adds its
/// requests every 64 and when it ends (a shared counter per request costs
/// every worker thread a contended cache line), so a long keep-alive
/// connection's last few requests show once it ends or reaches the next 64.
pub const REQUESTS: &str = "farewell_http_requests_total";
/// Counter: finished teardowns, by `ending` ([`farewell::Ending::name`], e.g.
/// `peer-closed`, `reset-after-grace`) and by who keeps TIME-WAIT
/// (`time_wait`: `peer`, `nobody`, `us`, `us-if-peer-closes`).
pub const TEARDOWNS: &str = "farewell_http_teardowns_total";
/// Counter: HTTP connections ended, by `cause` ([`Cause::name`](crate::Cause::name):
/// `client-asked`, `request-limit`, `idle`, `shutdown`, `upgrade`, `error`, ...).
pub const CONNECTIONS_ENDED: &str = "farewell_http_connections_ended_total";
/// Counter: connections whose client read the last response until the
/// server closed (HTTP/1.0 without keep-alive, or a close-delimited body),
/// ended by the server's FIN, by `end`: `delivered` (every byte ACKed, then FIN reset on
/// its ACK), `reset-undelivered` (delivery stalled: reset) or `client-closed` (a
/// framed response whose client closed first, within two round-trip times of
/// the last ACK: ended by the policy instead, and counted in the teardowns).
pub const CLOSE_DELIMITED: &str = "farewell_http_close_delimited_total";
/// Counter: TLS handshakes that failed or timed out.
pub const TLS_HANDSHAKES_FAILED: &str = "farewell_http_tls_handshakes_failed_total";

/// The recording versions (feature `metrics`).
#[cfg(feature = "metrics")]
mod recording {
    use std::sync::OnceLock;

    use metrics::{counter, describe_counter, describe_gauge, gauge};

    use farewell::{Ending, Outcome, TimeWait};

    use super::*;
    use crate::delimited::End;
    use crate::record::Cause;

    /// Whether anything is recorded (the closer's outcome hook is needed).
    pub(crate) const ON: bool = true;

    pub(crate) fn describe() {
        describe_counter!(CONNECTIONS_ACCEPTED, "Connections accepted.");
        describe_gauge!(CONNECTIONS_OPEN, "Connections being served.");
        describe_counter!(REQUESTS, "Requests handed to the service.");
        describe_counter!(
            TEARDOWNS,
            "Finished teardowns, by ending and who keeps TIME-WAIT."
        );
        describe_counter!(CONNECTIONS_ENDED, "HTTP connections ended, by cause.");
        describe_counter!(
            CLOSE_DELIMITED,
            "Close-delimited last responses, by end (delivered, reset-undelivered)."
        );
        describe_counter!(
            TLS_HANDSHAKES_FAILED,
            "TLS handshakes that failed or timed out."
        );
    }

    /// One server's handles, registered once (when the server starts, with
    /// the recorder installed then) or at their first use (the labelled
    /// ones): counting is then one call, not a registration that builds and
    /// hashes a key each time.
    pub(crate) struct Handles {
        requests: metrics::Counter,
        accepted: metrics::Counter,
        open: metrics::Gauge,
        /// By [`Cause::ALL`] index.
        ended: [OnceLock<metrics::Counter>; Cause::ALL.len()],
        /// By [`Ending::ALL`] index, then [`TIME_WAITS`] index.
        teardowns: [[OnceLock<metrics::Counter>; TIME_WAITS.len()]; Ending::ALL.len()],
    }

    /// The [`TimeWait`]s, for [`Handles::teardown`]'s table.
    const TIME_WAITS: [TimeWait; 4] = [
        TimeWait::Peer,
        TimeWait::Us,
        TimeWait::UsIfPeerCloses,
        TimeWait::Nobody,
    ];

    impl Handles {
        pub(crate) fn new() -> Handles {
            Handles {
                requests: counter!(REQUESTS),
                accepted: counter!(CONNECTIONS_ACCEPTED),
                open: gauge!(CONNECTIONS_OPEN),
                ended: std::array::from_fn(|_| OnceLock::new()),
                teardowns: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            }
        }

        pub(crate) fn requests(&self, n: u64) {
            self.requests.increment(n);
        }

        pub(crate) fn accepted(&self) {
            self.accepted.increment(1);
        }

        /// Counts a connection open while the value lives.
        pub(crate) fn open(&self) -> Open {
            self.open.increment(1.0);
            Open(self.open.clone())
        }

        pub(crate) fn ended(&self, cause: Cause) {
            match Cause::ALL.iter().position(|&c| c == cause) {
                Some(i) => self.ended[i]
                    .get_or_init(|| counter!(CONNECTIONS_ENDED, "cause" => cause.name()))
                    .increment(1),
                None => counter!(CONNECTIONS_ENDED, "cause" => cause.name()).increment(1),
            }
        }

        pub(crate) fn teardown(&self, outcome: &Outcome) {
            let register = || {
                counter!(
                    TEARDOWNS,
                    "ending" => outcome.ending.name(),
                    "time_wait" => outcome.time_wait.name()
                )
            };
            let ending = Ending::ALL.iter().position(|&e| e == outcome.ending);
            let time_wait = TIME_WAITS.iter().position(|&t| t == outcome.time_wait);
            match (ending, time_wait) {
                (Some(e), Some(t)) => self.teardowns[e][t].get_or_init(register).increment(1),
                _ => register().increment(1),
            }
        }
    }

    /// Counts a connection open while it lives (its task, until the socket
    /// goes to the teardown).
    pub(crate) struct Open(metrics::Gauge);

    impl Drop for Open {
        fn drop(&mut self) {
            self.0.decrement(1.0);
        }
    }

    pub(crate) fn close_delimited(end: End) {
        let end = match end {
            End::Delivered => "delivered",
            End::ResetUndelivered => "reset-undelivered",
            End::ClientClosed => "client-closed",
        };
        counter!(CLOSE_DELIMITED, "end" => end).increment(1);
    }

    #[cfg_attr(not(feature = "rustls"), allow(dead_code))]
    pub(crate) fn tls_handshake_failed() {
        counter!(TLS_HANDSHAKES_FAILED).increment(1);
    }
}

/// The no-op versions (no `metrics` feature).
#[cfg(not(feature = "metrics"))]
mod silent {
    use farewell::Outcome;

    use crate::delimited::End;
    use crate::record::Cause;

    pub(crate) const ON: bool = false;

    pub(crate) fn describe() {}
    pub(crate) struct Handles(());
    impl Handles {
        pub(crate) fn new() -> Handles {
            Handles(())
        }
        pub(crate) fn requests(&self, _: u64) {}
        pub(crate) fn accepted(&self) {}
        pub(crate) fn open(&self) -> Open {
            Open(())
        }
        pub(crate) fn ended(&self, _: Cause) {}
        pub(crate) fn teardown(&self, _: &Outcome) {}
    }
    pub(crate) struct Open(());
    pub(crate) fn close_delimited(_: End) {}
    #[cfg_attr(not(feature = "rustls"), allow(dead_code))]
    pub(crate) fn tls_handshake_failed() {}
}
