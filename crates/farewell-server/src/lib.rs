//! The server supervisor: serve any line protocol, and end every connection
//! the right way.
//!
//! A user writes only the [`Protocol`] (handshake, answer a line, the goodbye
//! for a reason); [`serve`] does the rest on an already-bound listener:
//!
//! * **accept** — survives running out of file descriptors (`EMFILE`,
//!   `ENFILE`, `ENOBUFS`, `ENOMEM`): it pauses (5 ms, doubling up to
//!   [`ServerConfig::max_accept_backoff`]), logs once per burst
//!   ([`farewell::accept::AcceptBackoff`]), keeps serving the connections it
//!   has, answers the clients waiting in the listen backlog at once with the
//!   `busy` goodbye and a reset (a spare descriptor makes room for each
//!   accept), and resumes when descriptors free up;
//! * **limits** — beyond [`ServerConfig::max_connections`] a new connection is
//!   shed with the `busy` goodbye and a short grace, or reset at once
//!   ([`BusyMode`]); the server never keeps TIME-WAIT for it;
//! * **deadlines** — handshake, idle, optional maximum lifetime, maximum line
//!   length: each ends the connection with the protocol's goodbye, torn down
//!   with the configured [`Policy`] by a background
//!   [`Closer`];
//! * **writes never stall** — replies are written without blocking; what a
//!   peer does not take waits (and reading from that peer pauses) at most
//!   [`ServerConfig::send_timeout`], then the policy's own deadlines bound
//!   the teardown. Each connection is its own task, so one stuck peer holds
//!   up nobody else;
//! * **shutdown** — when the shutdown future completes: stop accepting, say
//!   `shutdown` to every connection, tear them down in parallel with
//!   deadlines that fit [`ServerConfig::drain_timeout`], and return a
//!   [`Summary`];
//! * **observability** — metrics through the `metrics` facade (names in
//!   [`metrics`]), one `debug` line per goodbye and per teardown, a periodic
//!   summary at `info`.
//!
//! # Memory
//!
//! A served connection holds its task, the unfinished part of a line, and
//! replies its peer has not taken yet. Reads go to a buffer shared by every
//! connection on the same runtime thread; buffers are freed as soon as they
//! are empty, so an idle connection holds none.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use farewell_server::flp::Flp;
//! use farewell_server::{self as server, Reason, ServerConfig};
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let config = ServerConfig { drain_timeout: Duration::from_secs(1), ..ServerConfig::default() };
//! let server = tokio::spawn(server::serve(listener, Flp, config, async { stopped.await.ok(); }));
//!
//! let mut client = BufReader::new(tokio::net::TcpStream::connect(addr).await?);
//! client.write_all(b"HELLO doc\nQUIT\n").await?;
//! let mut lines = String::new();
//! while !lines.ends_with("BYE quit\n") {
//!     client.read_line(&mut lines).await?;
//! }
//! assert_eq!(lines, "WELCOME doc\nBYE quit\n");
//! drop(client); // a cooperative client closes on BYE: it keeps the TIME-WAIT
//!
//! stop.send(()).unwrap();
//! let summary = server.await.unwrap();
//! assert_eq!(summary.goodbyes(Reason::Quit), 1);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod config;
mod connection;
mod conversation;
pub mod flp;
pub mod metrics;
mod protocol;
mod summary;

pub use config::{default_max_connections, BusyMode, ServerConfig, DEFAULT_MAX_LINE};
pub use conversation::Conversation;
pub use protocol::{Flow, Protocol, Reason};
pub use summary::Summary;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use farewell::accept::{self, AcceptBackoff};
use farewell::policy::Policy;
use farewell::Closer;
use summary::Counts;

/// How long [`serve`] waits for hurried teardowns after the drain deadline.
/// They do not wait for peers, so this is only a bound against a stuck runtime.
const HURRY_BOUND: Duration = Duration::from_secs(1);

/// What the accept loop and every connection task share.
pub(crate) struct Shared<P> {
    protocol: P,
    config: ServerConfig,
    /// The policy for shutdown goodbyes: the configured one, fitted into the drain deadline.
    shutdown_policy: Policy,
    closer: Closer,
    counts: Counts,
}

/// Serves `protocol` on `listener` until `shutdown` completes, then drains
/// and returns what happened.
///
/// `listener` is already bound (so a caller can bind port 0 and read the real
/// address first). Connections run as tasks on the current tokio runtime; a
/// multi-threaded runtime serves them in parallel. On shutdown the listener
/// is closed at once, every connection gets the `shutdown` goodbye, and the
/// function returns when every teardown finished, or soon after
/// [`ServerConfig::drain_timeout`] passed. At that deadline the teardowns
/// still running (a lingering close, a long peer-first grace) are hurried
/// ([`Closer::hurry`]): each closes passively if the peer's FIN is in, and
/// otherwise resets after one check of whether its goodbye was ACKed
/// ([`Ending::ResetAtDeadline`](farewell::Ending::ResetAtDeadline) in the summary),
/// so no socket is left to be closed plainly (our FIN first, TIME-WAIT here)
/// when the runtime is dropped. The wait for them is bounded (1 s); what
/// still did not end shows as unfinished in the [`Summary`] (0 normally).
///
/// # Panics
///
/// Outside a tokio runtime.
pub async fn serve<P: Protocol>(
    listener: TcpListener,
    protocol: P,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Summary {
    metrics::describe();
    let closer = Closer::builder(config.policy)
        .heavy_client_threshold(config.heavy_client_threshold)
        .on_outcome(|outcome| metrics::teardown(&outcome))
        .build();
    let shared = Arc::new(Shared {
        protocol,
        shutdown_policy: config::fit_policy(config.policy, config.drain_timeout),
        config,
        closer,
        counts: Counts::default(),
    });
    let (stop, stopped) = watch::channel(false);
    accept_loop(&listener, &shared, &stopped, shutdown).await;

    let drain_started = Instant::now();
    drop(listener);
    let open = shared.counts.open();
    tracing::info!(
        open,
        closing = shared.closer.in_flight(),
        "shutting down: goodbye to every connection"
    );
    let _ = stop.send(true);
    let deadline = drain_started + shared.config.drain_timeout;
    let drained = tokio::time::timeout_at(deadline.into(), async {
        shared.counts.none_open().await;
        shared.closer.idle().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = shared.counts.open(),
            closing = shared.closer.in_flight(),
            "drain deadline passed with connections still closing: resetting them"
        );
        shared.closer.hurry();
        let hurried = tokio::time::timeout(HURRY_BOUND, async {
            shared.counts.none_open().await;
            shared.closer.idle().await;
        })
        .await;
        if hurried.is_err() {
            tracing::warn!(
                open = shared.counts.open(),
                closing = shared.closer.in_flight(),
                "connections still closing {HURRY_BOUND:?} after the drain deadline"
            );
        }
    }
    let summary = shared.summary(drain_started.elapsed());
    // Debug, not info: `serve` returns the summary, and its caller prints it
    // (the CLI does, once); at info it showed twice.
    tracing::debug!(%summary, "stopped");
    summary
}

async fn accept_loop<P: Protocol>(
    listener: &TcpListener,
    shared: &Arc<Shared<P>>,
    stopped: &watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = AcceptBackoff::new(shared.config.max_accept_backoff);
    let period = shared.config.summary_interval.unwrap_or(Duration::MAX);
    let mut report = tokio::time::interval_at(
        (Instant::now() + period.min(farewell::policy::MAX_WAIT)).into(),
        period.min(farewell::policy::MAX_WAIT),
    );
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            () = backoff.wait() => {}
            _ = report.tick(), if shared.config.summary_interval.is_some() => {
                tracing::info!(
                    open = shared.counts.open(),
                    closing = shared.closer.in_flight(),
                    "serving: {}",
                    shared.summary(Duration::ZERO)
                );
            }
            accepted = listener.accept(), if !backoff.pausing() => match accepted {
                Ok((stream, peer)) => {
                    backoff.recovered();
                    shared.admit(stream, peer, stopped);
                }
                Err(e) if accept::is_per_connection(&e) => {
                    tracing::debug!(error = %e, "a connection failed before accept");
                }
                Err(e) => {
                    let fd_exhaustion = farewell::sys::is_fd_exhaustion(&e);
                    metrics::accept_error(fd_exhaustion);
                    shared.counts.accept_errors.fetch_add(1, Ordering::Relaxed);
                    backoff.failed(&e);
                    if fd_exhaustion {
                        // Out of descriptors all the same (a --max-connections
                        // above what the descriptor limit holds): the clients
                        // waiting in the backlog get the busy goodbye and a
                        // reset now, not an unanswered wait.
                        shared.shed_backlog(listener, &mut backoff);
                    }
                }
            },
        }
    }
}

impl<P: Protocol> Shared<P> {
    /// Sheds every client waiting in the listen backlog while descriptors
    /// ran out ([`AcceptBackoff::shed_pending`]): one non-blocking write of
    /// the busy goodbye, then a reset; counted as accepted and as `busy`
    /// goodbyes.
    fn shed_backlog(&self, listener: &TcpListener, backoff: &mut AcceptBackoff) {
        let goodbye = self.protocol.goodbye(Reason::Busy);
        let shed = backoff.shed_pending(listener, &goodbye);
        for _ in 0..shed {
            self.counts.accepted.fetch_add(1, Ordering::Relaxed);
            metrics::accepted();
            metrics::goodbye(Reason::Busy);
            self.counts.goodbye(Reason::Busy, false);
        }
    }

    /// Serves a new connection, or sheds it when the server is full.
    fn admit(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        stopped: &watch::Receiver<bool>,
    ) {
        self.counts.accepted.fetch_add(1, Ordering::Relaxed);
        metrics::accepted();
        if self.counts.open() >= self.config.max_connections {
            self.goodbye(stream, peer, Reason::Busy, Vec::new(), false);
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        self.counts.opened();
        tokio::spawn(connection::serve(
            stream,
            peer,
            Arc::clone(self),
            stopped.clone(),
        ));
    }

    fn summary(&self, drain: Duration) -> Summary {
        Summary {
            accepted: self.counts.accepted.load(Ordering::Relaxed),
            accept_errors: self.counts.accept_errors.load(Ordering::Relaxed),
            goodbyes: self.counts.goodbyes(),
            teardowns: self.closer.stats(),
            unfinished: self.counts.open(),
            drain,
        }
    }
}
