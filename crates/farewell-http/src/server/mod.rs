//! The server: its settings ([`Server`] and its setters, here), the accept
//! loop and the graceful shutdown ([`run`]), each connection's task
//! ([`connection`]), the service made for each connection ([`maker`]) and
//! what the server did ([`report`]), as hyper-util splits its own.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use farewell::{Outcome, PeerFirst, PeerTimeWait, Policy};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::sync::watch;

use crate::record::{ConnectionHook, ConnectionOutcome};
use crate::serve::{BoxError, Listener, MakeConnectionService};
use crate::shutdown::Shutdown;

mod connection;
mod maker;
mod report;
mod run;

use maker::{HyperMaker, TowerMaker};
pub use report::ServeReport;

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
    /// Raised when a run of this server (or of a clone) begins its shutdown;
    /// [`Server::shutdown_handle`] subscribes to it.
    signal: Arc<watch::Sender<bool>>,
    /// Put a [`Shutdown`] in every request's extensions.
    shutdown_extension: bool,
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
            .field("shutdown_extension", &self.shutdown_extension)
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
            signal: Arc::new(watch::channel(false).0),
            shutdown_extension: false,
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
    /// see the [`Shutdown`] ([`Server::shutdown_handle`]), say the protocol's
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
    /// before is ACKed, no FIN, no TIME-WAIT on the server; its [`Cause`](crate::Cause) is
    /// [`Cause::ReadTimeout`](crate::Cause::ReadTimeout). (hyper's own `header_read_timeout` is not used:
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
    /// [`Server::header_read_timeout`] ([`Cause::ReadTimeout`](crate::Cause::ReadTimeout)).
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
    /// more can be delivered ([`Cause::SendTimeout`](crate::Cause::SendTimeout); nobody keeps TIME-WAIT).
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
    /// [`Cause`](crate::Cause) (client asked, request limit, idle, shutdown, upgrade,
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

    /// The server's shutdown signal, for handlers that must say their own
    /// goodbye before the drain deadline (a WebSocket, a long poll, a
    /// stream): take it before serving and give it to the handlers once, in
    /// axum's `State` or captured by a `service_fn` closure.
    ///
    /// It is requested when the server's `shutdown` future completes (the
    /// server then stops accepting and waits up to
    /// [`Server::shutdown_timeout`] for the handlers); a new run clears it.
    /// Handles taken from a server and from its clones are one signal.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use axum::{extract::State, routing::get, Router};
    /// use farewell_http::{Server, Shutdown};
    ///
    /// async fn slow(State(shutdown): State<Shutdown>) -> &'static str {
    ///     tokio::select! {
    ///         () = tokio::time::sleep(std::time::Duration::from_secs(30)) => "done\n",
    ///         () = shutdown.requested() => "server shutting down, try again\n",
    ///     }
    /// }
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo() -> std::io::Result<()> {
    /// let server = Server::new();
    /// let app = Router::new()
    ///     .route("/slow", get(slow))
    ///     .with_state(server.shutdown_handle());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// server
    ///     .serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown::new(self.signal.subscribe())
    }

    /// Puts a [`Shutdown`] in every request's extensions (axum:
    /// `Extension<Shutdown>`), for handlers written that way. Off by default:
    /// it costs an allocation and a hash-map insert per request (about 760
    /// instructions per keep-alive request, measured by `farewell bench
    /// overhead`); [`Server::shutdown_handle`] gives handlers the same
    /// signal once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use axum::{routing::get, Extension, Router};
    /// use farewell_http::{Server, Shutdown};
    ///
    /// async fn slow(Extension(shutdown): Extension<Shutdown>) -> &'static str {
    ///     shutdown.requested().await;
    ///     "server shutting down\n"
    /// }
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// let app = Router::new().route("/slow", get(slow));
    /// Server::new()
    ///     .shutdown_extension(true)
    ///     .serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown_extension(mut self, on: bool) -> Server {
        self.shutdown_extension = on;
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
}
