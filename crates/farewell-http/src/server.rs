//! The accept loop, the settings, each connection's task (hyper serving it
//! until it ends or the server stops it), graceful shutdown and its report.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use farewell::accept::{self, AcceptBackoff};
use farewell::{Closer, CloserStats, Outcome, PeerFirst, PeerTimeWait, Policy};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::task::coop::unconstrained;
use tokio::task::JoinSet;

use crate::conn::{ConnState, Delimited, Handover, Shared};
use crate::decide;
use crate::io::TeardownIo;
use crate::metrics;
use crate::record::{Cause, CauseCounts, ConnectionHook, ConnectionOutcome, Connections};
use crate::serve::{BoxError, Listener, MakeConnectionService};
use crate::service::Counted;
use crate::shutdown::Shutdown;
use crate::upgrade::{self, Upgrades};

type OutcomeHook = Arc<dyn Fn(Outcome) + Send + Sync>;

/// The default drain limit of [`Server`]'s peer-first policy: 2 MiB, eight
/// times the core's [`farewell::policy::DEFAULT_DRAIN_LIMIT`] (256 KiB).
///
/// It differs because an HTTP server answers early: a 413 to a 1 MB upload,
/// a 401 before the body, leaves the unread body in flight. Under the
/// core's limit that body would get the client a reset before it reads the
/// answer; read and discarded, the client reads it (RFC 9112 §9.6). A
/// [`Server::policy`] given the core's default gets this one instead;
/// [`Server::drain_limit`] sets any other.
pub const DEFAULT_DRAIN_LIMIT: u64 = 2 * 1024 * 1024;

/// The default idle bound of an upgraded connection (a WebSocket): 300 s
/// with no byte moving either way. See [`Server::upgrade_idle_timeout`].
pub const DEFAULT_UPGRADE_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// At a forced shutdown, how long the handlers of cut upgraded connections
/// have to notice (their next read or write fails) and drop their streams.
const CUT_HANDLERS_WAIT: Duration = Duration::from_secs(1);

/// The default TLS handshake deadline of [`Server`]: 10 s, the order of
/// nginx's `ssl_handshake_timeout` (60 s) cut for a connection that has sent
/// nothing useful yet; a stalled handshake holds a descriptor and memory.
#[cfg(feature = "rustls")]
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default [`Server::header_read_timeout`]: 30 s, hyper's own default
/// for `header_read_timeout` and half of nginx's `client_header_timeout`
/// (60 s). A real client sends a request head in one round trip; a slowloris
/// holds a descriptor and a task for as long as this.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`Server::body_read_timeout`]: 60 s between two reads of a
/// request body, as nginx's `client_body_timeout`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The default [`Server::send_timeout`]: 60 s with no progress at all in
/// sending a response, as nginx's `send_timeout` (which counts between two
/// writes; this one counts any ACK from the client's kernel as progress, so
/// a slow reader is never cut). The teardown's own stall bound
/// ([`farewell::PeerFirst::stall_timeout`], 15 s) then covers the last response.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The default [`Server::max_buf_size`]: 64 KiB, hyper's HTTP/1.1 read and
/// write buffer bound (hyper's default is about 400 KiB). A request head
/// must fit in it (nginx's `large_client_header_buffers` allows 4 × 8 KiB);
/// a larger one gets `431`.
pub const DEFAULT_MAX_BUF_SIZE: usize = 64 * 1024;

/// The default [`Server::h2_max_concurrent_streams`]: 100 (hyper: 200;
/// nginx `http2_max_concurrent_streams`: 128; RFC 9113 §6.5.2 recommends no
/// fewer than 100).
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// The default [`Server::h2_max_send_buf_size`]: 64 KiB per stream (hyper:
/// 400 KiB). With [`DEFAULT_H2_MAX_CONCURRENT_STREAMS`] that bounds what one
/// h2 connection buffers for a client that grants no window to 6.4 MiB.
pub const DEFAULT_H2_MAX_SEND_BUF_SIZE: usize = 64 * 1024;

/// The default [`Server::h2_max_header_list_size`]: 16 KiB, hyper's default.
pub const DEFAULT_H2_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
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
    hyper: auto::Builder<TokioExecutor>,
    nodelay: bool,
    metrics: bool,
    idle_timeout: Duration,
    upgrade_idle_timeout: Duration,
    max_requests: Option<u64>,
    shutdown_timeout: Duration,
    max_connections: usize,
    heavy_client_threshold: u32,
    on_outcome: Option<OutcomeHook>,
    on_connection: Option<ConnectionHook>,
    header_read_timeout: Option<Duration>,
    body_read_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
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
            .field("upgrade_idle_timeout", &self.upgrade_idle_timeout)
            .field("max_requests", &self.max_requests)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.is_tls())
            .field("nodelay", &self.nodelay)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with the defaults: peer-first (deliver the last response while
    /// the client keeps ACKing it, 15 s stall timeout, 60 s cap; then 2 s
    /// grace; [`DEFAULT_DRAIN_LIMIT`]), 60 s keep-alive idle timeout, 300 s
    /// idle bound for upgraded connections, no request limit, 10 s shutdown
    /// timeout, a connection limit that fits the descriptor limit
    /// ([`farewell::accept::default_max_connections`]), `TCP_NODELAY` on,
    /// hyper-util's HTTP/1 and HTTP/2 defaults but for the abuse bounds
    /// [`DEFAULT_HEADER_READ_TIMEOUT`],
    /// [`DEFAULT_BODY_READ_TIMEOUT`], [`DEFAULT_SEND_TIMEOUT`],
    /// [`DEFAULT_MAX_BUF_SIZE`], [`DEFAULT_H2_MAX_CONCURRENT_STREAMS`],
    /// [`DEFAULT_H2_MAX_SEND_BUF_SIZE`] and [`DEFAULT_H2_MAX_HEADER_LIST_SIZE`].
    pub fn new() -> Server {
        let mut hyper = auto::Builder::new(TokioExecutor::new());
        // Memory per connection: HTTP/1.1 buffers; h2 streams × send buffer.
        hyper.http1().max_buf_size(DEFAULT_MAX_BUF_SIZE);
        hyper
            .http2()
            .max_concurrent_streams(DEFAULT_H2_MAX_CONCURRENT_STREAMS)
            .max_send_buf_size(DEFAULT_H2_MAX_SEND_BUF_SIZE)
            .max_header_list_size(DEFAULT_H2_MAX_HEADER_LIST_SIZE);
        Server {
            policy: Policy::PeerFirst(PeerFirst {
                drain_limit: DEFAULT_DRAIN_LIMIT,
                ..PeerFirst::default()
            }),
            hyper,
            nodelay: true,
            metrics: true,
            idle_timeout: Duration::from_secs(60),
            upgrade_idle_timeout: DEFAULT_UPGRADE_IDLE_TIMEOUT,
            max_requests: None,
            shutdown_timeout: Duration::from_secs(10),
            max_connections: farewell::accept::default_max_connections(),
            heavy_client_threshold: farewell::DEFAULT_HEAVY_CLIENT_THRESHOLD,
            on_outcome: None,
            on_connection: None,
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            body_read_timeout: Some(DEFAULT_BODY_READ_TIMEOUT),
            send_timeout: Some(DEFAULT_SEND_TIMEOUT),
            #[cfg(feature = "rustls")]
            tls: None,
            #[cfg(feature = "rustls")]
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }

    /// Whether connections are served over TLS (`Server::tls`, feature `rustls`).
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

    /// Who keeps TIME-WAIT when a client closes after its last response was
    /// delivered (peer-first only; other policies ignore it):
    ///
    /// * [`PeerTimeWait::Auto`] (the default): a light client keeps it (the
    ///   textbook passive close); a heavy one, more than
    ///   [`Server::heavy_client_threshold`] such endings from its address in
    ///   the last minute (a reverse proxy or load balancer in front, a load
    ///   generator, a NAT), is reset once everything is ACKed, so that nobody
    ///   keeps it and its ports toward us do not run out;
    /// * [`PeerTimeWait::Keep`]: every client keeps it;
    /// * [`PeerTimeWait::Spare`]: nobody keeps it (a server that only ever
    ///   sits behind a proxy).
    ///
    /// A client that half-closed before the last response (`shutdown(SHUT_WR)`
    /// after its request, `nc -N`) always gets the passive close: a reset
    /// would hand it `ECONNRESET` instead of its end of file.
    ///
    /// # Examples
    ///
    /// ```
    /// use farewell::PeerTimeWait;
    /// use farewell_http::Server;
    ///
    /// // Behind nginx: the proxy is the only client, and it must keep no TIME-WAIT.
    /// let server = Server::new().peer_time_wait(PeerTimeWait::Spare);
    /// # let _ = server;
    /// ```
    pub fn peer_time_wait(mut self, choice: PeerTimeWait) -> Server {
        self.policy = self.policy.with_peer_time_wait(choice);
        self
    }

    /// The [`PeerTimeWait::Auto`] threshold: endings per client address and
    /// minute above which the client is heavy (default
    /// [`farewell::DEFAULT_HEAVY_CLIENT_THRESHOLD`], 500). See
    /// [`farewell::CloserBuilder::heavy_client_threshold`].
    pub fn heavy_client_threshold(mut self, endings: u32) -> Server {
        self.heavy_client_threshold = endings;
        self
    }

    /// The teardown policy for connections that end after a response (or when the client closes).
    ///
    /// With [`Policy::PeerFirst`], connections closed with nothing left to say
    /// (idle HTTP/1.1 keep-alive, laggards at shutdown) use the same policy with
    /// a zero grace: reset once everything written is ACKed. Other policies are
    /// used as they are for every connection.
    ///
    /// A [`PeerFirst`] whose `drain_limit` is the core's default
    /// ([`farewell::policy::DEFAULT_DRAIN_LIMIT`], as `Policy::default()`
    /// gives) gets the server's [`DEFAULT_DRAIN_LIMIT`] instead (which says
    /// why). Any other drain limit is kept; [`Server::drain_limit`] sets one
    /// explicitly. To change only the grace, [`Server::grace`] is simpler.
    pub fn policy(mut self, policy: Policy) -> Server {
        self.policy = match policy {
            Policy::PeerFirst(p) if p.drain_limit == farewell::policy::DEFAULT_DRAIN_LIMIT => {
                Policy::PeerFirst(PeerFirst {
                    drain_limit: DEFAULT_DRAIN_LIMIT,
                    ..p
                })
            }
            other => other,
        };
        self
    }

    /// Peer-first's grace, keeping the rest of the policy (the drain limit
    /// among it): how long the client has to close once the last response is
    /// ACKed (default 2 s). The other policies have no grace and ignore it;
    /// their deadlines are set on the policy ([`Policy::with_delivery_timeout`],
    /// [`Policy::with_stall_timeout`]) given to [`Server::policy`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use farewell_http::Server;
    ///
    /// let server = Server::new().grace(Duration::from_secs(5));
    /// # let _ = server;
    /// ```
    pub fn grace(mut self, grace: Duration) -> Server {
        self.policy = self.policy.with_grace(grace);
        self
    }

    /// Under peer-first, the most bytes read and discarded while waiting for
    /// the client to close (default [`DEFAULT_DRAIN_LIMIT`], 2 MiB): an
    /// unread request body (an early 413) is drained so the client reads the
    /// response; a client that sends more is reset. Other policies have no
    /// drain limit and ignore it.
    pub fn drain_limit(mut self, limit: u64) -> Server {
        if let Policy::PeerFirst(p) = &mut self.policy {
            p.drain_limit = limit;
        }
        self
    }

    /// Changes hyper's HTTP/1 settings (hyper-util's
    /// [`Http1Builder`](auto::Http1Builder)): header limits, buffer sizes,
    /// `writev`, title-case headers, ...
    ///
    /// `half_close` is always turned on (a client may send its requests,
    /// then its FIN, and wait for the answers: RFC 9112 §9.6); the rest is
    /// yours.
    ///
    /// # Examples
    ///
    /// ```
    /// use farewell_http::Server;
    ///
    /// let server = Server::new().http1(|http1| {
    ///     http1.max_buf_size(64 * 1024).max_headers(50);
    /// });
    /// # let _ = server;
    /// ```
    pub fn http1(
        mut self,
        configure: impl FnOnce(&mut auto::Http1Builder<'_, TokioExecutor>),
    ) -> Server {
        configure(&mut self.hyper.http1());
        self
    }

    /// Changes hyper's HTTP/2 settings (hyper-util's
    /// [`Http2Builder`](auto::Http2Builder)): concurrent streams, window
    /// sizes, keep-alive pings, extended CONNECT, ...
    ///
    /// # Examples
    ///
    /// ```
    /// use farewell_http::Server;
    ///
    /// let server = Server::new().http2(|http2| {
    ///     http2.max_concurrent_streams(100).enable_connect_protocol();
    /// });
    /// # let _ = server;
    /// ```
    pub fn http2(
        mut self,
        configure: impl FnOnce(&mut auto::Http2Builder<'_, TokioExecutor>),
    ) -> Server {
        configure(&mut self.hyper.http2());
        self
    }

    /// Serves HTTP/1 only: a client speaking h2 prior knowledge is refused
    /// (hyper-util's `http1_only`).
    pub fn http1_only(mut self) -> Server {
        self.hyper = self.hyper.http1_only();
        self
    }

    /// Serves h2 only (prior knowledge over TCP, ALPN `h2` over TLS;
    /// hyper-util's `http2_only`).
    pub fn http2_only(mut self) -> Server {
        self.hyper = self.hyper.http2_only();
        self
    }

    /// Whether this server records the live [`metrics`](crate::metrics)
    /// (default `true`; nothing is recorded without the `metrics` feature or
    /// without a recorder installed). Turn it off for a side server (a
    /// metrics endpoint, an admin port) whose connections should not count
    /// with the main one's.
    pub fn metrics(mut self, record: bool) -> Server {
        self.metrics = record;
        self
    }

    /// Whether accepted sockets get `TCP_NODELAY` (default `true`: hyper
    /// writes whole responses, and Nagle would hold back their tails for an
    /// ACK).
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Server {
        self.nodelay = nodelay;
        self
    }

    /// How long a connection may sit with no request in flight and no bytes
    /// moving before the server ends it (default 60 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Server {
        self.idle_timeout = idle.min(farewell::policy::MAX_WAIT);
        self
    }

    /// How long an upgraded connection (`101 Switching Protocols`, e.g. a
    /// WebSocket) may move no byte, either way, before the server cuts it
    /// (default [`DEFAULT_UPGRADE_IDLE_TIMEOUT`], 300 s).
    ///
    /// The keep-alive [`idle_timeout`](Server::idle_timeout) does not apply
    /// after an upgrade: a WebSocket may rightly sit quiet longer than an idle
    /// HTTP connection, and its protocol has its own keep-alive (ping/pong,
    /// RFC 6455 §5.5.2) which counts as bytes moving. Once cut, the upgraded
    /// stream's reads and writes fail (`ErrorKind::TimedOut`), so the handler
    /// ends; its socket is reset once everything written is ACKed (no FIN, no
    /// TIME-WAIT on either side). Counted in [`ServeReport::upgrades_idle_cut`].
    pub fn upgrade_idle_timeout(mut self, idle: Duration) -> Server {
        self.upgrade_idle_timeout = idle.min(farewell::policy::MAX_WAIT);
        self
    }

    /// After this many requests on one connection, the last response carries
    /// `Connection: close` (HTTP/1.1) or the connection gets a GOAWAY (h2).
    /// `None` (the default): no limit.
    pub fn max_requests_per_connection(mut self, max: Option<u64>) -> Server {
        self.max_requests = max.map(|m| m.max(1));
        self
    }

    /// At shutdown, how long connections and their teardowns have to finish:
    /// a hard deadline, the one an orchestrator's termination grace period is
    /// sized against. Default 10 s.
    ///
    /// **At the deadline** every connection still serving is dropped, and
    /// every teardown still running, wherever it runs (a connection's task,
    /// the closer's own tasks for upgraded streams and for clients owed our
    /// FIN), is ended as [`farewell::Closer::hurry`] ends it: a passive close
    /// if the client's FIN is in, else one non-blocking write of what is left,
    /// one look at whether it was ACKed, and a reset
    /// ([`farewell::Ending::ResetAtDeadline`]; the outcome says whether the
    /// last bytes were confirmed delivered). Nothing waits for a client past
    /// it: a client that stopped reading, a slow reader still taking bytes, an
    /// h2 client not reading its socket are all reset then, and
    /// [`Server::serve`] returns within milliseconds of the deadline.
    ///
    /// Upgraded connections (a WebSocket) are waited for too: their handlers
    /// see the [`Shutdown`] in their request's extensions, say the protocol's
    /// goodbye (close code 1001) and drop the stream. Those still held at the
    /// deadline are cut: their reads and writes fail, and once the handler
    /// drops the stream it is reset after its bytes are ACKed. They count in
    /// [`ServeReport::forced`].
    ///
    /// A connection's teardown (peer-first waiting for the client's FIN after
    /// the last response) runs in the connection's task, so the timeout
    /// bounds it too: one still waiting at the deadline ends then, as
    /// [`farewell::Closer::hurry`] ends it (a passive close if the FIN came,
    /// else a reset), and counts in [`ServeReport::forced`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Server {
        self.shutdown_timeout = timeout.min(farewell::policy::MAX_WAIT);
        self
    }

    /// How long a client has to send a whole request head, counted from its
    /// first byte (default [`DEFAULT_HEADER_READ_TIMEOUT`], 30 s; `None`: no
    /// bound). A client that sends one byte a second is cut all the same:
    /// bytes do not restart this clock. An idle keep-alive connection (no byte
    /// of a new request) is the [`Server::idle_timeout`]'s. HTTP/1.1, and the
    /// first request of an h2 connection (preface to first HEADERS).
    ///
    /// The cut connection is owed nothing: it is reset once everything written
    /// before is ACKed, no FIN, no TIME-WAIT on the server; its [`Cause`] is
    /// [`Cause::ReadTimeout`]. (hyper's own `header_read_timeout` is not used:
    /// it also cuts idle keep-alive connections, and an h2 one never.)
    pub fn header_read_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.header_read_timeout = timeout.map(|t| t.min(farewell::policy::MAX_WAIT));
        self
    }

    /// How long a read of an HTTP/1.1 request body may wait for a byte
    /// (default [`DEFAULT_BODY_READ_TIMEOUT`], 60 s; `None`: no bound): a
    /// `POST` with `Content-Length: 100` and 3 bytes, then silence, is cut
    /// this long after its last byte, the service's body read failing. The
    /// clock runs only while the service reads the body, so a slow handler
    /// that is not reading is never cut. Ended as for
    /// [`Server::header_read_timeout`] ([`Cause::ReadTimeout`]).
    ///
    /// h2 streams are not covered: their bodies are bounded in memory by
    /// flow control, and a stalled one by [`Server::h2_max_concurrent_streams`].
    pub fn body_read_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.body_read_timeout = timeout.map(|t| t.min(farewell::policy::MAX_WAIT));
        self
    }

    /// How long a response may wait to be sent with no progress at all
    /// (default [`DEFAULT_SEND_TIMEOUT`], 60 s; `None`: no bound): no byte
    /// written, no body frame taken, and no byte newly ACKed by the client's
    /// kernel. Cuts a client that stopped reading (HTTP/1.1: the socket is
    /// full; h2: streams with a zero window) with an RST at once, since nothing
    /// more can be delivered ([`Cause::SendTimeout`]; nobody keeps TIME-WAIT).
    /// A slow reader that keeps ACKing is never cut.
    ///
    /// # How low it may go
    ///
    /// A client that reads `R` bytes a second with a `B`-byte receive buffer
    /// may ACK nothing new for about `B / R` seconds: its window reopens only
    /// once it read about half of the buffer. Keep the timeout above that for
    /// the slowest client to be served: the default (60 s) serves a 4 KiB
    /// buffer read at 70 B/s; 3 s cuts one read at 670 B/s. Upgraded
    /// connections (a WebSocket) are bound by it too.
    pub fn send_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.send_timeout = timeout.map(|t| t.min(farewell::policy::MAX_WAIT));
        self
    }

    /// hyper's HTTP/1.1 read and write buffer bound, in bytes (default
    /// [`DEFAULT_MAX_BUF_SIZE`]; at least 8 KiB). A request head larger than
    /// this is refused with 431.
    pub fn max_buf_size(mut self, bytes: usize) -> Server {
        self.hyper.http1().max_buf_size(bytes.max(8192));
        self
    }

    /// The most h2 streams one connection may have open at once (default
    /// [`DEFAULT_H2_MAX_CONCURRENT_STREAMS`]; at least 1).
    pub fn h2_max_concurrent_streams(mut self, max: u32) -> Server {
        self.hyper.http2().max_concurrent_streams(max.max(1));
        self
    }

    /// The most bytes an h2 stream buffers for sending, waiting for flow-control
    /// window (default [`DEFAULT_H2_MAX_SEND_BUF_SIZE`]).
    pub fn h2_max_send_buf_size(mut self, bytes: usize) -> Server {
        self.hyper.http2().max_send_buf_size(bytes.max(1));
        self
    }

    /// The largest h2 header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE;
    /// default [`DEFAULT_H2_MAX_HEADER_LIST_SIZE`]).
    pub fn h2_max_header_list_size(mut self, bytes: u32) -> Server {
        self.hyper.http2().max_header_list_size(bytes);
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
    /// at most 10,000: the other half is headroom (the second descriptor a
    /// connection holds once a write of its blocked, the teardowns of
    /// upgraded streams), so the limit is reached, and the surplus shed,
    /// before `accept()` runs out of descriptors and new clients wait
    /// unanswered in the listen backlog. A connection counts from accept
    /// until its task ends: its TLS handshake and its teardown (waiting for
    /// the client's FIN, at most the policy's grace once the response is
    /// delivered) included, as both hold its descriptor. An upgraded
    /// stream's teardown, after its handler drops it, does not count.
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

    /// Serves a tower service (an axum `Router`, a `BoxCloneService`) or a
    /// make-service (`app.into_make_service()`,
    /// `app.into_make_service_with_connect_info::<SocketAddr>()`) on
    /// `listener` until `shutdown` completes, then shuts down gracefully.
    ///
    /// A service is cloned for each connection; a make-service is called with
    /// the client's address for each (see [`MakeConnectionService`]).
    /// `listener` is a tokio `TcpListener` or, with the `axum` feature, axum's
    /// `tap_io` over one (see [`Listener`]).
    ///
    /// # Errors
    ///
    /// None today: accept errors are retried; those of the process (out of
    /// descriptors or memory) after a pause that grows up to
    /// [`MAX_ACCEPT_BACKOFF`] while the open connections are served, logged
    /// once per burst ([`farewell::accept::AcceptBackoff`]). The `Result`
    /// leaves room for setup errors.
    pub async fn serve<L, M, Marker>(
        self,
        listener: L,
        make_service: M,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<ServeReport>
    where
        L: Listener,
        M: MakeConnectionService<Marker>,
    {
        self.run(
            listener,
            TowerMaker {
                make: make_service,
                _marker: std::marker::PhantomData::<fn() -> Marker>,
            },
            shutdown,
        )
        .await
    }

    /// Serves a hyper service (e.g. `hyper::service::service_fn(..)`) on
    /// `listener` until `shutdown` completes, then shuts down gracefully.
    /// Each connection gets a clone of `service`.
    ///
    /// # Errors
    ///
    /// As [`Server::serve`].
    pub async fn serve_hyper<L, S, B>(
        self,
        listener: L,
        service: S,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<ServeReport>
    where
        L: Listener,
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.run(listener, HyperMaker(service), shutdown).await
    }

    /// The accept loop, then the graceful shutdown.
    async fn run<L: Listener, M: Maker>(
        self,
        mut listener: L,
        mut maker: M,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<ServeReport> {
        let record = self.metrics && metrics::ON;
        let handles = record.then(|| {
            metrics::describe();
            Arc::new(metrics::Handles::new())
        });
        let mut closer =
            Closer::builder(self.policy).heavy_client_threshold(self.heavy_client_threshold);
        let close_notify = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(Connections::new(self.on_connection.clone()));
        let tls = self.is_tls();
        let hooked = self.on_outcome.is_some() || self.on_connection.is_some();
        if tls || hooked || record {
            // Counting endings (metrics, TLS `close_notify`) needs no
            // addresses and no last probe: brief outcomes spare those syscalls.
            closer = closer.brief_outcomes(!hooked);
            let hook = self.on_outcome.clone();
            let counted = Arc::clone(&close_notify);
            let joined = Arc::clone(&ended);
            let handles = handles.clone();
            closer = closer.on_outcome(move |outcome| {
                if tls && outcome.peer_close_notify == Some(true) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                joined.teardown_ended(&outcome);
                if let Some(handles) = &handles {
                    handles.teardown(&outcome);
                }
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            closer: closer.build(),
            policy: self.policy,
            may_reset_after_fin: matches!(
                self.policy,
                Policy::PeerFirst(p) if p.peer_time_wait != PeerTimeWait::Keep
            ),
            quiet_policy: match self.policy {
                Policy::PeerFirst(p) => Policy::PeerFirst(PeerFirst {
                    grace: Duration::ZERO,
                    ..p
                }),
                other => other,
            },
            idle_timeout: self.idle_timeout,
            upgrade_idle_timeout: self.upgrade_idle_timeout,
            limits: decide::Limits {
                header_read: self.header_read_timeout,
                body_read: self.body_read_timeout,
                send: self.send_timeout,
            },
            closing_timeout: match self.policy {
                Policy::PeerFirst(p) => p.grace.max(Duration::from_secs(1)),
                _ => Duration::from_secs(2),
            },
            max_requests: self.max_requests,
            forcing: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            tls_handshakes_failed: AtomicU64::new(0),
            delimited: Delimited::default(),
            causes: CauseCounts::default(),
            ended,
            shutdown: Shutdown::new(stop_rx.clone()),
            upgrades: Upgrades::default(),
            metrics: handles,
        });
        let mut builder = self.hyper.clone();
        // A client may send its requests and then its FIN (`shutdown(SHUT_WR)`,
        // `nc -N`) and wait for the answers: RFC 9112 §9.6. Without half-close,
        // hyper takes the EOF for "the client is gone" and drops the request in
        // flight. With it, hyper answers every request read before the FIN,
        // then ends the connection; the teardown finds the FIN already in
        // (peer-closed: the client keeps TIME-WAIT).
        builder.http1().half_close(true);
        let builder = Arc::new(builder);
        let mut tasks = JoinSet::new();

        // A plaintext 503 means nothing to a TLS client: reset it only.
        let shed_response: &[u8] = if self.is_tls() { &[] } else { SHED_RESPONSE };
        let mut backoff = AcceptBackoff::new(MAX_ACCEPT_BACKOFF);
        let mut shed = 0u64;
        let mut accept_errors = 0u64;
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                () = backoff.wait() => continue,
                accepted = listener.accept(), if !backoff.pausing() => match accepted {
                    Ok(accepted) => {
                        backoff.recovered();
                        // Tasks that ended but were not joined yet free their slot now.
                        while tasks.try_join_next().is_some() {}
                        if tasks.len() >= self.max_connections {
                            // Over the limit: a 503 if it fits at once, then
                            // one RST; no task, no TIME-WAIT.
                            accept::shed_with(accepted.0, shed_response);
                            shed += 1;
                            continue;
                        }
                        accepted
                    }
                    Err(e) if accept::is_per_connection(&e) => {
                        tracing::debug!(error = %e, "a connection failed before accept");
                        continue;
                    }
                    Err(e) => {
                        accept_errors += 1;
                        backoff.failed(&e);
                        // Out of descriptors all the same: clients waiting in
                        // the backlog get a reset now, not a wait.
                        if let Some(tcp) = listener.tcp_listener() {
                            shed += backoff.shed_pending(tcp, shed_response);
                        }
                        continue;
                    }
                },
                // Finished connections are not joined here: a `join_next` arm
                // would wake this task at the end of every connection. They
                // are collected at the next accept (`try_join_next` above),
                // so the set holds at most the connections that ended since.
            };
            // On by default: responses are written whole; do not let Nagle hold their tails.
            let _ = stream.set_nodelay(self.nodelay);
            shared.connections.fetch_add(1, Ordering::Relaxed);
            if let Some(handles) = &shared.metrics {
                handles.accepted();
            }
            // The service for this connection: a clone, or what the
            // make-service gives for this client (`ConnectInfo`).
            let service = match maker.make(peer).await {
                Ok(service) => service,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "the make-service failed; closing the connection");
                    stream.hand_over(&shared.closer, shared.quiet_policy);
                    continue;
                }
            };
            let open = shared.metrics.as_ref().map(|handles| handles.open());
            #[cfg(feature = "rustls")]
            if let Some((acceptor, timeout)) = &tls {
                let connection = serve_tls_connection(
                    acceptor.clone(),
                    *timeout,
                    Arc::clone(&builder),
                    stream,
                    service,
                    Arc::clone(&shared),
                    stop_rx.clone(),
                );
                tasks.spawn(async move {
                    let _open = open;
                    connection.await;
                });
                continue;
            }
            let connection = serve_connection(
                Arc::clone(&builder),
                stream,
                service,
                Arc::clone(&shared),
                stop_rx.clone(),
            );
            tasks.spawn(async move {
                // Counted open until the connection's task ends (or is aborted).
                let _open = open;
                connection.await;
            });
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
                    // Every teardown, from now on too, ends at once.
                    shared.closer.hurry();
                    // Dropping each connection drops its IO, which hands the
                    // socket to the closer with the quiet (confirmed reset) policy.
                    // An upgraded connection's task holds no IO (its handler
                    // does): dropping the task cuts the stream, the handler's
                    // reads and writes fail, and it drops the stream.
                    tasks.shutdown().await;
                    if tokio::time::timeout(CUT_HANDLERS_WAIT, shared.upgrades.all_closed())
                        .await
                        .is_err()
                    {
                        tracing::warn!(
                            held = shared.upgrades.open(),
                            "upgraded connections cut at shutdown are still held by their \
                             handlers; a handler should end when a read or write fails"
                        );
                    }
                    break;
                }
            }
        }
        // Teardowns handed to the closer's own tasks (upgraded streams, clients
        // owed our FIN, connections dropped at the deadline) may outlive their
        // connection: the same deadline bounds them.
        let drained = async {
            shared.delimited.idle().await;
            shared.closer.idle().await;
        };
        tokio::select! {
            () = drained => {}
            () = &mut deadline => shared.closer.hurry(),
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
            upgrades_closed: shared.upgrades.closed.load(Ordering::Relaxed),
            upgrades_reset_undelivered: shared.upgrades.reset_undelivered.load(Ordering::Relaxed),
            upgrades_idle_cut: shared.upgrades.idle_cut.load(Ordering::Relaxed),
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
            if shared.metrics.is_some() {
                metrics::tls_handshake_failed();
            }
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
    let limits = state.shared.limits;
    let closing_timeout = state.shared.closing_timeout;
    let tick = limits.tick();
    // hyper's connection lives in this block: it is dropped (and with it the
    // IO, unless an upgrade took it) before an upgraded stream is watched.
    let closing = {
        let io = TokioIo::new(TeardownIo::new(stream, Arc::clone(&state)));
        // Boxed: hyper's connection (its buffers, its dispatcher) is most of
        // this task's size, and tokio moves a task's future whole when it
        // spawns it and when it ends; one allocation costs less than those
        // copies.
        let mut conn = Box::pin(
            builder.serve_connection_with_upgrades(io, Counted::new(service, Arc::clone(&state))),
        );
        // When the client last ACKed a new byte (read only once a write blocked).
        let mut acks = AckClock { acked: None, at: 0 };

        // The three things that can end a connection besides hyper itself, each
        // created once: re-creating them per wakeup would register and deregister a
        // timer and two waiters every time the connection's task runs. One timer
        // serves two clocks (a single entry in tokio's timer wheel, one
        // `Sleep` polled per wakeup): the idle check's and the watchdog's,
        // armed at the earlier of the two.
        let stopped = stop.wait_for(|stop| *stop);
        let limit_reached = state.limit_reached.notified();
        let start = Instant::now();
        let mut idle_at = start + idle;
        let mut watch_at = tick.map(|tick| start + tick);
        let timer = tokio::time::sleep_until(earlier(idle_at, watch_at).into());
        tokio::pin!(stopped, limit_reached, timer);
        // The timer is polled only when it must be, not at every wakeup of the
        // task: once armed (the poll gives it the task's waker) and once it has
        // elapsed. In between, the waker it holds wakes the task when it
        // fires; every reset is followed by a poll all the same.
        let timer_unpolled = AtomicBool::new(true);

        // Told only when there is a request limit: not polled otherwise.
        let limited = state.shared.max_requests.is_some();
        let mut closing = false;
        loop {
            let was_closing = closing;
            tokio::select! {
                biased;
                // The requests' reads, writes and body frames in one poll share
                // one clock reading.
                result = std::future::poll_fn(|cx| state.poll_clocked(conn.as_mut(), cx)) => {
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
                () = limit_reached.as_mut(), if limited && !closing => {
                    // HTTP/1.1 responses already carry `Connection: close` (see
                    // `Counted`); for h2 this sends GOAWAY.
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = std::future::poll_fn(|cx| {
                    if !timer_unpolled.load(Ordering::Relaxed) && !timer.is_elapsed() {
                        return std::task::Poll::Pending;
                    }
                    // Unconstrained: a poll refused for tokio's cooperative
                    // budget would leave the timer without the waker.
                    let poll = std::pin::pin!(unconstrained(timer.as_mut())).poll(cx);
                    if poll.is_pending() {
                        timer_unpolled.store(false, Ordering::Relaxed);
                    }
                    poll
                }) => {
                    let now = Instant::now();
                    if watch_at.is_some_and(|at| at <= now) {
                        let now_ms = state.now_ms();
                        let acked_at = acks.sample(state.acked(), now_ms);
                        match decide::watchdog(&state.watch(now_ms, acked_at), &limits) {
                            None => watch_at = tick.map(|tick| now + tick),
                            Some(decide::Cut::Read) if state.h2_preface() && !closing => {
                                // An h2 client that sent its preface and no
                                // request: say GOAWAY first (RFC 9113 §6.8), then
                                // the closing bound ends it if it lingers.
                                state.cause.replace(Cause::ReadTimeout);
                                state.closing_quietly();
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                                watch_at = tick.map(|tick| now + tick);
                            }
                            Some(decide::Cut::Read) => {
                                // Nothing is owed: reset once what was written is ACKed.
                                state.cause.replace(Cause::ReadTimeout);
                                state.closing_quietly();
                                break;
                            }
                            Some(decide::Cut::Send) => {
                                // Nothing more can be delivered: reset at once.
                                state.cause.replace(Cause::SendTimeout);
                                state.abort();
                                break;
                            }
                        }
                    }
                    if idle_at <= now {
                        // Before closing: the keep-alive idle timeout. After: how long a
                        // connection asked to end (GOAWAY) may then sit with nothing in
                        // flight and nothing moving, e.g. an h2 client that answers
                        // neither the GOAWAY nor its PING.
                        let bound = if closing { closing_timeout } else { idle };
                        match state.idle_check(bound, now) {
                            decide::Idle::CheckAt(next) => idle_at = next,
                            decide::Idle::Expired if closing => {
                                tracing::debug!("connection asked to end did not; ending it");
                                break;
                            }
                            decide::Idle::Expired => {
                                state.cause.set(Cause::Idle);
                                state.closing_quietly();
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                            }
                        }
                    }
                    timer.as_mut().reset(earlier(idle_at, watch_at).into());
                    timer_unpolled.store(true, Ordering::Relaxed);
                }
            }
            if closing && !was_closing {
                idle_at = Instant::now() + closing_timeout;
                timer.as_mut().reset(earlier(idle_at, watch_at).into());
                timer_unpolled.store(true, Ordering::Relaxed);
            }
        }
        state.teardown_here(conn)
    };
    // The socket's teardown (waiting for the client's FIN, say) goes on in
    // this task, after the connection's timer and waiters are gone: no second
    // task per connection. If this task is aborted (the drain's deadline),
    // dropping the teardown ends it at once.
    if let Some(closing) = closing {
        closing.await;
    }
    // After an upgrade hyper is done, but the handler holds the socket: watch
    // it until the handler drops it (the drain at shutdown waits for this task).
    upgrade::watch(&state).await;
}

/// The earlier of the idle check's deadline and the watchdog's (if it runs).
fn earlier(idle_at: Instant, watch_at: Option<Instant>) -> Instant {
    watch_at.map_or(idle_at, |at| at.min(idle_at))
}

/// When the client's kernel last ACKed a new byte of ours, sampled by the
/// connection task ([`ConnState::acked`]).
#[derive(Default)]
pub(crate) struct AckClock {
    acked: Option<u64>,
    /// Milliseconds since the connection started of the last rise.
    at: u64,
}

impl AckClock {
    /// Takes the counter's reading `acked` at `now` (ms); returns when it last rose.
    pub(crate) fn sample(&mut self, acked: Option<u64>, now: u64) -> u64 {
        if acked.is_some() && acked != self.acked {
            if self.acked.is_some() {
                self.at = now;
            }
            self.acked = acked;
        }
        self.at
    }
}

/// Gives the hyper service for each connection (the accept loop's view of a
/// service or make-service).
trait Maker: Send {
    type Body: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
    type Service: Service<
            Request<Incoming>,
            Response = Response<Self::Body>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Send
        + 'static;

    fn make(
        &mut self,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Self::Service, BoxError>> + Send;
}

/// A tower service or make-service ([`Server::serve`]).
struct TowerMaker<M, Marker> {
    make: M,
    _marker: std::marker::PhantomData<fn() -> Marker>,
}

impl<M, Marker> Maker for TowerMaker<M, Marker>
where
    M: MakeConnectionService<Marker>,
{
    type Body = M::Body;
    type Service = TowerToHyperService<M::Service>;

    async fn make(&mut self, peer: SocketAddr) -> Result<Self::Service, BoxError> {
        std::future::poll_fn(|cx| self.make.poll_ready(cx)).await?;
        let service = self.make.make_service(peer).await?;
        Ok(TowerToHyperService::new(service))
    }
}

/// A hyper service, cloned for each connection ([`Server::serve_hyper`]).
struct HyperMaker<S>(S);

impl<S, B> Maker for HyperMaker<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Body = B;
    type Service = S;

    fn make(
        &mut self,
        _: SocketAddr,
    ) -> impl Future<Output = Result<Self::Service, BoxError>> + Send {
        std::future::ready(Ok(self.0.clone()))
    }
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
    /// Connections still open (or still in their teardown) when the shutdown
    /// timeout passed; they were reset once their written bytes were ACKed
    /// (or the policy's bound ended), a teardown as a hurry ends it.
    pub forced: usize,
    /// Every teardown, counted by [`farewell::Ending`].
    pub teardowns: CloserStats,
    /// The server served TLS (`Server::tls`, feature `rustls`).
    pub tls: bool,
    /// TLS handshakes that failed or timed out (each ended with the policy).
    pub tls_handshakes_failed: u64,
    /// TLS connections whose client sent its own `close_notify` before the
    /// connection ended.
    pub peer_close_notify: u64,
    /// Connections (over TCP, under peer-first) whose client reads the last
    /// response until the server closes: an HTTP/1.0 request without
    /// `Connection: keep-alive` (whatever the response's framing), or a
    /// close-delimited body (HTTP/1.0, length unknown). Only the server's FIN
    /// ends it. Each was delivered (every byte ACKed), then closed with a FIN
    /// that the kernel follows with an RST once it is ACKed
    /// ([`farewell::sys::close_reset_on_fin_ack`]): the client reads the whole
    /// body and the end of file, and nobody keeps TIME-WAIT. These teardowns are not in
    /// [`ServeReport::teardowns`] and produce no [`Outcome`].
    pub close_delimited: u64,
    /// Such responses (see [`ServeReport::close_delimited`]) whose delivery
    /// stalled or failed: reset without a FIN (the client sees a reset, not
    /// the end of the response).
    pub close_delimited_undelivered: u64,
    /// Connections by why they ended ([`Cause`]), the causes with none left
    /// out, in [`Cause::ALL`] order.
    pub causes: Vec<(Cause, u64)>,
    /// Upgraded connections (a WebSocket, over TCP, under peer-first) whose
    /// handler dropped the stream: ended as a close-delimited body is, with
    /// the server's FIN once everything written was ACKed, reset by the
    /// kernel on that FIN's ACK (or a passive close when the client's FIN came
    /// first). The client reads the end of file it waits for after the close
    /// handshake (RFC 6455 §7.1.1), and nobody keeps TIME-WAIT. Not in
    /// [`ServeReport::teardowns`].
    pub upgrades_closed: u64,
    /// Upgraded connections whose last bytes were not ACKed (stalled, or the
    /// connection failed): reset without a FIN.
    pub upgrades_reset_undelivered: u64,
    /// Upgraded connections cut by [`Server::upgrade_idle_timeout`].
    pub upgrades_idle_cut: u64,
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
        if self.upgrades_closed + self.upgrades_reset_undelivered + self.upgrades_idle_cut > 0 {
            write!(
                f,
                "; upgrades: {} ended by the server's close (FIN reset on its ACK, or passive), {} reset undelivered, {} cut idle",
                self.upgrades_closed, self.upgrades_reset_undelivered, self.upgrades_idle_cut
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
                "; read to the close: {} ended by our FIN (reset on its ACK), {} reset undelivered",
                self.close_delimited, self.close_delimited_undelivered
            )?;
        }
        Ok(())
    }
}
