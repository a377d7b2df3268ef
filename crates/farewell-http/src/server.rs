//! The accept loop, the settings, each connection's task (hyper serving it
//! until it ends or the server stops it), graceful shutdown and its report.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use farewell::accept::{self, AcceptBackoff};
use farewell::{Closer, CloserStats, Outcome, PeerFirst, Policy};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::conn::{ConnState, Delimited, Handover, Shared};
use crate::decide;
use crate::io::TeardownIo;
use crate::record::{Cause, CauseCounts, ConnectionHook, ConnectionOutcome, Connections};
use crate::service::Counted;

type OutcomeHook = Arc<dyn Fn(Outcome) + Send + Sync>;

/// The default drain limit of [`Server`]'s peer-first policy: 2 MiB, so the
/// unread body of a request answered early (a 413 for a 1 MB upload) is read
/// and discarded instead of being met with a reset (RFC 9112 §9.6).
pub const DEFAULT_DRAIN_LIMIT: u64 = 2 * 1024 * 1024;

/// The default TLS handshake deadline of [`Server`]: 10 s, the order of
/// nginx's `ssl_handshake_timeout` (60 s) cut for a connection that has sent
/// nothing useful yet; a stalled handshake holds a descriptor and memory.
#[cfg(feature = "rustls")]
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client over [`Server::max_connections`] is sent (plain TCP only)
/// before the reset: one non-blocking write, see [`farewell::accept::shed_with`].
const SHED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 12\r\nconnection: close\r\nretry-after: 1\r\n\r\nserver busy\n";

/// The longest pause of [`Server`]'s accept loop after accept errors (out of
/// descriptors or memory): 1 s. See [`farewell::accept::AcceptBackoff`].
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// An HTTP/1.1 and HTTP/2 server (hyper 1.x, via hyper-util) that ends
/// connections with a farewell [`Policy`].
///
/// See the [crate docs](crate) for what goes on the wire. Build one with
/// [`Server::new`] and the setters, then run it with [`Server::serve`] (a tower
/// service, e.g. an axum `Router`) or [`Server::serve_hyper`] (a hyper
/// service). Both stop accepting when the `shutdown` future completes, end every
/// connection gracefully, and return a [`ServeReport`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use farewell_http::Server;
///
/// # #[allow(dead_code)]
/// # async fn demo(app: axum::Router) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let report = Server::new()
///     .idle_timeout(Duration::from_secs(30))
///     .max_requests_per_connection(Some(1000))
///     .serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// eprintln!("{report}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    policy: Policy,
    idle_timeout: Duration,
    max_requests: Option<u64>,
    shutdown_timeout: Duration,
    max_connections: usize,
    on_outcome: Option<OutcomeHook>,
    on_connection: Option<ConnectionHook>,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<farewell::tls::rustls::ServerConfig>>,
    #[cfg(feature = "rustls")]
    tls_handshake_timeout: Duration,
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("policy", &self.policy)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_requests", &self.max_requests)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.is_tls())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with the defaults: peer-first (deliver the last response while
    /// the client keeps ACKing it, 15 s stall timeout, 60 s cap; then 2 s
    /// grace; [`DEFAULT_DRAIN_LIMIT`]), 60 s keep-alive idle timeout, no request limit,
    /// 10 s shutdown timeout, a connection limit that fits the descriptor limit
    /// ([`farewell::accept::default_max_connections`]).
    pub fn new() -> Server {
        Server {
            policy: Policy::PeerFirst(PeerFirst {
                drain_limit: DEFAULT_DRAIN_LIMIT,
                ..PeerFirst::default()
            }),
            idle_timeout: Duration::from_secs(60),
            max_requests: None,
            shutdown_timeout: Duration::from_secs(10),
            max_connections: farewell::accept::default_max_connections(),
            on_outcome: None,
            on_connection: None,
            #[cfg(feature = "rustls")]
            tls: None,
            #[cfg(feature = "rustls")]
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }

    /// Whether connections are served over TLS ([`Server::tls`]).
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "rustls")]
        return self.tls.is_some();
        #[cfg(not(feature = "rustls"))]
        false
    }

    /// Serves every connection over TLS with this rustls configuration
    /// (HTTP/1.1 and h2 alike).
    ///
    /// When `config` offers no ALPN protocols, the server offers `h2` and
    /// `http/1.1`; a configuration that names its own is used as it is.
    ///
    /// A connection ends as over TCP, inside TLS: the last response, then
    /// `close_notify` with **no FIN** (tokio-rustls's own `shutdown()` sends
    /// both, which leaves TIME-WAIT on the server), then the policy on the
    /// TCP stream: under peer-first the client closes first, or is reset once
    /// everything, `close_notify` included, is ACKed. The outcome's
    /// [`peer_close_notify`](farewell::Outcome::peer_close_notify) says whether
    /// the client's own `close_notify` came. A handshake that fails (rustls
    /// writes its alert) or outlasts [`Server::tls_handshake_timeout`] ends
    /// with the policy too, and is counted in
    /// [`ServeReport::tls_handshakes_failed`].
    ///
    /// Needs the `rustls` feature.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use farewell_http::{rustls, Server};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(app: axum::Router, config: rustls::ServerConfig) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// let report = Server::new()
    ///     .tls(Arc::new(config))
    ///     .serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
    ///     .await?;
    /// eprintln!("{report}");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, config: Arc<farewell::tls::rustls::ServerConfig>) -> Server {
        let config = if config.alpn_protocols.is_empty() {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(config)
        } else {
            config
        };
        self.tls = Some(config);
        self
    }

    /// How long a client has to complete the TLS handshake (default
    /// [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`], 10 s). A client that does not is
    /// ended with the policy: no FIN from the server, so no TIME-WAIT on it.
    ///
    /// Needs the `rustls` feature.
    #[cfg(feature = "rustls")]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Server {
        self.tls_handshake_timeout = timeout.min(farewell::policy::MAX_WAIT);
        self
    }

    /// The teardown policy for connections that end after a response (or when the client closes).
    ///
    /// With [`Policy::PeerFirst`], connections closed with nothing left to say
    /// (idle HTTP/1.1 keep-alive, laggards at shutdown) use the same policy with
    /// a zero grace: reset once everything written is ACKed. Other policies are
    /// used as they are for every connection.
    pub fn policy(mut self, policy: Policy) -> Server {
        self.policy = policy;
        self
    }

    /// How long a connection may sit with no request in flight and no bytes
    /// moving before the server ends it (default 60 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Server {
        self.idle_timeout = idle.min(farewell::policy::MAX_WAIT);
        self
    }

    /// After this many requests on one connection, the last response carries
    /// `Connection: close` (HTTP/1.1) or the connection gets a GOAWAY (h2).
    /// `None` (the default): no limit.
    pub fn max_requests_per_connection(mut self, max: Option<u64>) -> Server {
        self.max_requests = max.map(|m| m.max(1));
        self
    }

    /// At shutdown, how long connections have to finish before the laggards are
    /// reset (after their written bytes are ACKed, within the policy's bound). Default 10 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Server {
        self.shutdown_timeout = timeout.min(farewell::policy::MAX_WAIT);
        self
    }

    /// How many connections are served at once (at least 1); a connection
    /// accepted beyond that is shed at once and counted in
    /// [`ServeReport::shed`]: one non-blocking write of a `503 Service
    /// Unavailable` (`retry-after: 1`; not under TLS), then a reset
    /// ([`farewell::accept::shed_with`]): no task, no TIME-WAIT on either
    /// side. The client reads the `503` and then the reset, or only the reset
    /// (when it came before its `connect()` returned), right away.
    ///
    /// The default, [`farewell::accept::default_max_connections`], is half of
    /// what the descriptor limit (`ulimit -n`) leaves after a small reserve,
    /// at most 10,000: the other half is for teardowns in flight, so the
    /// limit is reached, and the surplus shed, before `accept()` runs out of
    /// descriptors and new clients wait unanswered in the listen backlog. A
    /// connection counts from accept until its task ends (a TLS handshake
    /// included); its teardown afterwards does not count.
    ///
    /// # Examples
    ///
    /// ```
    /// use farewell_http::Server;
    ///
    /// // A small side endpoint (metrics, health) must not hold many descriptors.
    /// let server = Server::new().max_connections(16);
    /// # let _ = server;
    /// ```
    pub fn max_connections(mut self, max: usize) -> Server {
        self.max_connections = max.max(1);
        self
    }

    /// Calls `hook` with every connection's teardown [`Outcome`], on a runtime
    /// thread. Keep it short (bump a metric, send to a channel).
    pub fn on_outcome(mut self, hook: impl Fn(Outcome) + Send + Sync + 'static) -> Server {
        self.on_outcome = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` with every HTTP connection's end, on a runtime thread: its
    /// [`Cause`] (client asked, request limit, idle, shutdown, upgrade,
    /// error, ...), the requests it served, whether its last response was
    /// delivered (ACKed by the client's kernel), and the teardown's
    /// [`Outcome`]. Works along with [`Server::on_outcome`], which sees every
    /// teardown (a failed TLS handshake too). Keep it short.
    pub fn on_connection(
        mut self,
        hook: impl Fn(ConnectionOutcome) + Send + Sync + 'static,
    ) -> Server {
        self.on_connection = Some(Arc::new(hook));
        self
    }

    /// Serves a tower service (an axum `Router`, say) on `listener` until
    /// `shutdown` completes, then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// None today: accept errors are retried; those of the process (out of
    /// descriptors or memory) after a pause that grows up to
    /// [`MAX_ACCEPT_BACKOFF`] while the open connections are served, logged
    /// once per burst ([`farewell::accept::AcceptBackoff`]). The `Result`
    /// leaves room for setup errors.
    pub async fn serve<S, B>(
        self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<ServeReport>
    where
        S: tower_service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        self.serve_hyper(listener, TowerToHyperService::new(service), shutdown)
            .await
    }

    /// Serves a hyper service (e.g. `hyper::service::service_fn(..)`) on
    /// `listener` until `shutdown` completes, then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// As [`Server::serve`].
    pub async fn serve_hyper<S, B>(
        self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<ServeReport>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let mut closer = Closer::builder(self.policy);
        let close_notify = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(Connections::new(self.on_connection.clone()));
        let tls = self.is_tls();
        if tls || self.on_outcome.is_some() || self.on_connection.is_some() {
            let hook = self.on_outcome.clone();
            let counted = Arc::clone(&close_notify);
            let joined = Arc::clone(&ended);
            closer = closer.on_outcome(move |outcome| {
                if tls && outcome.peer_close_notify == Some(true) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                joined.teardown_ended(&outcome);
                if let Some(hook) = &hook {
                    hook(outcome);
                }
            });
        }
        #[cfg(feature = "rustls")]
        let tls = self.tls.clone().map(|config| {
            (
                farewell::tls::tokio_rustls::TlsAcceptor::from(config),
                self.tls_handshake_timeout,
            )
        });
        let shared = Arc::new(Shared {
            closer: closer.build(),
            policy: self.policy,
            quiet_policy: match self.policy {
                Policy::PeerFirst(p) => Policy::PeerFirst(PeerFirst {
                    grace: Duration::ZERO,
                    ..p
                }),
                other => other,
            },
            idle_timeout: self.idle_timeout,
            max_requests: self.max_requests,
            forcing: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            tls_handshakes_failed: AtomicU64::new(0),
            delimited: Delimited::default(),
            causes: CauseCounts::default(),
            ended,
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // A client may send its requests and then its FIN (`shutdown(SHUT_WR)`,
        // `nc -N`) and wait for the answers: RFC 9112 §9.6. Without half-close,
        // hyper takes the EOF for "the client is gone" and drops the request in
        // flight. With it, hyper answers every request read before the FIN,
        // then ends the connection; the teardown finds the FIN already in
        // (peer-closed: the client keeps TIME-WAIT).
        builder.http1().half_close(true);
        let builder = Arc::new(builder);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();

        // A plaintext 503 means nothing to a TLS client: reset it only.
        let shed_response: &[u8] = if self.is_tls() { &[] } else { SHED_RESPONSE };
        let mut backoff = AcceptBackoff::new(MAX_ACCEPT_BACKOFF);
        let mut shed = 0u64;
        let mut accept_errors = 0u64;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = backoff.wait() => {}
                accepted = listener.accept(), if !backoff.pausing() => match accepted {
                    Ok((stream, _)) => {
                        backoff.recovered();
                        // Tasks that ended but were not joined yet free their slot now.
                        while tasks.try_join_next().is_some() {}
                        if tasks.len() >= self.max_connections {
                            // Over the limit: a 503 if it fits at once, then
                            // one RST; no task, no TIME-WAIT.
                            accept::shed_with(stream, shed_response);
                            shed += 1;
                            continue;
                        }
                        // Responses are written whole; do not let Nagle hold their tails.
                        let _ = stream.set_nodelay(true);
                        shared.connections.fetch_add(1, Ordering::Relaxed);
                        #[cfg(feature = "rustls")]
                        if let Some((acceptor, timeout)) = &tls {
                            tasks.spawn(serve_tls_connection(
                                acceptor.clone(),
                                *timeout,
                                Arc::clone(&builder),
                                stream,
                                service.clone(),
                                Arc::clone(&shared),
                                stop_rx.clone(),
                            ));
                            continue;
                        }
                        tasks.spawn(serve_connection(
                            Arc::clone(&builder),
                            stream,
                            service.clone(),
                            Arc::clone(&shared),
                            stop_rx.clone(),
                        ));
                    }
                    Err(e) if accept::is_per_connection(&e) => {
                        tracing::debug!(error = %e, "a connection failed before accept");
                    }
                    Err(e) => {
                        accept_errors += 1;
                        backoff.failed(&e);
                        // Out of descriptors all the same: clients waiting in
                        // the backlog get a reset now, not a wait.
                        shed += backoff.shed_pending(&listener, shed_response);
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }

        drop(listener);
        tracing::debug!(connections = tasks.len(), "shutting down");
        let _ = stop_tx.send(true);
        let deadline = tokio::time::sleep(self.shutdown_timeout);
        tokio::pin!(deadline);
        let mut forced = 0;
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { break },
                () = &mut deadline => {
                    forced = tasks.len();
                    shared.forcing.store(true, Ordering::Relaxed);
                    // Dropping each connection drops its IO, which hands the
                    // socket to the closer with the quiet (confirmed reset) policy.
                    tasks.shutdown().await;
                    break;
                }
            }
        }
        shared.delimited.idle().await;
        shared.closer.idle().await;
        Ok(ServeReport {
            connections: shared.connections.load(Ordering::Relaxed),
            requests: shared.requests.load(Ordering::Relaxed),
            forced,
            teardowns: shared.closer.stats(),
            tls: self.is_tls(),
            tls_handshakes_failed: shared.tls_handshakes_failed.load(Ordering::Relaxed),
            peer_close_notify: close_notify.load(Ordering::Relaxed),
            close_delimited: shared.delimited.delivered.load(Ordering::Relaxed),
            close_delimited_undelivered: shared.delimited.reset_undelivered.load(Ordering::Relaxed),
            causes: shared.causes.snapshot(),
            shed,
            accept_errors,
        })
    }
}

/// Completes the TLS handshake (bounded), then serves the connection as
/// [`serve_connection`] does. A handshake that fails, times out or is
/// dropped (shutdown) hands the TCP stream to the closer.
#[cfg(feature = "rustls")]
async fn serve_tls_connection<S, B>(
    acceptor: farewell::tls::tokio_rustls::TlsAcceptor,
    timeout: Duration,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: tokio::net::TcpStream,
    service: S,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let accepted = shared
        .closer
        .accept_tls(&acceptor, stream, timeout, shared.policy)
        .await;
    match accepted {
        Some(stream) => serve_connection(builder, stream, service, shared, stop).await,
        None => {
            shared.tls_handshakes_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Serves one accepted connection until it ends, then lets the IO's drop hand
/// the socket to the closer.
pub(crate) async fn serve_connection<S, B>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: impl Handover,
    service: S,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let state = Arc::new(ConnState::new(shared));
    let idle = state.shared.idle_timeout;
    let io = TokioIo::new(TeardownIo::new(stream, Arc::clone(&state)));
    let conn =
        builder.serve_connection_with_upgrades(io, Counted::new(service, Arc::clone(&state)));
    tokio::pin!(conn);

    // The three things that can end a connection besides hyper itself, each
    // created once: re-creating them per wakeup would register and deregister a
    // timer and two waiters every time the connection's task runs.
    let stopped = stop.wait_for(|stop| *stop);
    let limit_reached = state.limit_reached.notified();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(stopped, limit_reached, idle_timer);

    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                    state.cause.set(Cause::Error);
                }
                break;
            }
            _ = stopped.as_mut(), if !closing => {
                state.cause.set(Cause::Shutdown);
                // Server shutdown: in-flight responses finish with `Connection: close`
                // (or h2 GOAWAY); idle HTTP/1.1 connections end at once.
                state.closing_quietly();
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = limit_reached.as_mut(), if !closing => {
                // HTTP/1.1 responses already carry `Connection: close` (see
                // `Counted`); for h2 this sends GOAWAY.
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle_timer.as_mut(), if !closing => {
                match state.idle_check(idle, Instant::now()) {
                    decide::Idle::CheckAt(next) => idle_timer.as_mut().reset(next.into()),
                    decide::Idle::Expired => {
                        state.cause.set(Cause::Idle);
                        state.closing_quietly();
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// Serves `service` (an axum `Router` or any tower service) on `listener` with
/// the default [`Server`] until the process ends: a drop-in for `axum::serve`.
///
/// # Errors
///
/// As [`Server::serve`].
///
/// # Examples
///
/// ```no_run
/// use axum::{routing::get, Router};
///
/// # #[allow(dead_code)]
/// # async fn demo() -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// // was: axum::serve(listener, app).await?;
/// farewell_http::serve(listener, app).await?;
/// # Ok(()) }
/// ```
pub async fn serve<S, B>(listener: TcpListener, service: S) -> io::Result<()>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    Server::new()
        .serve(listener, service, std::future::pending::<()>())
        .await
        .map(|_| ())
}

/// What a server did, returned when it has shut down.
///
/// `Display` gives one line:
/// `42 connections, 1234 requests, 0 forced at shutdown; teardowns: 0 in flight, 42 finished (peer-closed 40, reset-after-grace 2)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeReport {
    /// Connections accepted.
    pub connections: u64,
    /// Requests handed to the service.
    pub requests: u64,
    /// Connections still open when the shutdown timeout passed; they were reset
    /// once their written bytes were ACKed (or the policy's bound ended).
    pub forced: usize,
    /// Every teardown, counted by [`farewell::Ending`].
    pub teardowns: CloserStats,
    /// The server served TLS ([`Server::tls`]).
    pub tls: bool,
    /// TLS handshakes that failed or timed out (each ended with the policy).
    pub tls_handshakes_failed: u64,
    /// TLS connections whose client sent its own `close_notify` before the
    /// connection ended.
    pub peer_close_notify: u64,
    /// Connections (over TCP, under peer-first) whose last response had a
    /// close-delimited body (HTTP/1.0, length unknown): only the server's FIN
    /// ends it. Each was delivered (every byte ACKed), then closed with a FIN
    /// that the kernel follows with an RST once it is ACKed
    /// ([`farewell::sys::close_reset_on_fin_ack`]): the client reads the whole
    /// body and the end of file, and nobody keeps TIME-WAIT. These teardowns are not in
    /// [`ServeReport::teardowns`] and produce no [`Outcome`].
    pub close_delimited: u64,
    /// Close-delimited responses whose delivery stalled or failed: reset
    /// without a FIN (the client sees a reset, not the end of the body).
    pub close_delimited_undelivered: u64,
    /// Connections by why they ended ([`Cause`]), the causes with none left
    /// out, in [`Cause::ALL`] order.
    pub causes: Vec<(Cause, u64)>,
    /// Connections accepted over [`Server::max_connections`], or while the
    /// process was out of descriptors
    /// ([`AcceptBackoff::shed_pending`](farewell::accept::AcceptBackoff::shed_pending)),
    /// and shed at once with a reset (not in [`ServeReport::connections`]).
    pub shed: u64,
    /// Failed `accept()` calls that paused the accept loop (out of
    /// descriptors or memory).
    pub accept_errors: u64,
}

impl fmt::Display for ServeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections, {} requests, {} forced at shutdown; teardowns: {}",
            self.connections, self.requests, self.forced, self.teardowns
        )?;
        if !self.causes.is_empty() {
            write!(f, "; ended by")?;
            for (i, (cause, n)) in self.causes.iter().enumerate() {
                write!(f, "{} {cause} {n}", if i == 0 { ":" } else { "," })?;
            }
        }
        if self.tls {
            write!(
                f,
                "; TLS: {} handshakes failed, close_notify from {} clients",
                self.tls_handshakes_failed, self.peer_close_notify
            )?;
        }
        if self.shed + self.accept_errors > 0 {
            write!(
                f,
                "; accept: {} shed (reset at once), {} failed (paused)",
                self.shed, self.accept_errors
            )?;
        }
        if self.close_delimited + self.close_delimited_undelivered > 0 {
            write!(
                f,
                "; close-delimited: {} ended by FIN (reset on its ACK), {} reset undelivered",
                self.close_delimited, self.close_delimited_undelivered
            )?;
        }
        Ok(())
    }
}
