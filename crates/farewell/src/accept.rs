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
//! * [`shed`] and [`shed_with`] — end a connection accepted over the limit
//!   with one RST (after one non-blocking write of a goodbye, a `503`): no
//!   task, no timer, no TIME-WAIT on either side;
//! * [`is_per_connection`] — the accept errors that concern one connection
//!   only (accept again at once);
//! * [`AcceptBackoff`] — for the others (`EMFILE`, `ENFILE`, `ENOBUFS`,
//!   `ENOMEM`): a growing pause (5 ms, doubling, capped) while the connections
//!   already open are served, one `WARN` when a burst starts, at most one
//!   more every [`AcceptBackoff::REMIND_EVERY`] while it lasts, and one with
//!   the count when it ends; and, when descriptors ran out all the same,
//!   [`AcceptBackoff::shed_pending`] resets the clients waiting in the
//!   backlog through a spare descriptor, so they get an answer too.
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
//!             Err(e) => {
//!                 backoff.failed(&e);
//!                 backoff.shed_pending(&listener, b"");
//!             }
//!         },
//!     }
//! }
//! # }
//! ```

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

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
/// endpoint. Every served connection holds one descriptor, and so does every
/// teardown in flight (a peer-first grace lasts seconds after the connection
/// stopped counting as served); the other half is theirs. So the server reaches this limit, and
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
/// peer`) at once instead of waiting in the listen backlog. To say why first,
/// see [`shed_with`].
pub fn shed(stream: tokio::net::TcpStream) {
    shed_with(stream, &[]);
}

/// As [`shed`], after one non-blocking attempt to write `goodbye` (an HTTP
/// `503`, a protocol's `busy` line).
///
/// The write lands in an empty send buffer, so a short goodbye always fits;
/// it is one more system call, and still no task and no TIME-WAIT: the RST
/// follows at once. Linux lets the client read the bytes that came before
/// the RST ([F6](crate::facts#f6)), so a client that is still connected reads
/// the goodbye, then the reset (curl shows the `503`). A client whose
/// `connect()` had not returned yet when the RST came sees only the reset;
/// other systems may drop the goodbye too. Do not use it under TLS: the
/// goodbye would be plaintext.
pub fn shed_with(stream: tokio::net::TcpStream, goodbye: &[u8]) {
    let result = stream.into_std().and_then(|mut stream| {
        if !goodbye.is_empty() {
            // A fresh tokio stream knows no write readiness yet, so its
            // `try_write` would not even try: write on the std stream (non-blocking).
            let _ = std::io::Write::write(&mut stream, goodbye);
        }
        crate::sys::abort(stream)
    });
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
/// again. A burst that starts less than [`AcceptBackoff::REMIND_EVERY`]
/// after the last logged start (descriptors free up one at a time and are
/// taken again at once) is not logged on its own: its counts go into the
/// next warning.
///
/// See the [module docs](self) for a loop that uses it.
#[derive(Debug)]
pub struct AcceptBackoff {
    max: Duration,
    next: Duration,
    until: Option<Instant>,
    burst: Option<Burst>,
    /// A descriptor held back for [`AcceptBackoff::shed_pending`].
    spare: Option<File>,
    /// When the last burst's start was logged.
    last_warned: Option<Instant>,
    /// Bursts that started too soon after a logged one to be logged themselves.
    quiet: Quiet,
}

/// Bursts not logged on their own, told in the next warning.
#[derive(Debug, Default)]
struct Quiet {
    bursts: u64,
    failures: u64,
    shed: u64,
}

impl Quiet {
    fn since_last_warning(&self) -> String {
        if self.bursts == 0 {
            return String::new();
        }
        format!(
            " (since the last warning: {} more short bursts, {} failed accepts, {} waiting clients reset)",
            self.bursts, self.failures, self.shed
        )
    }
}

/// A run of failed accepts, from the first to the next success.
#[derive(Debug)]
struct Burst {
    since: Instant,
    failures: u64,
    logged: Instant,
    shed: u64,
    /// Whether its start was logged (then its end is too).
    warned: bool,
}

impl AcceptBackoff {
    /// The first pause.
    pub const FIRST: Duration = Duration::from_millis(5);

    /// While a burst lasts, how often a reminder is logged (at most).
    pub const REMIND_EVERY: Duration = Duration::from_secs(10);

    /// A backoff whose pause grows to at most `max` (at least
    /// [`AcceptBackoff::FIRST`]).
    ///
    /// It holds one descriptor (`/dev/null`, opened read-only) for
    /// [`AcceptBackoff::shed_pending`].
    pub fn new(max: Duration) -> AcceptBackoff {
        AcceptBackoff {
            max: max.max(Self::FIRST),
            next: Self::FIRST,
            until: None,
            burst: None,
            spare: open_spare(),
            last_warned: None,
            quiet: Quiet::default(),
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
                    burst.warned = true;
                    tracing::warn!(
                        %error,
                        failures = burst.failures,
                        "accept still failing: {} failed accepts over {:.1?}, {} waiting clients reset; serving the open connections",
                        burst.failures,
                        now.duration_since(burst.since),
                        burst.shed
                    );
                }
            }
            None => {
                // Bursts that follow each other closely (a descriptor frees
                // up, is taken, accept fails again) share one warning.
                let warned = match self.last_warned {
                    Some(at) => now.duration_since(at) >= Self::REMIND_EVERY,
                    None => true,
                };
                if warned {
                    self.last_warned = Some(now);
                    let quiet = std::mem::take(&mut self.quiet);
                    tracing::warn!(
                        %error,
                        "accept failed; pausing new connections (up to {:?} at a time) while serving the others{}",
                        self.max,
                        quiet.since_last_warning()
                    );
                } else {
                    tracing::debug!(%error, "accept failed again; pausing new connections");
                }
                self.burst = Some(Burst {
                    since: now,
                    failures: 1,
                    logged: now,
                    shed: 0,
                    warned,
                });
            }
        }
        self.until = Some(now + self.next);
        self.next = (self.next * 2).min(self.max);
    }

    /// Records a successful accept: ends the burst (logging its count if its
    /// start was logged) and resets the pause to [`AcceptBackoff::FIRST`].
    pub fn recovered(&mut self) {
        if let Some(burst) = self.burst.take() {
            if burst.warned {
                tracing::warn!(
                    failures = burst.failures,
                    shed = burst.shed,
                    "accepting again after {} failed accepts over {:.1?}; {} waiting clients were reset meanwhile",
                    burst.failures,
                    burst.since.elapsed(),
                    burst.shed
                );
            } else {
                tracing::debug!(failures = burst.failures, "accepting again");
                self.quiet.bursts += 1;
                self.quiet.failures += burst.failures;
                self.quiet.shed += burst.shed;
            }
            self.next = Self::FIRST;
        }
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }

    /// Out of descriptors all the same (`EMFILE`): resets the clients
    /// waiting in `listener`'s backlog, through the spare descriptor, and
    /// returns how many.
    ///
    /// For each: close the spare, accept (one poll: it never waits), shed the
    /// connection ([`shed_with`] `goodbye`, which may be empty: one RST, no
    /// TIME-WAIT), open the spare again. Without
    /// it, clients that arrive while the process is out of descriptors wait
    /// unanswered in the backlog until one frees up or they give up; with
    /// it, they read a reset as soon as the accept loop tries again (within
    /// the current pause). The trick is libuv's (`uv__emfile_trick`) and
    /// Marc Lehmann's libev documentation's.
    ///
    /// Returns 0 when there is no spare (it could not be opened or
    /// re-opened: another thread took the descriptor first).
    pub fn shed_pending(&mut self, listener: &TcpListener, goodbye: &[u8]) -> u64 {
        let mut shed_now = 0;
        while let Some(spare) = self.spare.take() {
            drop(spare);
            let accepted = poll_once(listener);
            let go_on = match accepted {
                Some(Ok((stream, _))) => {
                    // Closed before the spare is opened again: that takes its descriptor.
                    shed_with(stream, goodbye);
                    shed_now += 1;
                    true
                }
                Some(Err(e)) => is_per_connection(&e),
                // Nothing waiting.
                None => false,
            };
            self.spare = open_spare();
            if !go_on {
                break;
            }
        }
        if let Some(burst) = &mut self.burst {
            burst.shed += shed_now;
        }
        shed_now
    }

    /// Failed accepts in the current burst (0 when there is none).
    pub fn failures(&self) -> u64 {
        self.burst.as_ref().map_or(0, |b| b.failures)
    }
}

/// The spare descriptor of [`AcceptBackoff::shed_pending`].
fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// One `accept()` on `listener` that never waits: `None` when no connection
/// is pending (the listener's readiness is re-armed as usual).
fn poll_once(
    listener: &TcpListener,
) -> Option<io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>> {
    // No task waits on this poll: the accept loop's own `accept()` future
    // keeps its separate registration with the reactor.
    struct Nobody;
    impl Wake for Nobody {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Nobody));
    let mut cx = Context::from_waker(&waker);
    let accept = pin!(std::future::poll_fn(|cx| listener.poll_accept(cx)));
    match accept.poll(&mut cx) {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
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
    fn a_burst_soon_after_a_logged_one_is_told_in_the_next_warning() {
        let mut backoff = AcceptBackoff::new(Duration::from_secs(1));
        let error = io::Error::from_raw_os_error(24);
        backoff.failed(&error);
        assert!(backoff.burst.as_ref().unwrap().warned);
        backoff.recovered();
        backoff.failed(&error);
        backoff.failed(&error);
        assert!(!backoff.burst.as_ref().unwrap().warned);
        backoff.recovered();
        assert_eq!((backoff.quiet.bursts, backoff.quiet.failures), (1, 2));
        assert!(backoff
            .quiet
            .since_last_warning()
            .contains("1 more short bursts, 2 failed accepts"));
    }

    #[tokio::test]
    async fn shed_pending_resets_every_waiting_client_and_never_waits() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut backoff = AcceptBackoff::new(Duration::from_secs(1));
        let mut shed = 0;
        // The listener's readiness may lag the connects by a reactor turn.
        for _ in 0..100 {
            shed += backoff.shed_pending(&listener, b"BUSY\n");
            if shed == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(shed, 3);
        assert_eq!(
            backoff.shed_pending(&listener, b""),
            0,
            "nothing waits any more"
        );
        assert!(backoff.spare.is_some(), "the spare is back");
        // Each reads the goodbye, then the reset (Linux keeps what came before the RST readable).
        for mut client in clients {
            let mut got = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got))
                .await
                .expect("the shed client is answered");
            assert!(
                matches!(&read, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
                "{read:?}"
            );
            assert_eq!(got, b"BUSY\n");
        }
    }

    #[test]
    fn per_connection_errors_do_not_pause() {
        assert!(is_per_connection(&io::ErrorKind::ConnectionAborted.into()));
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24)));
    }
}
