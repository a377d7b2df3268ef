//! Live metrics through the [`metrics`](https://docs.rs/metrics) facade, with
//! the `metrics` feature: install a recorder (e.g.
//! `metrics-exporter-prometheus`) and every [`Server`](crate::Server) records
//! these; without a recorder they cost next to nothing. Without the feature
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
/// Counter: requests handed to the service.
pub const REQUESTS: &str = "farewell_http_requests_total";
/// Counter: finished teardowns, by `ending` ([`farewell::Ending::name`], e.g.
/// `peer-closed`, `reset-after-grace`) and by who keeps TIME-WAIT
/// (`time_wait`: `peer`, `nobody`, `us`, `us-if-peer-closes`).
pub const TEARDOWNS: &str = "farewell_http_teardowns_total";
/// Counter: HTTP connections ended, by `cause` ([`Cause::name`](crate::Cause::name):
/// `client-asked`, `request-limit`, `idle`, `shutdown`, `upgrade`, `error`, ...).
pub const CONNECTIONS_ENDED: &str = "farewell_http_connections_ended_total";
/// Counter: connections whose last response was close-delimited (HTTP/1.0,
/// length unknown), by `end`: `delivered` (every byte ACKed, then FIN reset on
/// its ACK) or `reset-undelivered` (delivery stalled: reset).
pub const CLOSE_DELIMITED: &str = "farewell_http_close_delimited_total";
/// Counter: TLS handshakes that failed or timed out.
pub const TLS_HANDSHAKES_FAILED: &str = "farewell_http_tls_handshakes_failed_total";

/// The recording versions (feature `metrics`).
#[cfg(feature = "metrics")]
mod recording {
    use metrics::{counter, describe_counter, describe_gauge, gauge};

    use farewell::Outcome;

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

    pub(crate) fn accepted() {
        counter!(CONNECTIONS_ACCEPTED).increment(1);
    }

    /// Counts a connection open while it lives (its task, until the socket
    /// goes to the teardown).
    pub(crate) struct Open(());

    impl Open {
        pub(crate) fn new() -> Open {
            gauge!(CONNECTIONS_OPEN).increment(1.0);
            Open(())
        }
    }

    impl Drop for Open {
        fn drop(&mut self) {
            gauge!(CONNECTIONS_OPEN).decrement(1.0);
        }
    }

    pub(crate) fn request() {
        counter!(REQUESTS).increment(1);
    }

    pub(crate) fn teardown(outcome: &Outcome) {
        counter!(
            TEARDOWNS,
            "ending" => outcome.ending.name(),
            "time_wait" => outcome.time_wait.name()
        )
        .increment(1);
    }

    pub(crate) fn ended(cause: Cause) {
        counter!(CONNECTIONS_ENDED, "cause" => cause.name()).increment(1);
    }

    pub(crate) fn close_delimited(end: End) {
        let end = match end {
            End::Delivered => "delivered",
            End::ResetUndelivered => "reset-undelivered",
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
    pub(crate) fn accepted() {}
    pub(crate) struct Open(());
    impl Open {
        pub(crate) fn new() -> Open {
            Open(())
        }
    }
    pub(crate) fn request() {}
    pub(crate) fn teardown(_: &Outcome) {}
    pub(crate) fn ended(_: Cause) {}
    pub(crate) fn close_delimited(_: End) {}
    #[cfg_attr(not(feature = "rustls"), allow(dead_code))]
    pub(crate) fn tls_handshake_failed() {}
}
