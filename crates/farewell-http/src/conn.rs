//! One connection's state: what it has done (for the idle timer and the
//! teardown decision) and how its socket goes to the closer. Its IO
//! ([`io`](crate::io)), its service wrapper ([`service`](crate::service)) and
//! its task (`serve_connection` in [`server`](crate::server)) share it; it
//! uses none of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use farewell::{Closer, Closing, PeerTimeWait, Policy};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::record::{Cause, CauseCell, CauseCounts, Connections};
use crate::shutdown::Shutdown;
use crate::upgrade::{Direction, Ending, UpgradeState, Upgrades};
use crate::{decide, delimited};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

/// A stream a connection is served on, and how the closer takes it over.
pub(crate) trait Handover: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// hyper's end of a response may wait, in the IO, for the client's FIN
    /// ([`ConnState::fin_wait`]). Not over TLS: the client may be waiting
    /// for our `close_notify`, which the teardown sends.
    const WAITS_FOR_FIN: bool = false;

    /// Hands the stream, which hyper is done with, to `closer`. `peer` is
    /// the client's address, as `accept` gave it: the closer need not ask
    /// the kernel for it.
    fn hand_over(self, closer: &Closer, policy: Policy, client: Client);

    /// As [`Handover::hand_over`], but a teardown that must wait is returned
    /// for the connection's own task to await ([`Closer::close_here`]),
    /// rather than spawned. By default it is spawned.
    fn hand_over_here(self, closer: &Closer, policy: Policy, client: Client) -> Option<Closing>
    where
        Self: Sized,
    {
        self.hand_over(closer, policy, client);
        None
    }

    /// The client's FIN is in, whether or not a read has reached it yet
    /// (the kernel says `CLOSE-WAIT`): one `getsockopt(TCP_INFO)`. (tokio's
    /// cached readiness would cost no syscall, but it learns of the FIN only
    /// when the runtime next polls epoll, often after the response is out.)
    fn fin_received(&self) -> bool;

    /// A duplicate of the TCP socket's descriptor, for the connection task to
    /// read the kernel's ACK counter with while hyper owns the stream
    /// ([`ConnState::acked`]). It is dropped before the stream is handed over:
    /// an open duplicate would keep the socket from closing.
    fn ack_probe(&self) -> Option<OwnedFd>;

    /// Hands the stream over when the client is owed the server's FIN
    /// ([`decide::owes_fin`]: an HTTP/1.0 client reading until the server
    /// closes, a close-delimited body), so it learns the end of the last
    /// response from the server's close. By default, as
    /// [`Handover::hand_over`]: over TLS, `close_notify` marks the end.
    ///
    /// `client_may_close`: the response had a length (or none at all), so
    /// the client knows where it ends and may close first (see [`delimited::end`]).
    fn end_with_our_fin(
        self,
        shared: &Arc<Shared>,
        policy: Policy,
        client: Client,
        cause: Cause,
        requests: u64,
        _client_may_close: bool,
    ) where
        Self: Sized,
    {
        shared.ended.handed_over(client.addr, cause, requests, true);
        self.hand_over(&shared.closer, policy, client);
    }
}

impl Handover for TcpStream {
    const WAITS_FOR_FIN: bool = true;

    /// The goodbye is whatever hyper wrote last (a `Connection: close`
    /// response, an h2 GOAWAY); it is already in the socket, so the
    /// teardown's own goodbye is empty. Its delivery phase (ACK progress,
    /// then `SIOCOUTQ` = 0) covers those bytes all the same.
    fn hand_over(self, closer: &Closer, policy: Policy, client: Client) {
        closer.close_with(client.handoff(self), Bytes::new(), policy);
    }

    fn hand_over_here(self, closer: &Closer, policy: Policy, client: Client) -> Option<Closing> {
        Some(closer.close_here(client.handoff(self), Bytes::new(), policy))
    }

    /// Under peer-first: deliver, then FIN, reset by the kernel on its ACK
    /// (see [`delimited`]), in a task the server waits for at shutdown, with
    /// no grace: the client waits for that FIN. Other policies send a FIN of
    /// their own already.
    fn end_with_our_fin(
        self,
        shared: &Arc<Shared>,
        policy: Policy,
        client: Client,
        cause: Cause,
        requests: u64,
        client_may_close: bool,
    ) {
        let Policy::PeerFirst(settings) = policy else {
            shared.ended.handed_over(client.addr, cause, requests, true);
            return self.hand_over(&shared.closer, policy, client);
        };
        shared.delimited.started();
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let end = delimited::end(
                client.handoff(self),
                &shared.closer,
                settings,
                client_may_close,
            )
            .await;
            let delivered = end != delimited::End::ResetUndelivered;
            shared
                .ended
                .close_delimited_ended(cause, requests, delivered);
            if cause == Cause::Upgrade {
                shared.upgrades.counted(delivered);
                shared.delimited.ended(None);
            } else {
                if shared.metrics.is_some() {
                    crate::metrics::close_delimited(end);
                }
                shared.delimited.ended(Some(end));
            }
        });
    }

    fn ack_probe(&self) -> Option<OwnedFd> {
        self.as_fd().try_clone_to_owned().ok()
    }

    fn fin_received(&self) -> bool {
        matches!(
            farewell::sys::tcp_state(self),
            Ok(farewell::TcpState::CloseWait)
        )
    }
}

#[cfg(feature = "rustls")]
impl Handover for farewell::tls::tokio_rustls::server::TlsStream<TcpStream> {
    /// As for TCP, after `close_notify` (no FIN): the teardown writes what
    /// tokio-rustls had not flushed, then the alert, and watches for the
    /// peer's `close_notify` in what it drains.
    /// (A TLS read that returned 0 may have been the client's
    /// `close_notify`, not its FIN: the address goes over, not the read.)
    fn hand_over(self, closer: &Closer, policy: Policy, client: Client) {
        closer.close_tls_with((self, client.addr), b"", policy);
    }

    fn hand_over_here(self, closer: &Closer, policy: Policy, client: Client) -> Option<Closing> {
        Some(closer.close_tls_here((self, client.addr), b"", policy))
    }

    fn ack_probe(&self) -> Option<OwnedFd> {
        self.get_ref().0.as_fd().try_clone_to_owned().ok()
    }

    fn fin_received(&self) -> bool {
        self.get_ref().0.fin_received()
    }
}

/// The client as a hand-over tells the closer about it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Client {
    /// Its address, as `accept` gave it: the closer asks no `getpeername`.
    pub(crate) addr: SocketAddr,
    /// A read of ours returned 0: its FIN is read, nothing is left unread
    /// ([`farewell::Handoff::peer_fin_read`]).
    pub(crate) fin_read: bool,
}

impl Client {
    /// A client whose FIN no read has reached.
    pub(crate) fn at(addr: SocketAddr) -> Client {
        Client {
            addr,
            fin_read: false,
        }
    }

    /// `stream`'s hand-over, with what is known of this client.
    fn handoff<S>(self, stream: S) -> farewell::Handoff<S> {
        let handoff = farewell::Handoff::new(stream, self.addr);
        if self.fin_read {
            handoff.peer_fin_read()
        } else {
            handoff
        }
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
    /// The policy may answer a client's FIN with a reset (peer-first, unless
    /// `PeerTimeWait::Keep`): only then must a half-close be told from a
    /// goodbye, at the cost of a `TCP_INFO` per response.
    pub(crate) may_reset_after_fin: bool,

    pub(crate) idle_timeout: Duration,
    /// How long an upgraded connection may move no byte before it is cut.
    pub(crate) upgrade_idle_timeout: Duration,
    /// Header, body and send timeouts.
    pub(crate) limits: decide::Limits,
    /// `limits.tick()`, worked out once for every connection.
    pub(crate) tick: Option<Duration>,
    /// Once the server asked hyper to end a connection (GOAWAY, idle,
    /// shutdown), how long it may then sit with nothing in flight and no byte
    /// moving before it is ended anyway (an h2 client that answers neither
    /// GOAWAY nor PING).
    pub(crate) closing_timeout: Duration,
    pub(crate) max_requests: Option<u64>,
    /// Set when the shutdown deadline passed: every connection still open is a laggard.
    pub(crate) forcing: AtomicBool,
    /// The server is stopping (set before the stop signal is sent): a
    /// connection's task polls its stop signal only then.
    pub(crate) stopping: AtomicBool,
    pub(crate) connections: AtomicU64,
    pub(crate) requests: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub(crate) tls_handshakes_failed: AtomicU64,
    pub(crate) delimited: Delimited,
    /// Connections by the cause of their end.
    pub(crate) causes: CauseCounts,
    pub(crate) ended: Arc<Connections>,
    /// Put in every request's extensions, if the server was asked to
    /// ([`Server::shutdown_extension`](crate::Server::shutdown_extension)).
    pub(crate) shutdown: Option<Shutdown>,
    /// Upgraded connections a handler holds, and how they ended.
    pub(crate) upgrades: Upgrades,
    /// What this server records in [`metrics`](crate::metrics), if it does.
    pub(crate) metrics: Option<Arc<crate::metrics::Handles>>,
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
            // The closer counts the teardown.
            Some(delimited::End::ClientClosed) => None,
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

/// Marks "a read found the client's FIN after this many bytes were written" as unset.
const NO_EOF: u64 = u64::MAX;

/// Marks an unset clock (milliseconds since the connection started).
const UNSET: u64 = u64::MAX;

/// How long hyper's end of a connection waits, in the IO, for the client's
/// FIN at most (less if the policy's grace is shorter): a client that
/// closes once it has its response does so within a round trip or two.
/// Past it, the teardown waits as usual, with the policy's whole grace.
pub(crate) const FIN_WAIT_IN_IO: Duration = Duration::from_millis(250);

/// [`ConnState::fin_wait`] decided not to wait, or the wait is over.
const FIN_WAIT_OVER: u64 = u64::MAX - 1;

/// [`PollClock::now_ms`] outside a poll: read the clock.
const CLOCK_OUTSIDE: u64 = u64::MAX;

/// Requests a connection counts before it adds them to the server's count
/// ([`ConnState::count_request`]).
const REQUESTS_BATCH: u64 = 64;

/// Inside a poll, the clock not read yet.
const CLOCK_UNREAD: u64 = u64::MAX - 1;

/// Milliseconds since a connection started, read at most once per poll of
/// the connection's hyper future ([`PollClock::poll`]): a request's reads,
/// writes, body frames and end in one poll share one reading instead of
/// taking the clock each (a poll lasts microseconds; the bounds the clock
/// serves are seconds). Outside a poll (an h2 stream's own task, the
/// watchdog) it reads the clock.
pub(crate) struct PollClock {
    started: Instant,
    /// [`CLOCK_OUTSIDE`] between polls, [`CLOCK_UNREAD`] in a poll until
    /// someone reads the clock, then that reading.
    cached: AtomicU64,
}

impl PollClock {
    pub(crate) fn new() -> PollClock {
        PollClock {
            started: Instant::now(),
            cached: AtomicU64::new(CLOCK_OUTSIDE),
        }
    }

    /// When the connection started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Milliseconds since the connection started: in a poll, the reading
    /// taken at the first call in that poll.
    pub(crate) fn now_ms(&self) -> u64 {
        match self.cached.load(Ordering::Relaxed) {
            CLOCK_OUTSIDE => self.read(),
            CLOCK_UNREAD => {
                let ms = self.read();
                // Lost only to the end of the poll: then `ms` is as good.
                let _ = self.cached.compare_exchange(
                    CLOCK_UNREAD,
                    ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                ms
            }
            ms => ms,
        }
    }

    fn read(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Polls `future` with the clock read at most once meanwhile.
    pub(crate) fn poll<F: Future>(
        &self,
        future: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        /// Back to reading the clock when the poll ends, even by a panic.
        struct Outside<'a>(&'a AtomicU64);
        impl Drop for Outside<'_> {
            fn drop(&mut self) {
                self.0.store(CLOCK_OUTSIDE, Ordering::Relaxed);
            }
        }
        self.cached.store(CLOCK_UNREAD, Ordering::Relaxed);
        let _outside = Outside(&self.cached);
        future.poll(cx)
    }
}

fn clock(ms: &AtomicU64) -> Option<u64> {
    Some(ms.load(Ordering::Relaxed)).filter(|&ms| ms != UNSET)
}

/// One connection's counters, shared by its IO, its service and its task.
pub(crate) struct ConnState {
    pub(crate) shared: Arc<Shared>,
    clock: PollClock,
    /// Milliseconds since `started` of the last byte read or written, or response finished.
    last_activity_ms: AtomicU64,
    written: AtomicU64,
    /// Bytes written when we decided to close without a request in flight, or [`NOT_CLOSING`].
    written_at_quiet_close: AtomicU64,
    /// Bytes written when the client's FIN was first seen, or [`NO_EOF`].
    written_at_eof: AtomicU64,
    /// Bytes were read since the last look at whether the client's FIN is in.
    fin_unchecked: AtomicBool,
    /// The client's address, from `accept`.
    peer: SocketAddr,
    /// Look, before each response, whether the client's FIN came first
    /// ([`decide::check_fins`]): the teardown may reset this client after
    /// its FIN.
    check_fins: bool,
    /// A response went out without that look (the client was far from
    /// heavy): see [`ConnState::unless_half_closed`].
    fin_timing_unknown: AtomicBool,
    /// Nothing was read yet (the next read is the connection's first).
    first_read: AtomicBool,
    /// The connection's first bytes were the h2 preface.
    h2_preface: AtomicBool,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) requests: AtomicU64,
    /// Told when the request that reaches `max_requests` arrives.
    pub(crate) limit_reached: Notify,
    /// The client is owed the server's FIN after the last response
    /// ([`decide::owes_fin`]): it reads until the server closes.
    pub(crate) owes_fin: AtomicBool,
    /// The last response's body is close-delimited: only our FIN ends it.
    pub(crate) body_close_delimited: AtomicBool,
    /// Why the connection ends, once something decided it.
    pub(crate) cause: CauseCell,
    /// After an upgrade: cut or not, released or not.
    pub(crate) upgrade: UpgradeState,
    /// The connection served an h2 request.
    pub(crate) h2: AtomicBool,
    /// When the first byte of a request head still incomplete was read ([`UNSET`]: none).
    head_started_ms: AtomicU64,
    /// Since when a read has been pending with nothing to read ([`UNSET`]: none pending).
    read_pending_ms: AtomicU64,
    /// Since when a write has found the socket full ([`UNSET`]: not blocked).
    write_blocked_ms: AtomicU64,
    /// The last byte written or response body polled.
    send_progress_ms: AtomicU64,
    /// Response bodies not yet dropped by hyper.
    pub(crate) bodies_open: AtomicUsize,
    /// Response bodies that gave a frame and were not asked for the next one yet.
    pub(crate) bodies_waiting: AtomicUsize,
    /// The client stopped taking the response: reset, nothing more can be delivered.
    abort: AtomicBool,
    /// A duplicate of the socket's descriptor to read `tcpi_bytes_acked`
    /// through, made the first time a write found the socket full (so only
    /// connections that ever blocked hold a second descriptor), dropped by
    /// the IO before it hands the socket over.
    ack_probe: Mutex<Option<OwnedFd>>,
    /// Where the IO's drop leaves the teardown for the connection's task to
    /// run ([`ConnState::teardown_here`]).
    here: Mutex<Here>,
    /// Until when (ms since the start) hyper's shutdown waits for the
    /// client's FIN ([`ConnState::fin_wait`]): [`UNSET`] before it is
    /// asked, [`FIN_WAIT_OVER`] once it does not or no longer waits.
    fin_wait_until_ms: AtomicU64,
    /// A read returned 0: the client's FIN is read (not only arrived).
    eof_read: AtomicBool,
}

/// The hand-over slot of [`ConnState::teardown_here`].
#[derive(Default)]
struct Here {
    /// The connection's task is dropping hyper's connection and will await
    /// what the IO's drop leaves here.
    open: bool,
    closing: Option<Closing>,
}

impl ConnState {
    pub(crate) fn new(shared: Arc<Shared>, peer: SocketAddr) -> ConnState {
        let check_fins = shared.may_reset_after_fin
            && decide::check_fins(
                shared.policy.peer_time_wait(),
                shared.closer.recent_endings(peer.ip()),
                shared.closer.heavy_client_threshold(),
            );
        ConnState {
            peer,
            check_fins,
            fin_timing_unknown: AtomicBool::new(false),
            shared,
            clock: PollClock::new(),
            last_activity_ms: AtomicU64::new(0),
            written: AtomicU64::new(0),
            written_at_quiet_close: AtomicU64::new(NOT_CLOSING),
            written_at_eof: AtomicU64::new(NO_EOF),
            fin_unchecked: AtomicBool::new(false),
            first_read: AtomicBool::new(true),
            h2_preface: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            limit_reached: Notify::new(),
            owes_fin: AtomicBool::new(false),
            body_close_delimited: AtomicBool::new(false),
            cause: CauseCell::default(),
            upgrade: UpgradeState::default(),
            h2: AtomicBool::new(false),
            head_started_ms: AtomicU64::new(UNSET),
            read_pending_ms: AtomicU64::new(UNSET),
            write_blocked_ms: AtomicU64::new(UNSET),
            send_progress_ms: AtomicU64::new(0),
            bodies_open: AtomicUsize::new(0),
            bodies_waiting: AtomicUsize::new(0),
            abort: AtomicBool::new(false),
            ack_probe: Mutex::new(None),
            here: Mutex::default(),
            fin_wait_until_ms: AtomicU64::new(UNSET),
            eof_read: AtomicBool::new(false),
        }
    }

    /// Drops `conn` (hyper's connection) and returns its socket's teardown,
    /// if its IO was in it and the teardown must wait, for the connection's
    /// task to await: one task per connection, start to end, rather than a
    /// second one for the teardown. A socket hyper no longer holds (an
    /// upgrade's, dropped later by its handler) is handed to the closer as
    /// usual.
    pub(crate) fn teardown_here<C>(&self, conn: C) -> Option<Closing> {
        self.here().open = true;
        drop(conn);
        let mut here = self.here();
        here.open = false;
        here.closing.take()
    }

    fn here(&self) -> std::sync::MutexGuard<'_, Here> {
        self.here.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `stream` to the closer with `policy`: in this connection's task
    /// when it is collecting ([`ConnState::teardown_here`]), else in a task of
    /// the closer's.
    fn give(&self, stream: impl Handover, policy: Policy) {
        let closer = &self.shared.closer;
        // Held across the hand-over, so a teardown is never left in a slot
        // nobody will collect (an upgraded stream dropped by its handler
        // while the task collects).
        let mut here = self.here();
        if here.open {
            here.closing = stream.hand_over_here(closer, policy, self.client());
        } else {
            drop(here);
            stream.hand_over(closer, policy, self.client());
        }
    }

    /// Keeps `probe` for [`ConnState::acked`].
    pub(crate) fn set_ack_probe(&self, probe: OwnedFd) {
        *self.ack_probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(probe);
    }

    /// Drops the probe: the socket is about to be handed over.
    pub(crate) fn drop_ack_probe(&self) {
        drop(
            self.ack_probe
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }

    /// The kernel's count of our bytes the client ACKed, if a probe is held.
    pub(crate) fn acked(&self) -> Option<u64> {
        let probe = self.ack_probe.lock().unwrap_or_else(|e| e.into_inner());
        let info = farewell::sys::tcp_info(probe.as_ref()?).ok()?;
        Some(info.bytes_acked)
    }

    /// When the connection started.
    pub(crate) fn started(&self) -> Instant {
        self.clock.started()
    }

    /// Milliseconds since the connection started ([`PollClock::now_ms`]).
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Polls `conn` (the connection's hyper future) with the clock read at
    /// most once ([`PollClock::poll`]).
    pub(crate) fn poll_clocked<F: Future>(
        &self,
        conn: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        self.clock.poll(conn, cx)
    }

    /// Counts a request; returns the connection's count so far. The
    /// server's count and the requests metric get them in batches of
    /// [`REQUESTS_BATCH`] and at the connection's end
    /// ([`ConnState::flush_requests`]): one shared atomic per request was a
    /// cache line every worker thread fought over.
    pub(crate) fn count_request(&self) -> u64 {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n % REQUESTS_BATCH == 0 {
            self.add_requests(REQUESTS_BATCH);
        }
        n
    }

    /// Adds the requests not yet counted in the server's count and metric:
    /// once, when the connection's task ends (or is dropped).
    pub(crate) fn flush_requests(&self) {
        self.add_requests(self.requests.load(Ordering::Relaxed) % REQUESTS_BATCH);
    }

    fn add_requests(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.shared.requests.fetch_add(n, Ordering::Relaxed);
        if let Some(handles) = &self.shared.metrics {
            handles.requests(n);
        }
    }

    /// A read returned `n` bytes (0: end of file or error): no read is pending
    /// now. The first byte read while no request is in flight starts the
    /// header clock.
    pub(crate) fn read_done(&self, n: usize) {
        self.read_pending_ms.store(UNSET, Ordering::Relaxed);
        if n > 0 {
            self.touch();
            if self.in_flight.load(Ordering::Acquire) == 0
                && self.head_started_ms.load(Ordering::Relaxed) == UNSET
            {
                self.head_started_ms.store(self.now_ms(), Ordering::Relaxed);
            }
        }
    }

    /// A read found nothing: the body clock runs from the first such read.
    pub(crate) fn read_pending(&self) {
        if self.read_pending_ms.load(Ordering::Relaxed) == UNSET {
            self.read_pending_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// A request head was complete: the header clock stops.
    pub(crate) fn head_done(&self) {
        self.head_started_ms.store(UNSET, Ordering::Relaxed);
    }

    /// A write found the socket full.
    pub(crate) fn write_blocked(&self) {
        if self.write_blocked_ms.load(Ordering::Relaxed) == UNSET {
            self.write_blocked_ms
                .store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// A flush went through: a write blocked before is not any more.
    pub(crate) fn flushed(&self) {
        if self.write_blocked_ms.swap(UNSET, Ordering::Relaxed) != UNSET {
            self.send_progress();
        }
    }

    /// A response body was polled: the sending side moves.
    pub(crate) fn send_progress(&self) {
        self.send_progress_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// What the connection task's watchdog looks at, the kernel's last ACK
    /// progress (`acked_at`, ms) folded in.
    pub(crate) fn watch(&self, now: u64, acked_at: u64) -> decide::Watch {
        decide::Watch {
            now,
            h2: self.h2.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Acquire),
            head_started: clock(&self.head_started_ms),
            read_pending: clock(&self.read_pending_ms),
            send_waiting: self.bodies_waiting.load(Ordering::Acquire) > 0
                || clock(&self.write_blocked_ms).is_some(),
            send_progress: self.send_progress_ms.load(Ordering::Relaxed).max(acked_at),
        }
    }

    /// The connection is cut for a send stall: its teardown resets at once.
    pub(crate) fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
    }

    /// Something happened on the connection: the idle clock restarts.
    pub(crate) fn touch(&self) {
        self.last_activity_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// The client's FIN is in (a read found it, or the kernel says so before
    /// a response): remember how much had been written by then.
    pub(crate) fn peer_fin_seen(&self) {
        let written = self.written.load(Ordering::Relaxed);
        let _ = self.written_at_eof.compare_exchange(
            NO_EOF,
            written,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Whether hyper's shutdown, after the last response of a connection
    /// (`Connection: close`, the request limit, a 400), waits in the IO for
    /// the client's FIN rather than hand the socket over at once. Then the
    /// teardown finds the FIN already in and ends inside the hand-over: no
    /// waiting teardown (its timer, its hurry waiter, its allocation), the
    /// connection's own timer bounding the wait instead. The wait is short
    /// ([`FIN_WAIT_IN_IO`], or the policy's grace if shorter); past it the
    /// teardown waits as it always does, from the start of its own
    /// delivery and grace. Only under peer-first, and not for a connection
    /// ended quietly (shutdown, idle: no response just went out), one owed
    /// our FIN, an h2 connection, an aborted one, the shutdown deadline's,
    /// or a client whose FIN is in already. The first call decides and
    /// starts the clock; later calls say whether it was not ended since,
    /// without reading the clock: the caller reads first, and asks
    /// [`ConnState::fin_wait_expired`] only when the read finds nothing (the
    /// FIN that ends most waits needs no clock).
    pub(crate) fn fin_wait(&self) -> bool {
        let until = self.fin_wait_until_ms.load(Ordering::Relaxed);
        if until == FIN_WAIT_OVER {
            return false;
        }
        if until != UNSET {
            return true;
        }
        let window = match self.shared.policy {
            Policy::PeerFirst(p) => p.grace.min(FIN_WAIT_IN_IO),
            _ => Duration::ZERO,
        };
        let waits = !window.is_zero()
            && self.written_at_quiet_close.load(Ordering::Relaxed) == NOT_CLOSING
            && !self.owes_fin.load(Ordering::Relaxed)
            && !self.abort.load(Ordering::Relaxed)
            && !self.h2.load(Ordering::Relaxed)
            && !self.h2_preface()
            && !self.shared.forcing.load(Ordering::Relaxed)
            && !self.peer_fin_known();
        if !waits {
            self.fin_wait_until_ms
                .store(FIN_WAIT_OVER, Ordering::Relaxed);
            return false;
        }
        let until = self.now_ms() + window.as_millis() as u64;
        self.fin_wait_until_ms.store(until, Ordering::Relaxed);
        true
    }

    /// A read in the wait for the client's FIN found nothing: whether the
    /// wait's time is up (then it is over, and hyper's shutdown goes on).
    pub(crate) fn fin_wait_expired(&self) -> bool {
        let until = self.fin_wait_until_ms.load(Ordering::Relaxed);
        if until < FIN_WAIT_OVER && self.now_ms() < until {
            return false;
        }
        self.fin_wait_over();
        true
    }

    /// The wait for the client's FIN in the IO ended (its FIN, bytes, an error).
    pub(crate) fn fin_wait_over(&self) {
        self.fin_wait_until_ms
            .store(FIN_WAIT_OVER, Ordering::Relaxed);
    }

    /// When the wait for the client's FIN in the IO ends, while one runs:
    /// the connection task's timer must fire by then (see [`ConnState::fin_wait`]).
    pub(crate) fn fin_wait_deadline(&self) -> Option<Instant> {
        let until = self.fin_wait_until_ms.load(Ordering::Relaxed);
        (until < FIN_WAIT_OVER).then(|| self.started() + Duration::from_millis(until))
    }

    /// A read of the IO's returned 0: the client's FIN is read, and
    /// nothing is left unread before it.
    pub(crate) fn eof_read(&self) {
        self.eof_read.store(true, Ordering::Relaxed);
        self.peer_fin_seen();
    }

    /// The client, as the hand-over tells the closer.
    fn client(&self) -> Client {
        Client {
            addr: self.peer,
            fin_read: self.eof_read.load(Ordering::Relaxed),
        }
    }

    /// The client's FIN was seen already.
    pub(crate) fn peer_fin_known(&self) -> bool {
        self.written_at_eof.load(Ordering::Relaxed) != NO_EOF
    }

    /// The connection's first read brought `bytes`: notes whether they begin
    /// the h2 preface (RFC 9113 §3.4), before any request says so.
    pub(crate) fn first_bytes(&self, bytes: &[u8]) {
        if self.first_read.load(Ordering::Relaxed) && !bytes.is_empty() {
            self.first_read.store(false, Ordering::Relaxed);
            const PREFACE: &[u8] = b"PRI * HTTP/2.0";
            let n = bytes.len().min(PREFACE.len());
            self.h2_preface
                .store(bytes[..n] == PREFACE[..n], Ordering::Relaxed);
        }
    }

    /// The client spoke h2 (its first bytes were the preface).
    pub(crate) fn h2_preface(&self) -> bool {
        self.h2_preface.load(Ordering::Relaxed)
    }

    /// A read brought bytes: the next write starts a response, and is worth
    /// asking the kernel first whether the client's FIN came with them.
    pub(crate) fn responding(&self) {
        if self.check_fins {
            self.fin_unchecked.store(true, Ordering::Relaxed);
        } else if self.shared.may_reset_after_fin {
            self.fin_timing_unknown.store(true, Ordering::Relaxed);
        }
    }

    /// Before a write: true once per response (see [`ConnState::responding`]).
    pub(crate) fn take_fin_check(&self) -> bool {
        self.fin_unchecked.load(Ordering::Relaxed)
            && self.fin_unchecked.swap(false, Ordering::Relaxed)
            && !self.peer_fin_known()
    }

    /// The client's FIN came before our last write: it half-closed after its
    /// requests (`nc -N`) and may still be reading. Its FIN is no goodbye,
    /// so the teardown closes passively (the client keeps TIME-WAIT) rather
    /// than reset a reader before its end of file ([`farewell::PeerTimeWait`]).
    fn half_closed(&self) -> bool {
        let at = self.written_at_eof.load(Ordering::Relaxed);
        at != NO_EOF && at < self.written.load(Ordering::Relaxed)
    }

    /// `policy`, or, for a client that half-closed before our last response,
    /// `policy` with the passive close after its FIN whatever the client's weight.
    ///
    /// A response that went out without a look at the kernel (the client was
    /// far from heavy when the connection began: no syscall per response)
    /// cannot tell when the FIN came. If the teardown could now reset this
    /// client after its FIN (it became heavy meanwhile), it keeps the
    /// passive close too: one TIME-WAIT for the client rather than a reset
    /// that might reach it before it read its last response.
    fn unless_half_closed(&self, policy: Policy) -> Policy {
        let unknown = || {
            self.fin_timing_unknown.load(Ordering::Relaxed)
                && decide::unchecked_fin_may_reset(
                    policy.peer_time_wait(),
                    self.shared.closer.recent_endings(self.peer.ip()),
                    self.shared.closer.heavy_client_threshold(),
                )
        };
        if self.half_closed() || unknown() {
            policy.with_peer_time_wait(PeerTimeWait::Keep)
        } else {
            policy
        }
    }

    pub(crate) fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.write_blocked_ms.store(UNSET, Ordering::Relaxed);
        // One clock reading for both: the idle clock and the send clock.
        let ms = self.now_ms();
        self.last_activity_ms.store(ms, Ordering::Relaxed);
        self.send_progress_ms.store(ms, Ordering::Relaxed);
    }

    fn last_activity(&self) -> Instant {
        self.clock.started() + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }

    /// Whether the connection has been idle (no request in flight, no I/O) for `idle` at `now`.
    pub(crate) fn idle_check(&self, idle: Duration, now: Instant) -> decide::Idle {
        decide::idle(
            self.in_flight.load(Ordering::Acquire) + self.bodies_open.load(Ordering::Acquire),
            self.last_activity(),
            idle,
            now,
        )
    }

    /// We are about to ask hyper to end the connection while nothing may be in flight.
    /// If hyper then writes nothing more (HTTP/1.1 closes an idle connection
    /// silently), the teardown has nothing to deliver and uses the quiet policy.
    /// If it does write (a response finishing, an h2 GOAWAY), it uses the normal one.
    /// Once hyper's shutdown waits for the client's FIN ([`ConnState::fin_wait`]),
    /// its last response is out: that one is the goodbye, and the teardown
    /// delivers it with the normal policy, whatever ends the wait.
    pub(crate) fn closing_quietly(&self) {
        if self.fin_wait_deadline().is_some() {
            return;
        }
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
        if let Some(handles) = &self.shared.metrics {
            handles.ended(cause);
        }
        let shared = &self.shared;
        // An upgraded stream the handler dropped ends with the server's FIN,
        // as a response to a client that reads until the close does (see `upgrade`); a cut one, quietly.
        let upgraded = self.upgrade.ending(self.cause.get());
        if self.abort.load(Ordering::Relaxed) {
            // The client stopped taking the response: nothing more can be delivered.
            shared.ended.handed_over(self.peer, cause, requests, false);
            self.give(stream, Policy::Abort);
        } else {
            self.hand_over(stream, mark, cause, requests, upgraded);
        }
        self.upgrade.released(&shared.upgrades);
    }

    /// [`ConnState::release`] for a connection not aborted: the teardown
    /// [`decide::teardown`] picks.
    fn hand_over(
        &self,
        stream: impl Handover,
        mark: u64,
        cause: Cause,
        requests: u64,
        upgraded: Ending,
    ) {
        let shared = &self.shared;
        match decide::teardown(
            (mark != NOT_CLOSING).then_some(mark),
            self.written.load(Ordering::Relaxed),
            shared.forcing.load(Ordering::Relaxed) || upgraded == Ending::Cut,
            self.owes_fin.load(Ordering::Relaxed) || upgraded == Ending::Closed,
        ) {
            decide::Teardown::Quiet => {
                shared.ended.handed_over(self.peer, cause, requests, false);
                self.give(stream, self.unless_half_closed(shared.quiet_policy))
            }
            decide::Teardown::AfterGoodbye => {
                // The last response (or GOAWAY) is the goodbye, whoever ended it.
                let goodbye = requests > 0 || cause != Cause::ClientClosed;
                shared
                    .ended
                    .handed_over(self.peer, cause, requests, goodbye);
                self.give(stream, self.unless_half_closed(shared.policy))
            }
            decide::Teardown::OwedFin => {
                let client_may_close = !self.body_close_delimited.load(Ordering::Relaxed)
                    && upgraded != Ending::Closed;
                // A client that half-closed (`nc -N`) still reads: its FIN is
                // no goodbye, whatever its weight.
                let policy = self.unless_half_closed(shared.policy);
                stream.end_with_our_fin(
                    shared,
                    policy,
                    self.client(),
                    cause,
                    requests,
                    client_may_close,
                )
            }
        }
    }

    /// Watches an upgraded connection, from its task, until its handler drops the
    /// stream: cuts it after the idle bound, or when the task is aborted.
    pub(crate) async fn watch_upgraded(&self) {
        let conn = self;
        if conn.cause.get() != Some(Cause::Upgrade) || !conn.upgrade.track(&conn.shared.upgrades) {
            return;
        }
        let _cut_on_abort = CutOnDrop(conn);
        let idle = conn.shared.upgrade_idle_timeout;
        let timer = tokio::time::sleep(idle);
        // The send timeout, as for HTTP: a stream whose writes found the socket
        // full and that moved nothing since (no byte written, none ACKed) is cut.
        // It bounds what a handler can queue in the kernel; what its library
        // queues without writing is the handler's to bound (see the crate docs).
        let limits = conn.shared.limits;
        let tick = limits
            .send
            .map(|send| (send / 4).clamp(Duration::from_millis(25), Duration::from_secs(15)));
        let send_timer = tokio::time::sleep(tick.unwrap_or(idle));
        let mut acks = decide::AckClock::default();
        tokio::pin!(timer, send_timer);
        let mut cut = false;
        loop {
            let released = conn.upgrade.released_notified();
            if conn.upgrade.is_released() {
                return;
            }
            tokio::select! {
                () = released => {}
                () = timer.as_mut(), if !cut => match conn.idle_check(idle, Instant::now()) {
                    decide::Idle::CheckAt(next) => timer.as_mut().reset(next.into()),
                    decide::Idle::Expired => {
                        tracing::debug!("upgraded connection idle: cut");
                        conn.shared.upgrades.idle_cut.fetch_add(1, Ordering::Relaxed);
                        conn.upgrade.cut();
                        cut = true;
                    }
                },
                () = send_timer.as_mut(), if tick.is_some() && !cut => {
                    let now_ms = conn.now_ms();
                    let acked_at = acks.sample(conn.acked(), now_ms);
                    if decide::send_stalled(&conn.watch(now_ms, acked_at), &limits) {
                        tracing::debug!("upgraded connection takes nothing we send: cut");
                        conn.shared.upgrades.idle_cut.fetch_add(1, Ordering::Relaxed);
                        conn.upgrade.cut();
                        cut = true;
                    } else if let Some(tick) = tick {
                        send_timer.as_mut().reset((Instant::now() + tick).into());
                    }
                }
            }
        }
    }

    /// For an upgraded connection's IO that returned `Pending`: remembers who to
    /// wake on a cut, and says whether the stream was cut meanwhile. Does nothing
    /// (false) before the upgrade, so plain HTTP pays one atomic load.
    pub(crate) fn park_upgraded(&self, cx: &Context<'_>, direction: Direction) -> bool {
        self.cause.get() == Some(Cause::Upgrade) && self.upgrade.park(cx, direction)
    }
}

/// Cuts the upgraded stream when the connection's task is dropped before the
/// handler let go of it: the server's shutdown deadline aborted the task.
struct CutOnDrop<'a>(&'a ConnState);

impl Drop for CutOnDrop<'_> {
    fn drop(&mut self) {
        if !self.0.upgrade.is_released() {
            self.0.upgrade.cut();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Wake, Waker};

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    fn poll_once<F: Future>(clock: &PollClock, future: F) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        clock.poll(future.as_mut(), &mut cx)
    }

    fn pause() {
        // A plain test thread, no runtime: the clock must move past a millisecond.
        std::thread::sleep(Duration::from_millis(20));
    }

    #[test]
    fn poll_clock_outside_a_poll_reads_the_clock() {
        let clock = PollClock::new();
        let before = clock.now_ms();
        pause();
        assert!(clock.now_ms() >= before + 20);
    }

    #[test]
    fn poll_clock_in_a_poll_reads_once_then_again_after_it() {
        let clock = PollClock::new();
        pause();
        let (first, second) = match poll_once(&clock, async {
            let first = clock.now_ms();
            pause();
            (first, clock.now_ms())
        }) {
            Poll::Ready(readings) => readings,
            Poll::Pending => unreachable!("the future does not wait"),
        };
        assert!(first >= 20);
        assert_eq!(first, second, "one reading per poll");
        assert!(
            clock.now_ms() >= first + 20,
            "a fresh reading after the poll"
        );
        // The next poll takes a new reading.
        pause();
        let third = match poll_once(&clock, async { clock.now_ms() }) {
            Poll::Ready(ms) => ms,
            Poll::Pending => unreachable!("the future does not wait"),
        };
        assert!(third >= first + 40);
    }

    #[test]
    fn poll_clock_reads_the_clock_again_after_a_poll_that_panicked() {
        let clock = PollClock::new();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            poll_once(&clock, async {
                let _ = clock.now_ms();
                panic!("the service panicked");
            })
        }));
        assert!(panicked.is_err());
        let after = clock.now_ms();
        pause();
        assert!(clock.now_ms() >= after + 20);
    }
}
