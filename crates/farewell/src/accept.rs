//! What an accept loop needs to survive abuse: a connection limit that fits
//! the descriptor limit, a shed that costs nothing, and a backoff for accept
//! errors that logs once per burst.
//!
//! farewell-server and farewell-http both build their accept loops from these:
//!
//! * [`default_max_connections`] — a connection limit below `RLIMIT_NOFILE`,
//!   so the server sheds the surplus itself (a fast answer) instead of
//!   running out of descriptors (the surplus then sits in the listen backlog
//!   until its client gives up);
//! * [`shed`] — ends a connection accepted over the limit with one RST: no
//!   task, no timer, no TIME-WAIT on either side;
//! * [`is_per_connection`] — the accept errors that concern one connection
//!   only (accept again at once);
//! * [`AcceptBackoff`] — for the others (`EMFILE`, `ENFILE`, `ENOBUFS`,
//!   `ENOMEM`): a growing pause (5 ms, doubling, capped) while the connections
//!   already open are served, one `WARN` when a burst starts, at most one
//!   more every [`AcceptBackoff::REMIND_EVERY`] while it lasts, and one with
//!   the count when it ends.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use farewell::accept::{self, AcceptBackoff};
//!
//! # #[allow(dead_code)]
//! # async fn demo(listener: tokio::net::TcpListener) {
//! let max = accept::default_max_connections();
//! let mut open = 0usize; // a real server counts its connection tasks
//! let mut backoff = AcceptBackoff::new(Duration::from_secs(1));
//! loop {
//!     tokio::select! {
//!         () = backoff.wait() => {}
//!         accepted = listener.accept(), if !backoff.pausing() => match accepted {
//!             Ok((stream, _)) => {
//!                 backoff.recovered();
//!                 if open >= max {
//!                     accept::shed(stream);
//!                     continue;
//!                 }
//!                 open += 1; // ... spawn the connection's task
//!             }
//!             Err(e) if accept::is_per_connection(&e) => {}
//!             Err(e) => backoff.failed(&e),
//!         },
//!     }
//! }
//! # }
//! ```

use std::io;
use std::time::{Duration, Instant};

/// The descriptors [`default_max_connections`] keeps back for the listener,
/// logs, the runtime and a metrics endpoint.
const RESERVED_FDS: u64 = 64;

/// The largest limit [`default_max_connections`] gives.
const MAX_DEFAULT: u64 = 10_000;

/// A connection limit that fits the process's descriptor limit: 10,000, or
/// half of what the soft `RLIMIT_NOFILE` leaves after a reserve, whichever is
/// less (at least 1).
///
/// The reserve is 64 descriptors: the listener, logs, the runtime, a metrics
/// endpoint. Every served
/// connection holds one descriptor, and so does every teardown in flight (a
/// peer-first grace lasts seconds after the connection stopped counting as
/// served); the other half is theirs. So the server reaches this limit, and
/// sheds, before `accept()` fails with `EMFILE` and the surplus waits in the
/// backlog.
///
/// With `ulimit -n 1024`: 480. With 65,536: 10,000. With 128: 32.
///
/// When the limit cannot be read, 1024 is assumed.
pub fn default_max_connections() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    fit_descriptors(soft)
}

/// [`default_max_connections`] for a soft descriptor limit of `soft`.
fn fit_descriptors(soft: u64) -> usize {
    let fit = soft.saturating_sub(RESERVED_FDS) / 2;
    // At most MAX_DEFAULT, so the conversion cannot truncate.
    fit.clamp(1, MAX_DEFAULT) as usize
}

/// Ends a connection accepted over the limit at once: `SO_LINGER {on, 0}` and
/// `close()`, so one RST goes out ([`crate::sys::abort`]).
///
/// No task, no timer, no write: the shed costs two system calls (three with
/// the reactor's deregistration), and nobody keeps TIME-WAIT. The client
/// reads a reset (`ECONNRESET`; curl: `Recv failure: Connection reset by
/// peer`) at once instead of waiting in the listen backlog.
///
/// Why not an HTTP `503` or a protocol goodbye: to be read it must be
/// delivered before the reset (the client's kernel drops what its
/// application has not read when the RST arrives), which takes a task and a
/// teardown in flight per shed connection: exactly what an overloaded server
/// cannot afford. A plain `close()` after it would keep TIME-WAIT here.
pub fn shed(stream: tokio::net::TcpStream) {
    let result = stream.into_std().and_then(crate::sys::abort);
    if let Err(e) = result {
        tracing::debug!(error = %e, "shedding a connection: no RST, closed plainly");
    }
}

/// Whether an accept error concerns one connection only (it was reset or
/// aborted before we took it, or the call was interrupted): accept again at
/// once, no pause, no warning.
pub fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The pause of an accept loop after accept errors that concern the process,
/// not one connection (out of descriptors, `EMFILE`/`ENFILE`; out of memory,
/// `ENOBUFS`/`ENOMEM`): retrying at once would spin.
///
/// The first failure pauses 5 ms; every further failure in the same burst
/// doubles the pause, up to the maximum. The loop keeps serving its open
/// connections while it pauses; when one ends, its descriptor frees up and
/// the next accept after the pause succeeds.
///
/// Logging is one line per burst, not one per failure: a `WARN` when the
/// burst starts (the error and what the loop does), a reminder with the
/// count so far at most every [`AcceptBackoff::REMIND_EVERY`] while it lasts,
/// and a `WARN` with the count and the duration when an accept succeeds
/// again.
///
/// See the [module docs](self) for a loop that uses it.
#[derive(Debug)]
pub struct AcceptBackoff {
    max: Duration,
    next: Duration,
    until: Option<Instant>,
    burst: Option<Burst>,
}

/// A run of failed accepts, from the first to the next success.
#[derive(Debug)]
struct Burst {
    since: Instant,
    failures: u64,
    logged: Instant,
}

impl AcceptBackoff {
    /// The first pause.
    pub const FIRST: Duration = Duration::from_millis(5);

    /// While a burst lasts, how often a reminder is logged (at most).
    pub const REMIND_EVERY: Duration = Duration::from_secs(10);

    /// A backoff whose pause grows to at most `max` (at least
    /// [`AcceptBackoff::FIRST`]).
    pub fn new(max: Duration) -> AcceptBackoff {
        AcceptBackoff {
            max: max.max(Self::FIRST),
            next: Self::FIRST,
            until: None,
            burst: None,
        }
    }

    /// Whether the loop is pausing: do not call `accept()` until
    /// [`AcceptBackoff::wait`] completes.
    pub fn pausing(&self) -> bool {
        self.until.is_some()
    }

    /// Completes when the current pause ends; never completes when there is
    /// none (so it can sit in a `select!` next to `accept()`).
    ///
    /// Cancel-safe: a pause interrupted by another branch is resumed by the
    /// next call.
    pub async fn wait(&mut self) {
        match self.until {
            Some(until) => {
                tokio::time::sleep_until(until.into()).await;
                self.until = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Records a failed accept (not a [per-connection](is_per_connection)
    /// one) and starts the next pause.
    pub fn failed(&mut self, error: &io::Error) {
        let now = Instant::now();
        match &mut self.burst {
            Some(burst) => {
                burst.failures += 1;
                if now.duration_since(burst.logged) >= Self::REMIND_EVERY {
                    burst.logged = now;
                    tracing::warn!(
                        %error,
                        failures = burst.failures,
                        "accept still failing: {} failed accepts over {:.1?}; serving the open connections",
                        burst.failures,
                        now.duration_since(burst.since)
                    );
                }
            }
            None => {
                tracing::warn!(
                    %error,
                    "accept failed; pausing new connections (up to {:?} at a time) while serving the others",
                    self.max
                );
                self.burst = Some(Burst {
                    since: now,
                    failures: 1,
                    logged: now,
                });
            }
        }
        self.until = Some(now + self.next);
        self.next = (self.next * 2).min(self.max);
    }

    /// Records a successful accept: ends the burst (logging its count) and
    /// resets the pause to [`AcceptBackoff::FIRST`].
    pub fn recovered(&mut self) {
        if let Some(burst) = self.burst.take() {
            tracing::warn!(
                failures = burst.failures,
                "accepting again after {} failed accepts over {:.1?}",
                burst.failures,
                burst.since.elapsed()
            );
            self.next = Self::FIRST;
        }
    }

    /// Failed accepts in the current burst (0 when there is none).
    pub fn failures(&self) -> u64 {
        self.burst.as_ref().map_or(0, |b| b.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_leaves_half_of_the_descriptors_after_the_reserve() {
        assert_eq!(fit_descriptors(1024), 480);
        assert_eq!(fit_descriptors(65_536), 10_000);
        assert_eq!(fit_descriptors(128), 32);
        assert_eq!(fit_descriptors(16), 1);
        assert_eq!(fit_descriptors(0), 1);
    }

    #[test]
    fn default_limit_is_below_the_descriptor_limit() {
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert!((default_max_connections() as u64) < soft.max(2));
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_on_success() {
        let mut backoff = AcceptBackoff::new(Duration::from_millis(30));
        let error = io::Error::from_raw_os_error(24);
        let mut pauses = Vec::new();
        for _ in 0..5 {
            pauses.push(backoff.next.as_millis());
            backoff.failed(&error);
            assert!(backoff.pausing());
        }
        assert_eq!(pauses, [5, 10, 20, 30, 30]);
        assert_eq!(backoff.failures(), 5);
        backoff.recovered();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.next, AcceptBackoff::FIRST);
    }

    #[test]
    fn per_connection_errors_do_not_pause() {
        assert!(is_per_connection(&io::ErrorKind::ConnectionAborted.into()));
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24)));
    }
}
