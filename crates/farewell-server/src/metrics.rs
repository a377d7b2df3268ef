//! The supervisor's metrics, through the `metrics` facade, with the
//! `metrics` feature: the application installs a recorder (e.g.
//! `metrics-exporter-prometheus`); without one they cost nothing. Without the
//! feature the names below are still defined and nothing is recorded.

#[cfg(feature = "metrics")]
pub(crate) use recording::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use silent::*;

/// Connections accepted (shed ones included).
pub const ACCEPTED: &str = "farewell_connections_accepted_total";
/// Failed `accept()` calls, by `kind` (`fd-exhaustion`, `other`).
pub const ACCEPT_ERRORS: &str = "farewell_accept_errors_total";
/// Goodbyes, by `reason`.
pub const GOODBYES: &str = "farewell_goodbyes_total";
/// Finished teardowns, by outcome `ending` and who keeps TIME-WAIT (`time_wait`).
pub const TEARDOWNS: &str = "farewell_teardowns_total";
/// Teardown duration in seconds, by `ending`.
pub const TEARDOWN_SECONDS: &str = "farewell_teardown_seconds";
/// Connections being served (not yet said goodbye to).
pub const OPEN: &str = "farewell_connections_open";
/// Connections in teardown.
pub const CLOSING: &str = "farewell_connections_closing";

/// The recording versions (feature `metrics`).
#[cfg(feature = "metrics")]
mod recording {
    use metrics::{
        counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
    };

    use farewell::outcome::Outcome;

    use super::*;
    use crate::Reason;

    pub(crate) fn describe() {
        describe_counter!(ACCEPTED, "Connections accepted, shed ones included.");
        describe_counter!(ACCEPT_ERRORS, "Failed accept() calls, by kind.");
        describe_counter!(GOODBYES, "Goodbyes sent, by reason.");
        describe_counter!(
            TEARDOWNS,
            "Finished teardowns, by outcome ending and who keeps TIME-WAIT."
        );
        describe_histogram!(
            TEARDOWN_SECONDS,
            Unit::Seconds,
            "From goodbye to closed descriptor."
        );
        describe_gauge!(OPEN, "Connections being served.");
        describe_gauge!(CLOSING, "Connections in teardown.");
    }

    pub(crate) fn accepted() {
        counter!(ACCEPTED).increment(1);
        gauge!(OPEN).increment(1.0);
    }

    pub(crate) fn accept_error(fd_exhaustion: bool) {
        let kind = if fd_exhaustion {
            "fd-exhaustion"
        } else {
            "other"
        };
        counter!(ACCEPT_ERRORS, "kind" => kind).increment(1);
    }

    /// A connection said goodbye and went to the closer.
    pub(crate) fn goodbye(reason: Reason) {
        counter!(GOODBYES, "reason" => reason.name()).increment(1);
        gauge!(OPEN).decrement(1.0);
        gauge!(CLOSING).increment(1.0);
    }

    pub(crate) fn teardown(outcome: &Outcome) {
        let ending = outcome.ending.name();
        counter!(TEARDOWNS, "ending" => ending, "time_wait" => outcome.time_wait.name())
            .increment(1);
        histogram!(TEARDOWN_SECONDS, "ending" => ending).record(outcome.elapsed.as_secs_f64());
        gauge!(CLOSING).decrement(1.0);
    }
}

/// The no-op versions (no `metrics` feature).
#[cfg(not(feature = "metrics"))]
mod silent {
    use farewell::outcome::Outcome;

    use crate::Reason;

    pub(crate) fn describe() {}
    pub(crate) fn accepted() {}
    pub(crate) fn accept_error(_fd_exhaustion: bool) {}
    pub(crate) fn goodbye(_reason: Reason) {}
    pub(crate) fn teardown(_outcome: &Outcome) {}
}
