//! One connection's state: what it has done (for the idle timer and the
//! teardown decision) and how its socket goes to the closer. Its IO
//! ([`io`](crate::io)), its service wrapper ([`service`](crate::service)) and
//! its task (`serve_connection` in [`server`](crate::server)) share it; it
//! uses none of them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use farewell::{Closer, Policy};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::record::{Cause, CauseCell, CauseCounts, Connections};
use crate::shutdown::Shutdown;
use crate::upgrade::{self, UpgradeState, Upgrades};
use crate::{decide, delimited};
use std::net::SocketAddr;

/// A stream a connection is served on, and how the closer takes it over.
pub(crate) trait Handover: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Hands the stream, which hyper is done with, to `closer`.
    fn hand_over(self, closer: &Closer, policy: Policy);

    /// The client's address, as the teardown's outcome will name it.
    fn peer(&self) -> Option<SocketAddr>;

    /// Hands the stream over after a close-delimited response (an HTTP/1.0
    /// body of unknown length), whose end the client can only learn from the
    /// server's close. By default, as [`Handover::hand_over`]: over TLS,
    /// `close_notify` marks the end.
    fn end_close_delimited(self, shared: &Arc<Shared>, policy: Policy, cause: Cause, requests: u64)
    where
        Self: Sized,
    {
        shared.ended.handed_over(self.peer(), cause, requests, true);
        self.hand_over(&shared.closer, policy);
    }
}

impl Handover for TcpStream {
    /// The goodbye is whatever hyper wrote last (a `Connection: close`
    /// response, an h2 GOAWAY); it is already in the socket, so the
    /// teardown's own goodbye is empty. Its delivery phase (ACK progress,
    /// then `SIOCOUTQ` = 0) covers those bytes all the same.
    fn hand_over(self, closer: &Closer, policy: Policy) {
        closer.close_with(self, Bytes::new(), policy);
    }

    /// Under peer-first: deliver, then FIN and RST back to back (see
    /// [`delimited`]), in a task the server waits for at shutdown. Other
    /// policies send a FIN of their own already.
    fn end_close_delimited(
        self,
        shared: &Arc<Shared>,
        policy: Policy,
        cause: Cause,
        requests: u64,
    ) {
        let Policy::PeerFirst(settings) = policy else {
            shared.ended.handed_over(self.peer(), cause, requests, true);
            return self.hand_over(&shared.closer, policy);
        };
        shared.delimited.started();
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let end =
                delimited::end(self, settings, || shared.forcing.load(Ordering::Relaxed)).await;
            let delivered = end == delimited::End::Delivered;
            shared
                .ended
                .close_delimited_ended(cause, requests, delivered);
            if cause == Cause::Upgrade {
                upgrade::counted(&shared.upgrades, delivered);
                shared.delimited.ended(None);
            } else {
                if shared.metrics {
                    crate::metrics::close_delimited(end);
                }
                shared.delimited.ended(Some(end));
            }
        });
    }

    fn peer(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
}

#[cfg(feature = "rustls")]
impl Handover for farewell::tls::tokio_rustls::server::TlsStream<TcpStream> {
    /// As for TCP, after `close_notify` (no FIN): the teardown writes what
    /// tokio-rustls had not flushed, then the alert, and watches for the
    /// peer's `close_notify` in what it drains.
    fn hand_over(self, closer: &Closer, policy: Policy) {
        closer.close_tls_with(self, b"", policy);
    }

    fn peer(&self) -> Option<SocketAddr> {
        self.get_ref().0.peer_addr().ok()
    }
}

/// What every connection of one server shares.
pub(crate) struct Shared {
    pub(crate) closer: Closer,
    /// The policy for a connection whose last response went out (or the client closed).
    pub(crate) policy: Policy,
    /// The policy for a connection we close with nothing to say (idle HTTP/1.1 keep-alive,
    /// laggards at shutdown): reset once everything written is ACKed.
    pub(crate) quiet_policy: Policy,
    pub(crate) idle_timeout: Duration,
    /// How long an upgraded connection may move no byte before it is cut.
    pub(crate) upgrade_idle_timeout: Duration,
    pub(crate) max_requests: Option<u64>,
    /// Set when the shutdown deadline passed: every connection still open is a laggard.
    pub(crate) forcing: AtomicBool,
    pub(crate) connections: AtomicU64,
    pub(crate) requests: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub(crate) tls_handshakes_failed: AtomicU64,
    pub(crate) delimited: Delimited,
    /// Connections by the cause of their end.
    pub(crate) causes: CauseCounts,
    pub(crate) ended: Arc<Connections>,
    /// Put in every request's extensions.
    pub(crate) shutdown: Shutdown,
    /// Upgraded connections a handler holds, and how they ended.
    pub(crate) upgrades: Upgrades,
    /// Whether this server records [`metrics`](crate::metrics).
    pub(crate) metrics: bool,
}

/// The close-delimited endings ([`delimited`]) of one server: counted, and
/// waited for at shutdown (they run outside the closer).
#[derive(Default)]
pub(crate) struct Delimited {
    in_flight: AtomicUsize,
    all_ended: Notify,
    pub(crate) delivered: AtomicU64,
    pub(crate) reset_undelivered: AtomicU64,
}

impl Delimited {
    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// One ending is over; counted here unless `end` is `None` (an upgraded
    /// connection's, counted in [`Upgrades`]).
    fn ended(&self, end: Option<delimited::End>) {
        let counter = match end {
            Some(delimited::End::Delivered) => Some(&self.delivered),
            Some(delimited::End::ResetUndelivered) => Some(&self.reset_undelivered),
            None => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_ended.notify_waiters();
        }
    }

    /// Waits until no close-delimited ending is under way.
    pub(crate) async fn idle(&self) {
        loop {
            let ended = self.all_ended.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// Marks "we decided to close, and had written this many bytes by then" as unset.
const NOT_CLOSING: u64 = u64::MAX;

/// One connection's counters, shared by its IO, its service and its task.
pub(crate) struct ConnState {
    pub(crate) shared: Arc<Shared>,
    started: Instant,
    /// Milliseconds since `started` of the last byte read or written, or response finished.
    last_activity_ms: AtomicU64,
    written: AtomicU64,
    /// Bytes written when we decided to close without a request in flight, or [`NOT_CLOSING`].
    written_at_quiet_close: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) requests: AtomicU64,
    /// Told when the request that reaches `max_requests` arrives.
    pub(crate) limit_reached: Notify,
    /// The last response's body is close-delimited: only the server's close ends it.
    pub(crate) close_delimited: AtomicBool,
    /// Why the connection ends, once something decided it.
    pub(crate) cause: CauseCell,
    /// After an upgrade: cut or not, released or not.
    pub(crate) upgrade: UpgradeState,
}

impl ConnState {
    pub(crate) fn new(shared: Arc<Shared>) -> ConnState {
        ConnState {
            shared,
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            written: AtomicU64::new(0),
            written_at_quiet_close: AtomicU64::new(NOT_CLOSING),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            limit_reached: Notify::new(),
            close_delimited: AtomicBool::new(false),
            cause: CauseCell::default(),
            upgrade: UpgradeState::default(),
        }
    }

    /// Something happened on the connection: the idle clock restarts.
    pub(crate) fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    fn last_activity(&self) -> Instant {
        self.started + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }

    /// Whether the connection has been idle (no request in flight, no I/O) for `idle` at `now`.
    pub(crate) fn idle_check(&self, idle: Duration, now: Instant) -> decide::Idle {
        decide::idle(
            self.in_flight.load(Ordering::Acquire),
            self.last_activity(),
            idle,
            now,
        )
    }

    /// We are about to ask hyper to end the connection while nothing may be in flight.
    /// If hyper then writes nothing more (HTTP/1.1 closes an idle connection
    /// silently), the teardown has nothing to deliver and uses the quiet policy.
    /// If it does write (a response finishing, an h2 GOAWAY), it uses the normal one.
    pub(crate) fn closing_quietly(&self) {
        let written = self.written.load(Ordering::Relaxed);
        self.written_at_quiet_close
            .store(written, Ordering::Relaxed);
    }

    /// Hands the socket, which hyper is done with, to the server's closer.
    pub(crate) fn release(&self, stream: impl Handover) {
        let mark = self.written_at_quiet_close.load(Ordering::Relaxed);
        let cause = self.cause.get().unwrap_or(Cause::ClientClosed);
        let requests = self.requests.load(Ordering::Relaxed);
        self.shared.causes.add(cause);
        if self.shared.metrics {
            crate::metrics::ended(cause);
        }
        let shared = &self.shared;
        // An upgraded stream the handler dropped ends with the server's FIN,
        // as a close-delimited body does (see `upgrade`); a cut one, quietly.
        let upgraded = upgrade::ending(self);
        match decide::teardown(
            (mark != NOT_CLOSING).then_some(mark),
            self.written.load(Ordering::Relaxed),
            shared.forcing.load(Ordering::Relaxed) || upgraded == upgrade::Ending::Cut,
            self.close_delimited.load(Ordering::Relaxed) || upgraded == upgrade::Ending::Closed,
        ) {
            decide::Teardown::Quiet => {
                let peer = stream.peer();
                shared.ended.handed_over(peer, cause, requests, false);
                stream.hand_over(&shared.closer, shared.quiet_policy)
            }
            decide::Teardown::AfterGoodbye => {
                let peer = stream.peer();
                // The last response (or GOAWAY) is the goodbye, whoever ended it.
                let goodbye = requests > 0 || cause != Cause::ClientClosed;
                shared.ended.handed_over(peer, cause, requests, goodbye);
                stream.hand_over(&shared.closer, shared.policy)
            }
            decide::Teardown::CloseDelimited => {
                stream.end_close_delimited(shared, shared.policy, cause, requests)
            }
        }
        self.upgrade.released(&shared.upgrades);
    }
}
