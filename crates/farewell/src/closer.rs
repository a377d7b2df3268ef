//! The background closer: hand a stream over and move on.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::outcome::{Ending, Outcome, PeerFinChoice, TimeWait};
use crate::policy::Policy;
use crate::recent::RecentEndings;
use crate::teardown::{Report, Teardown, Urgency};

type OutcomeHook = Box<dyn Fn(Outcome) + Send + Sync>;

/// What a [`Closer`] is handed: the stream (a [`TcpStream`], or for
/// `Closer::close_tls`, with the `rustls` feature, a TLS stream) and, when the caller has it, the
/// peer's address.
///
/// Every `close` method takes `impl Into<Handoff<_>>`: the stream alone, or
/// the `(stream, SocketAddr)` pair that
/// [`TcpListener::accept`](tokio::net::TcpListener::accept) returns. With the
/// address, a teardown that counts the peer's endings
/// ([`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto), the default) or
/// reports it in full need not ask the kernel for it: one `getpeername`
/// less per connection, and a peer that reset meanwhile is still named. The
/// address must be the stream's own peer: the heavy-client count goes by it.
///
/// # Examples
///
/// ```no_run
/// use farewell::{Closer, Policy};
/// use tokio::net::TcpListener;
///
/// # #[allow(dead_code)]
/// # async fn demo() -> std::io::Result<()> {
/// let closer = Closer::new(Policy::default());
/// let listener = TcpListener::bind("127.0.0.1:7878").await?;
/// // The pair `accept` returns is a `Handoff`: the address comes along.
/// closer.close(listener.accept().await?, &b"BYE busy\n"[..]);
/// // A stream alone is one too: the address is asked of the kernel if needed.
/// let (stream, _) = listener.accept().await?;
/// closer.close(stream, &b"BYE busy\n"[..]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Handoff<S = TcpStream> {
    pub(crate) stream: S,
    pub(crate) peer: Option<std::net::SocketAddr>,
    pub(crate) fin_read: bool,
}

impl<S> Handoff<S> {
    /// `stream`, whose peer is at `peer`.
    pub fn new(stream: S, peer: std::net::SocketAddr) -> Handoff<S> {
        Handoff {
            stream,
            peer: Some(peer),
            fin_read: false,
        }
    }

    /// The caller already read the peer's FIN on this stream (a read
    /// returned 0), so the teardown need not read again to learn it: one
    /// `recv` less. With an empty goodbye, the teardown's start asks the
    /// kernel only whether what was written is ACKed (`SIOCOUTQ`), not for
    /// the whole `TCP_INFO`. It is the caller's word: a stream whose FIN only
    /// *arrived* (the kernel says `CLOSE-WAIT`, bytes may be unread before
    /// it) must not be marked, or closing it over those bytes would send a
    /// reset ([F4](crate::facts#f4)). The TLS teardowns
    /// (`Closer::close_tls` and the like) leave it aside: a TLS read that returns 0 may
    /// be the peer's `close_notify`, with its FIN still to come.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use farewell::{Closer, Handoff};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(closer: Closer, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// let (mut stream, peer) = listener.accept().await?;
    /// let mut buf = [0u8; 512];
    /// while stream.read(&mut buf).await? > 0 {} // the client sends until it closes
    /// closer.close(Handoff::new(stream, peer).peer_fin_read(), &b"BYE\n"[..]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn peer_fin_read(mut self) -> Handoff<S> {
        self.fin_read = true;
        self
    }

    /// The stream.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The peer's address, if the caller gave it.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.peer
    }

    /// The stream and the address, apart.
    pub fn into_parts(self) -> (S, Option<std::net::SocketAddr>) {
        (self.stream, self.peer)
    }
}

impl<S> From<S> for Handoff<S> {
    fn from(stream: S) -> Handoff<S> {
        Handoff {
            stream,
            peer: None,
            fin_read: false,
        }
    }
}

impl<S> From<(S, std::net::SocketAddr)> for Handoff<S> {
    fn from((stream, peer): (S, std::net::SocketAddr)) -> Handoff<S> {
        Handoff::new(stream, peer)
    }
}

/// Owns closing connections so the caller does not have to: [`Closer::close`]
/// returns at once, and the teardown runs as a tokio task.
///
/// [`Closer::close`] first does what needs no waiting, with non-blocking
/// calls only (the kernel's state, the goodbye's write, one read): a
/// teardown that can end at once, because the peer's FIN is already queued,
/// ends right there, without a task or a timer. Only a teardown that must
/// wait becomes a task; with [`Closer::close_here`] it runs in the caller's
/// own task instead (await the [`Closing`]), which saves the task.
///
/// A teardown whose task or [`Closing`] is dropped before it ends (a task
/// aborted, the runtime shut down) is cut as [`Closer::hurry`] would cut it,
/// and reported: never closed plainly with our FIN first.
///
/// Each such teardown is one small task; it holds no buffer of its own (reads go to
/// a per-thread scratch buffer), so many thousands can be pending at once.
/// Measured on Linux 6.18 x86_64 (`tests/closer_memory.rs`, 2,000 pending
/// teardowns): about 930 B of user-space memory each — one task allocation,
/// the hurry's waiter (a tokio `Notified`, about 100 B) included — so 100,000
/// pending teardowns cost about 90 MiB of user space, plus the kernel's own
/// socket memory. ([`close`](crate::close)
/// has no hurry: its future is 480 B.)
///
/// Outcomes go to the hook given to [`CloserBuilder::on_outcome`] (for example
/// a channel's sender); running counts are in [`Closer::stats`]. Clones share
/// the same counts and hook.
///
/// # Examples
///
/// ```no_run
/// use farewell::{Closer, Policy};
/// use tokio::net::TcpListener;
///
/// # #[allow(dead_code)]
/// # async fn demo() -> std::io::Result<()> {
/// let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
/// let closer = Closer::builder(Policy::default())
///     .on_outcome(move |outcome| { let _ = tx.send(outcome); })
///     .build();
///
/// let listener = TcpListener::bind("127.0.0.1:7878").await?;
/// let (stream, peer) = listener.accept().await?;
/// closer.close((stream, peer), &b"BYE busy\n"[..]); // returns at once
///
/// closer.idle().await; // e.g. at shutdown: wait for every teardown
/// while let Ok(outcome) = outcomes.try_recv() {
///     println!("{outcome}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Closer {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Policy,
    on_outcome: Option<OutcomeHook>,
    reap_time_wait: bool,
    brief: bool,
    handle: Handle,
    in_flight: AtomicUsize,
    started: AtomicU64,
    by_ending: [AtomicU64; Ending::ALL.len()],
    idle: Notify,
    /// Callers waiting in [`Closer::idle`]: a teardown that ends the last
    /// one in flight wakes them only if there are any (`Notify::notify_waiters`
    /// takes a lock, a cache line every worker thread would fight over for
    /// every teardown).
    idle_waiters: AtomicUsize,
    hurry: Arc<Hurry>,
}

/// What a closer's teardowns share: the one-shot "end now" of
/// [`Closer::hurry`], and the recent endings per client address that tell a
/// heavy client from a light one ([`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto)).
pub(crate) struct Hurry {
    hurried: AtomicBool,
    now: Notify,
    recent: Arc<RecentEndings>,
    /// Endings per address and minute above which a client is heavy.
    heavy_after: u32,
}

impl Urgency for Arc<Hurry> {
    type Wait<'a> = Notified<'a>;

    fn is_hurried(&self) -> bool {
        self.hurried.load(Ordering::Acquire)
    }

    fn wait(&self) -> Notified<'_> {
        self.now.notified()
    }

    fn classify(&self, peer: Option<std::net::IpAddr>, now: std::time::Instant) -> PeerFinChoice {
        // An address the kernel could not tell us (a reset at that very
        // moment) is not counted: the textbook close.
        let recent = peer.map_or(0, |peer| self.recent.record(peer, now));
        if recent > self.heavy_after {
            PeerFinChoice::Heavy { recent }
        } else {
            PeerFinChoice::Light { recent }
        }
    }
}

/// Configures a [`Closer`].
pub struct CloserBuilder {
    policy: Policy,
    on_outcome: Option<OutcomeHook>,
    reap_time_wait: bool,
    brief: bool,
    handle: Option<Handle>,
    heavy_after: u32,
    recent: Option<Arc<RecentEndings>>,
}

impl CloserBuilder {
    /// Calls `hook` with every teardown's outcome, on a runtime thread, or
    /// inside [`Closer::close`] itself when the teardown ended at once (the
    /// peer's FIN was already queued). Keep it short and non-blocking (send it
    /// to a channel, bump a metric), and do not hold a lock around `close`
    /// that the hook takes.
    pub fn on_outcome(mut self, hook: impl Fn(Outcome) + Send + Sync + 'static) -> Self {
        self.on_outcome = Some(Box::new(hook));
        self
    }

    /// Makes the hook's outcomes brief: the ending, the TIME-WAIT side, the
    /// goodbye's delivery as the teardown saw it and the durations, but not
    /// the addresses nor the kernel's last word on the socket
    /// ([`Outcome::local`], [`Outcome::peer`], [`Outcome::state_at_close`]
    /// and [`Outcome::unacked_at_close`] stay `None`). That spares two to
    /// four syscalls per teardown (`getsockname`, `getpeername`, `TCP_INFO`,
    /// `SIOCOUTQ`), for a hook that only counts, such as metrics. Off by
    /// default. A closer with no hook skips those calls anyway.
    ///
    /// With [`CloserBuilder::reap_time_wait`] the addresses are still asked
    /// for: the reaper needs them.
    pub fn brief_outcomes(mut self, brief: bool) -> Self {
        self.brief = brief;
        self
    }

    /// After a teardown that left a TIME-WAIT entry on *our* side (a clean close
    /// where we sent the first FIN, e.g. the lingering policy), destroy that one
    /// entry with `SOCK_DESTROY`. Off by default. Linux only, needs
    /// `CAP_NET_ADMIN` and a kernel with `CONFIG_INET_DIAG_DESTROY`; without
    /// them the entry stays and the outcome's `reaped` is false.
    ///
    /// # Hazards (RFC 1337)
    ///
    /// TIME-WAIT exists to absorb delayed segments of the old connection and
    /// to re-send the last ACK if the peer's FIN is retransmitted. Destroying
    /// it early means: a retransmitted FIN from the peer gets an RST instead
    /// of an ACK (harmless to a peer that already closed, but it may log an
    /// error), and a new connection reusing the same 4-tuple could accept a
    /// delayed old segment (RFC 1337's "TIME-WAIT assassination" hazards H1–H3).
    /// The entry is only destroyed after the close was verified clean (both
    /// FINs exchanged and ACKed), which is what makes the risk small; with
    /// peer-first there is nothing to reap in the first place.
    ///
    /// Needs the `census` feature (on by default).
    #[cfg(feature = "census")]
    pub fn reap_time_wait(mut self, reap: bool) -> Self {
        self.reap_time_wait = reap;
        self
    }

    /// Sets the [`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto) threshold:
    /// a client address that ended more than `endings` connections with this
    /// closer in the last minute (its FIN after everything was delivered) is
    /// heavy, and its next FINs are answered with a reset, so that it keeps
    /// no TIME-WAIT ([`Ending::ResetAfterPeerFin`]). Default
    /// [`DEFAULT_HEAVY_CLIENT_THRESHOLD`](crate::DEFAULT_HEAVY_CLIENT_THRESHOLD)
    /// (500); `0` makes every client heavy, `u32::MAX` none.
    ///
    /// The count is per closer, as TIME-WAIT is per server address: a
    /// client's entries toward one server take nothing from its ports toward
    /// another.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use farewell::{Closer, Policy};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo() {
    /// // A server whose clients are many small devices, each polling every few seconds.
    /// let closer = Closer::builder(Policy::default())
    ///     .heavy_client_threshold(2_000)
    ///     .build();
    /// # let _ = closer;
    /// # }
    /// ```
    pub fn heavy_client_threshold(mut self, endings: u32) -> Self {
        self.heavy_after = endings;
        self
    }

    /// Counts client endings in `other`'s table rather than a table of its
    /// own, so that the heavy-client threshold
    /// ([`CloserBuilder::heavy_client_threshold`]) sees both closers' clients
    /// together: for a server that builds a closer per connection or per
    /// listener of one address (libfarewell builds one per descriptor, so
    /// each can be hurried alone).
    pub fn share_client_counts(mut self, other: &Closer) -> Self {
        self.recent = Some(Arc::clone(&other.inner.hurry.recent));
        self
    }

    /// Runs the teardowns on this runtime instead of the current one.
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.handle = Some(handle);
        self
    }

    /// Builds the closer.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, unless [`CloserBuilder::runtime`] was given.
    pub fn build(self) -> Closer {
        let handle = self.handle.unwrap_or_else(|| {
            Handle::try_current().expect("farewell::Closer must be built inside a tokio runtime, or given one with CloserBuilder::runtime")
        });
        Closer {
            inner: Arc::new(Inner {
                policy: self.policy,
                on_outcome: self.on_outcome,
                reap_time_wait: self.reap_time_wait,
                brief: self.brief,
                handle,
                in_flight: AtomicUsize::new(0),
                started: AtomicU64::new(0),
                by_ending: std::array::from_fn(|_| AtomicU64::new(0)),
                idle: Notify::new(),
                idle_waiters: AtomicUsize::new(0),
                hurry: Arc::new(Hurry {
                    hurried: AtomicBool::new(false),
                    now: Notify::new(),
                    recent: self.recent.unwrap_or_default(),
                    heavy_after: self.heavy_after,
                }),
            }),
        }
    }
}

impl Closer {
    /// A closer using `policy`, with no outcome hook, on the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(policy: Policy) -> Closer {
        Closer::builder(policy).build()
    }

    /// Starts configuring a closer using `policy` by default.
    pub fn builder(policy: Policy) -> CloserBuilder {
        CloserBuilder {
            policy,
            on_outcome: None,
            reap_time_wait: false,
            brief: false,
            handle: None,
            heavy_after: crate::DEFAULT_HEAVY_CLIENT_THRESHOLD,
            recent: None,
        }
    }

    /// The default policy of this closer.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// Tears `stream` down in the background with the closer's policy, after `goodbye`.
    /// Returns at once.
    pub fn close(&self, stream: impl Into<Handoff>, goodbye: impl Into<Bytes>) {
        self.close_with(stream, goodbye, self.inner.policy);
    }

    /// As [`Closer::close`], with another policy for this one connection (e.g.
    /// [`Policy::Abort`] for a peer that is shed for overload).
    pub fn close_with(
        &self,
        stream: impl Into<Handoff>,
        goodbye: impl Into<Bytes>,
        policy: Policy,
    ) {
        self.close_drained(stream.into(), goodbye.into(), policy, ());
    }

    /// As [`Closer::close_with`], but a teardown that must wait runs in the
    /// caller's own task rather than in a new one: await the returned
    /// [`Closing`].
    ///
    /// It saves what a task costs (an allocation, a scheduling round, a first
    /// poll) and keeps the teardown on the thread that served the connection,
    /// so a server that ends each connection in the task that served it
    /// (`Connection: close` churn) pays less per connection. The teardown is
    /// the same: it is counted in [`Closer::stats`] and [`Closer::in_flight`]
    /// from this call, its outcome goes to the hook, and [`Closer::hurry`]
    /// ends it.
    ///
    /// What needs no waiting runs here, as with [`Closer::close`]: when the
    /// peer's FIN is already queued the teardown ends inside this call, and
    /// the `Closing` is ready at once.
    ///
    /// Dropping the `Closing` before it is ready (say, the task is aborted)
    /// ends the teardown at once, the way a hurry does: no FIN first, and
    /// the outcome still goes to the hook.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use farewell::{Closer, Policy};
    /// use tokio::io::AsyncWriteExt;
    /// use tokio::net::TcpListener;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo() -> std::io::Result<()> {
    /// let closer = Closer::new(Policy::default());
    /// let listener = TcpListener::bind("127.0.0.1:7878").await?;
    /// loop {
    ///     let (mut stream, _) = listener.accept().await?;
    ///     let closer = closer.clone();
    ///     tokio::spawn(async move {
    ///         let _ = stream.write_all(b"hello\n").await;
    ///         // The goodbye, then the teardown, in this connection's own task.
    ///         closer.close_here(stream, &b"BYE\n"[..], Policy::default()).await;
    ///     });
    /// }
    /// # }
    /// ```
    pub fn close_here(
        &self,
        stream: impl Into<Handoff>,
        goodbye: impl Into<Bytes>,
        policy: Policy,
    ) -> Closing {
        self.close_drained_here(stream.into(), goodbye.into(), policy, ())
    }

    /// As [`Closer::close_here`], and the future also yields the
    /// [`Outcome`] (a copy of what the hook gets), for a caller that acts on
    /// how its own connection ended.
    ///
    /// The outcome is as complete as the closer's would be: without a hook
    /// (or with [`CloserBuilder::brief_outcomes`]) it is brief, the ending,
    /// TIME-WAIT side and durations exact, the addresses and the kernel's
    /// last word left out. Dropping the future before it is ready ends the
    /// teardown at once, as for [`Closer::close_here`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use farewell::{Closer, Ending, Policy};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(closer: Closer, stream: tokio::net::TcpStream) {
    /// let outcome = closer.close_here_reporting(stream, &b"BYE\n"[..], Policy::default()).await;
    /// if outcome.ending == Ending::ResetDeliveryStalled {
    ///     eprintln!("the client stopped reading before our goodbye");
    /// }
    /// # }
    /// ```
    pub fn close_here_reporting(
        &self,
        stream: impl Into<Handoff>,
        goodbye: impl Into<Bytes>,
        policy: Policy,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        let mut teardown = self.counted_teardown(stream.into(), goodbye.into(), policy, ());
        let ended = match teardown.advance(&inner.hurry) {
            Ok(finish) => Ok(teardown.conclude(finish)),
            Err(_wait) => Err(crate::teardown::drive(
                teardown,
                Arc::clone(&inner.hurry),
                Cut(Arc::clone(&inner)),
            )),
        };
        async move {
            let outcome = match ended {
                Ok(outcome) => outcome,
                Err(waiting) => waiting.await,
            };
            inner.finish_or_reap(outcome.clone());
            outcome
        }
    }

    /// As [`Closer::close_here`], with `drain` seeing the bytes the teardown
    /// discards (the TLS layer's hook, [`crate::tls`]).
    pub(crate) fn close_drained_here(
        &self,
        stream: Handoff,
        goodbye: Bytes,
        policy: Policy,
        drain: impl crate::teardown::Drain,
    ) -> Closing {
        Closing {
            teardown: self
                .start(stream, goodbye, policy, drain)
                .map(|tracked| Box::pin(tracked) as Pin<Box<dyn Future<Output = ()> + Send>>),
        }
    }

    /// As [`Closer::close_with`], with `drain` seeing the bytes the teardown
    /// discards (the TLS layer's hook, [`crate::tls`]).
    pub(crate) fn close_drained(
        &self,
        stream: Handoff,
        goodbye: Bytes,
        policy: Policy,
        drain: impl crate::teardown::Drain,
    ) {
        if let Some(tracked) = self.start(stream, goodbye, policy, drain) {
            self.inner.handle.spawn(tracked);
        }
    }

    /// Counts a teardown and runs what needs no waiting. Returns the rest, if
    /// it must wait, for the caller to spawn or await.
    fn start<D: crate::teardown::Drain>(
        &self,
        stream: Handoff,
        goodbye: Bytes,
        policy: Policy,
        drain: D,
    ) -> Option<Tracked<impl Future<Output = Outcome> + Send + 'static>> {
        let inner = &self.inner;
        let mut teardown = self.counted_teardown(stream, goodbye, policy, drain);
        // Run what needs no waiting here: a teardown whose peer's FIN is
        // already queued ends now, without a task or a timer. The rest goes
        // on in a task, from the wait it reached.
        match teardown.advance(&inner.hurry) {
            Ok(finish) => {
                Arc::clone(inner).finish_or_reap(teardown.conclude(finish));
                None
            }
            Err(_wait) => Some(Tracked {
                teardown: crate::teardown::drive(
                    teardown,
                    Arc::clone(&inner.hurry),
                    Cut(Arc::clone(inner)),
                ),
                inner: Some(Arc::clone(inner)),
            }),
        }
    }

    /// Counts a teardown in flight and sets it up.
    fn counted_teardown<D: crate::teardown::Drain>(
        &self,
        stream: Handoff,
        goodbye: Bytes,
        policy: Policy,
        drain: D,
    ) -> Teardown<D> {
        let inner = &self.inner;
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        inner.started.fetch_add(1, Ordering::Relaxed);
        // The addresses and the kernel's last word cost syscalls; ask only
        // when something will read more than the ending.
        let report = if (inner.on_outcome.is_some() && !inner.brief)
            || inner.reap_time_wait
            || tracing::enabled!(tracing::Level::DEBUG)
        {
            Report::Full
        } else {
            Report::EndingOnly
        };
        let mut teardown =
            Teardown::new(stream.stream, stream.peer, policy, goodbye, report, drain);
        if stream.fin_read {
            teardown.peer_fin_read();
        }
        teardown
    }

    /// The runtime the teardowns run on.
    #[cfg(feature = "rustls")]
    pub(crate) fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// Ends every teardown in flight on this closer now, and every one handed
    /// over later, by the shortest safe way: a hard deadline, e.g. a server's
    /// drain limit. Returns at once; await [`Closer::idle`] for the ends.
    ///
    /// Each hurried teardown, whatever its policy and wherever it is:
    ///
    /// * if the peer's FIN was read (or is queued with nothing before it,
    ///   `CLOSE-WAIT`), closes passively, as it would have: the peer keeps
    ///   TIME-WAIT ([`Ending::PeerClosed`], or [`Ending::LingeringClose`] after
    ///   our own FIN, which already left TIME-WAIT with us);
    /// * otherwise makes one non-blocking attempt to write what is left of the
    ///   goodbye, asks the kernel once whether it was ACKed (`SIOCOUTQ` = 0),
    ///   and resets: on the wire, at most the rest of the goodbye, then RST. No
    ///   TIME-WAIT anywhere, nothing waits for the peer
    ///   ([`Ending::ResetAtDeadline`]; [`Outcome::goodbye`] says whether the
    ///   goodbye was confirmed delivered).
    ///
    /// A teardown handed over after the hurry still asks the kernel for the
    /// connection's state first, so one that is not established ends as
    /// [`Ending::NotEstablished`]. Shutting the runtime down with teardowns
    /// pending cuts each the same way as its task is dropped (and reports
    /// it), rather than closing the socket plainly with our FIN first.
    ///
    /// # Notes
    ///
    /// The hurry is for good: there is no way to take it back on this closer
    /// (or its clones). Build another closer for new connections.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use farewell::Closer;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(closer: Closer) {
    /// // At shutdown: give the teardowns 5 s, then end the rest now.
    /// if tokio::time::timeout(Duration::from_secs(5), closer.idle()).await.is_err() {
    ///     closer.hurry();
    ///     let _ = tokio::time::timeout(Duration::from_secs(1), closer.idle()).await;
    /// }
    /// println!("{}", closer.stats()); // e.g. `0 in flight, 9 finished (peer-closed 7, reset-at-deadline 2)`
    /// # }
    /// ```
    pub fn hurry(&self) {
        let hurry = &self.inner.hurry;
        if !hurry.hurried.swap(true, Ordering::AcqRel) {
            hurry.now.notify_waiters();
        }
    }

    /// The heavy-client choice for a peer whose FIN came once everything we
    /// wrote was ACKed, for a caller that ends such a connection itself
    /// instead of handing it over: records one ending from `peer` in this
    /// closer's table of recent endings (shared with its teardowns and with
    /// [`CloserBuilder::share_client_counts`]) and says what peer-first's
    /// [`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto) would do:
    /// [`PeerFinChoice::Heavy`] (answer the FIN with a reset, so neither side
    /// keeps TIME-WAIT) or [`PeerFinChoice::Light`] (the passive close).
    ///
    /// The Node.js addon calls it on its fast path: a client that closes
    /// right after a `Connection: close` response is finished on Node's own
    /// loop, without a hand-over. It is not a teardown of this closer: its
    /// [`stats`](Closer::stats) do not count it.
    ///
    /// # Examples
    ///
    /// ```
    /// use farewell::{Closer, PeerFinChoice, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let closer = Closer::builder(Policy::default())
    ///     .heavy_client_threshold(2)
    ///     .build();
    /// let client = "10.0.0.7".parse().unwrap();
    /// assert!(matches!(closer.peer_fin_choice(client), PeerFinChoice::Light { recent: 1 }));
    /// assert!(matches!(closer.peer_fin_choice(client), PeerFinChoice::Light { recent: 2 }));
    /// assert!(matches!(closer.peer_fin_choice(client), PeerFinChoice::Heavy { recent: 3 }));
    /// # }
    /// ```
    pub fn peer_fin_choice(&self, peer: std::net::IpAddr) -> PeerFinChoice {
        self.inner
            .hurry
            .classify(Some(peer), std::time::Instant::now())
    }

    /// The endings from `peer` this closer's table counts in the last minute
    /// (see [`CloserBuilder::heavy_client_threshold`]), without recording
    /// one: past the threshold, a peer-first teardown with
    /// [`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto) answers the peer's
    /// FIN with a reset. For an adapter that does work only for connections
    /// that may end that way (farewell-http asks the kernel, before each
    /// response to a client near the threshold, whether its FIN came first).
    /// Addresses share a table slot now and then: the count is never lower
    /// than the peer's own.
    ///
    /// # Examples
    ///
    /// ```
    /// use farewell::{Closer, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let closer = Closer::builder(Policy::default())
    ///     .heavy_client_threshold(2)
    ///     .build();
    /// let client = "10.0.0.7".parse().unwrap();
    /// assert_eq!(closer.recent_endings(client), 0);
    /// closer.peer_fin_choice(client);
    /// assert_eq!(closer.recent_endings(client), 1);
    /// assert_eq!(closer.heavy_client_threshold(), 2);
    /// # }
    /// ```
    pub fn recent_endings(&self, peer: std::net::IpAddr) -> u32 {
        self.inner
            .hurry
            .recent
            .peek(peer, std::time::Instant::now())
    }

    /// The heavy-client threshold: endings from one address in the last
    /// minute past which [`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto)
    /// resets after the peer's FIN ([`CloserBuilder::heavy_client_threshold`]).
    pub fn heavy_client_threshold(&self) -> u32 {
        self.inner.hurry.heavy_after
    }

    /// Teardowns handed over and not finished yet.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// A snapshot of the running counts.
    pub fn stats(&self) -> CloserStats {
        CloserStats {
            in_flight: self.in_flight(),
            started: self.inner.started.load(Ordering::Relaxed),
            by_ending: Ending::ALL
                .iter()
                .zip(&self.inner.by_ending)
                .map(|(&path, n)| (path, n.load(Ordering::Relaxed)))
                .filter(|&(_, n)| n > 0)
                .collect(),
        }
    }

    /// Waits until no teardown is in flight.
    pub async fn idle(&self) {
        /// Counts this caller among the waiters while it waits (a drop,
        /// say a timeout around it, included).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // Counted before the look at `in_flight`, each SeqCst: a teardown
        // that ends the last one after this look sees the waiter and wakes
        // it; one that ended before, the look sees (see `Inner::finish`).
        self.inner.idle_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.inner.idle_waiters);
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

pin_project! {
    /// A teardown and the closer that counts it. A hand-written future rather
    /// than an `async` block, which would keep a second copy of the stream,
    /// goodbye and policy beside the teardown for its whole life.
    struct Tracked<F> {
        #[pin]
        teardown: F,
        inner: Option<Arc<Inner>>,
    }
}

impl<F: Future<Output = Outcome>> Future for Tracked<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let outcome = std::task::ready!(this.teardown.poll(cx));
        let inner = this.inner.take().expect("Tracked polled after completion");
        inner.finish_or_reap(outcome);
        Poll::Ready(())
    }
}

/// A dropped teardown of a closer's (its task aborted, its runtime shut
/// down, its [`Closing`] dropped) ends at once, hurried, and is counted and
/// reported like any other.
struct Cut(Arc<Inner>);

impl crate::teardown::Unfinished for Cut {
    fn dropped<D: crate::teardown::Drain>(&mut self, t: crate::teardown::Teardown<D>) {
        Arc::clone(&self.0).finish_or_reap(t.cut());
    }
}

/// A teardown started by [`Closer::close_here`], run by awaiting it in the
/// caller's own task.
///
/// Ready once the teardown has ended (its outcome went to the closer's hook).
/// Dropping it before that ends the teardown at once, as [`Closer::hurry`]
/// would.
#[must_use = "a Closing does nothing unless awaited; dropping it ends the teardown at once"]
pub struct Closing {
    teardown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Closing {
    /// The teardown has ended: it needed no waiting, or it was awaited to the end.
    pub fn is_finished(&self) -> bool {
        self.teardown.is_none()
    }
}

impl Future for Closing {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(teardown) = &mut self.teardown {
            std::task::ready!(teardown.as_mut().poll(cx));
            self.teardown = None;
        }
        Poll::Ready(())
    }
}

impl fmt::Debug for Closing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closing")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl Inner {
    /// Counts and reports a finished teardown, after reaping its TIME-WAIT
    /// entry when asked to.
    fn finish_or_reap(self: Arc<Self>, outcome: Outcome) {
        if self.reap_time_wait && outcome.time_wait == TimeWait::Us {
            // Rare (only policies that leave TIME-WAIT to us), so it gets its
            // own task rather than making every teardown bigger.
            self.handle.clone().spawn(async move {
                let mut outcome = outcome;
                outcome.reaped = reap(&outcome).await;
                self.finish(outcome);
            });
        } else {
            self.finish(outcome);
        }
    }

    fn finish(&self, outcome: Outcome) {
        let index = Ending::ALL
            .iter()
            .position(|&p| p == outcome.ending)
            .expect("every path is in Ending::ALL");
        self.by_ending[index].fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.on_outcome {
            hook(outcome);
        }
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.idle_waiters.load(Ordering::SeqCst) > 0
        {
            self.idle.notify_waiters();
        }
    }
}

/// Destroys our TIME-WAIT entry for the outcome's 4-tuple, after checking the
/// kernel really has one there. Returns whether it was destroyed.
#[cfg(feature = "census")]
async fn reap(outcome: &Outcome) -> bool {
    let (Some(local), Some(peer)) = (outcome.local, outcome.peer) else {
        return false;
    };
    let result = tokio::task::spawn_blocking(move || match crate::census::lookup(local, peer)? {
        Some(entry) if entry.state == crate::TcpState::TimeWait => {
            crate::census::destroy(&entry).map(|()| true)
        }
        _ => Ok(false),
    })
    .await;
    match result {
        Ok(Ok(reaped)) => reaped,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %local, %peer, "could not reap the TIME-WAIT entry");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "reap task failed");
            false
        }
    }
}

/// Without the census nothing can be reaped (and `reap_time_wait` cannot be set).
#[cfg(not(feature = "census"))]
async fn reap(_: &Outcome) -> bool {
    false
}

/// Running counts of a [`Closer`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloserStats {
    /// Teardowns handed over and not finished yet.
    pub in_flight: usize,
    /// Teardowns handed over since the closer was built.
    pub started: u64,
    /// Finished teardowns by path (paths never taken are left out).
    pub by_ending: Vec<(Ending, u64)>,
}

impl CloserStats {
    /// Finished teardowns.
    pub fn finished(&self) -> u64 {
        self.by_ending.iter().map(|&(_, n)| n).sum()
    }

    /// Finished teardowns that took `path`.
    pub fn count(&self, path: Ending) -> u64 {
        self.by_ending
            .iter()
            .find(|&&(p, _)| p == path)
            .map_or(0, |&(_, n)| n)
    }
}

impl fmt::Display for CloserStats {
    /// One line: `12 in flight, 340 finished (peer-closed 300, reset-after-grace 40)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in flight, {} finished",
            self.in_flight,
            self.finished()
        )?;
        if !self.by_ending.is_empty() {
            let parts: Vec<String> = self
                .by_ending
                .iter()
                .map(|(path, n)| format!("{path} {n}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}
