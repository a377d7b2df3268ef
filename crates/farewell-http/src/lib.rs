//! Serve hyper and axum (HTTP/1.1 and HTTP/2) so that the server keeps no
//! TIME-WAIT and no response is cut short.
//!
//! hyper ends a connection by calling `shutdown()` on it and dropping it: the
//! server sends the first FIN, so every connection the server ends (a
//! `Connection: close` response, a keep-alive limit, an idle timeout, a
//! restart) leaves a 60 s TIME-WAIT entry on the server (farewell::facts [F1](farewell::facts#f1)). Under
//! `Connection: close` churn that is thousands of entries a second.
//!
//! [`Server`] serves hyper connections through hyper-util's `auto::Builder`,
//! on an IO wrapper whose `shutdown()` sends no FIN and whose drop hands the
//! socket to a [`farewell::Closer`]. The closer then runs the server's
//! [`Policy`](farewell::Policy), by default peer-first, in the connection's
//! own task ([`farewell::Closer::close_here`]): one task per connection, and
//! the shutdown timeout bounds the teardown too.
//!
//! # What goes on the wire (peer-first, the default)
//!
//! | connection ends because | the server sends | then | TIME-WAIT kept by |
//! |---|---|---|---|
//! | the client asked (HTTP/1.1 `Connection: close` request), or the max-requests limit | the last response, with `Connection: close`; **no FIN** | waits up to the grace for the client's FIN, reading and discarding; closes passively (LAST-ACK → CLOSED), or, for a heavy client ([`Server::peer_time_wait`]: a proxy, a load generator), resets once the response is ACKed. No FIN by then: waits (bounded) until the response is ACKed, then RST | a light client; nobody for a heavy one, or if reset |
//! | the client closed (FIN) with no request pending | nothing more | closes passively (a heavy client: RST) | a light client; nobody for a heavy one |
//! | the client half-closed after its requests (`shutdown(SHUT_WR)`, `nc -N`): its FIN came before our last response | the response to every request read before the FIN (RFC 9112 §9.6) | closes passively, whatever the client's weight: it may still be reading, and a reset would hand it `ECONNRESET` instead of its end of file (for a client near the heavy-client threshold the server asks the kernel before each response whether the FIN came first; one far from it gets the passive close anyway, and one that turns heavy during its connection keeps it) | the client |
//! | keep-alive idle timeout (HTTP/1.1, nothing in flight) | nothing | RST once everything written is ACKed (`SIOCOUTQ` = 0) | nobody |
//! | keep-alive idle timeout (h2), max requests (h2) | GOAWAY; **no FIN** | as for `Connection: close` | the client; nobody if reset |
//! | response sent before the request body was read (early 413/401) | the response, `Connection: close`; no FIN | reads and discards the unread body (up to the drain limit, within the grace) until the client's FIN, so the client reads the response instead of a reset (RFC 9112 §9.6); over the limit: RST | the client; nobody if reset |
//! | the client reads until the server closes: an HTTP/1.0 request without `Connection: keep-alive` (`ab`, `lynx -dump`, `nc`), whatever the response's framing, or a close-delimited last body (HTTP/1.0, length unknown: only the server's close can end it) | the response; once every byte is ACKed, a **FIN** (see below): for a framed response, after two round-trip times (5 to 100 ms) in which a client that closes by itself (nginx's default upstream, curl) may send its FIN first | RST by the kernel when the FIN is ACKed; if the client's FIN came first, the policy (a passive close, a heavy client's reset) | nobody; a light client if it closed first |
//! | an upgraded connection (`101`, e.g. a WebSocket) whose handler said the protocol's goodbye (a close frame) and dropped the stream | (the handler wrote the goodbye); once every byte is ACKed, a **FIN**, as for a close-delimited body: RFC 6455 §7.1.1 has the server close TCP first, and clients wait for it | RST by the kernel when the FIN is ACKed; if the client's FIN came first, a passive close | nobody; the client if it closed first |
//! | an upgraded connection idle past [`Server::upgrade_idle_timeout`], or still held at the shutdown deadline | nothing: its reads and writes fail, the handler drops it | RST once everything written is ACKed | nobody |
//! | server shutdown | in-flight responses finish with `Connection: close` / GOAWAY; idle HTTP/1.1 connections as for the idle timeout | as above; laggards after the shutdown timeout: RST once their bytes are ACKed | the client; nobody if reset |
//! | a request head not complete [`Server::header_read_timeout`] after its first byte (slowloris: `G`, a request line then silence, one byte a second), or an HTTP/1.1 request body read that waits [`Server::body_read_timeout`] for a byte | nothing | RST once everything written before is ACKed (`SIOCOUTQ` = 0) | nobody |
//! | the client takes none of a response for [`Server::send_timeout`]: no byte written, no body frame taken, no byte newly ACKed (a client that stopped reading; h2 streams with a zero window) | nothing more | RST at once: nothing more can be delivered | nobody |
//! | an h2 connection asked to end (GOAWAY: idle, max requests, shutdown) that then sits with nothing in flight and nothing moving for the grace (at least 1 s), answering neither the GOAWAY nor its PING | nothing more | as for `Connection: close`: the grace, then RST once ACKed | nobody |
//!
//! **Abuse bounds.** Every connection is cut when its client is too slow to
//! send a request ([`Server::header_read_timeout`], 30 s by default, counted
//! from the head's first byte so a trickle does not extend it;
//! [`Server::body_read_timeout`], 60 s) or stops taking a response
//! ([`Server::send_timeout`], 60 s; a slow reader whose kernel keeps ACKing is
//! never cut); the connection's [`Cause`] says which. Memory per connection is
//! bounded by hyper's buffers: [`Server::max_buf_size`] (HTTP/1.1, 64 KiB) and
//! [`Server::h2_max_concurrent_streams`] × [`Server::h2_max_send_buf_size`]
//! (h2, 100 × 64 KiB), provided the service streams large bodies rather than
//! building them whole.
//!
//! **Where the wait for the client's FIN runs.** Most clients close within a
//! round trip of a `Connection: close` response. So the first part of the
//! wait (at most 250 ms, or the grace if shorter) runs inside the
//! connection's own task, on its own timer, before hyper lets go of the
//! socket; a client that closes by then meets a teardown that ends at once,
//! inside the hand-over (no waiting teardown of its own: see
//! [`farewell::Handoff::peer_fin_read`]). A later FIN finds the teardown
//! waiting as the table says, with the whole grace. Over TLS the teardown
//! sends `close_notify` first, so the whole wait is the teardown's.
//!
//! **Why an idle HTTP/1.1 connection is reset rather than given a grace.**
//! HTTP/1.1 has no message that tells a client "this idle connection is going
//! away": a grace would wait for a FIN the client has no reason to send. A
//! reset is safe there: the last response was written long ago, and the reset
//! is sent only once the client's kernel has ACKed everything (`SIOCOUTQ` = 0),
//! so no response byte can be lost. The only request it can hit is one that
//! crosses it on the wire; a client sees that as a reset of a reused connection,
//! which HTTP clients retry just as they retry after a FIN on a reused
//! connection (RFC 9112 §9.3.1). A FIN instead would leave TIME-WAIT on the
//! server for every idle connection it ends.
//!
//! **Why a client that reads until the close gets a FIN, reset on its ACK.**
//! A body of unknown length to an HTTP/1.0 client has no end but the server's
//! close (RFC 9112 §6.3), and an HTTP/1.0 client without keep-alive reads any
//! response until that close (RFC 9112 §9.3) and sends no FIN before it, so
//! here the server must send the first FIN; waiting for the client's instead
//! would cost it the grace and then a reset (`ab` aborts:
//! `apr_socket_recv: Connection reset by peer`). Waiting in
//! user space for that FIN's ACK before the reset (fin-then-reset) loses the
//! race to the client's own FIN every time on Linux, which delays the ACK of a
//! FIN to send it with its own: the server would keep TIME-WAIT. So the server
//! waits until the whole body is ACKed, then closes with `TCP_LINGER2` = -1
//! ([`farewell::sys::close_reset_on_fin_ack`]): the kernel answers the ACK of
//! the FIN with an RST before it looks at a FIN riding on it. The client reads
//! the response and the end of file, and nobody keeps TIME-WAIT. Counted in
//! [`ServeReport::close_delimited`]. An HTTP/1.1 client that sent
//! `Connection: close` is not such a client: it stops at the end of the framed
//! response and closes itself, so the policy serves it. Over TLS,
//! `close_notify` ends the response and the policy runs as usual.
//!
//! With [`Policy::Plain`](farewell::Policy::Plain) the server closes like plain
//! hyper (FIN first; TIME-WAIT on the server); the other policies behave as the
//! [`farewell::policy`] table says. Every teardown's [`farewell::Outcome`] can
//! be observed with [`Server::on_outcome`]; [`ServeReport`] counts them by
//! [`farewell::Ending`]. The teardown sees only the socket, so its outcome
//! says `goodbye none-sent` (hyper, not the teardown, wrote the last
//! response); [`Server::on_connection`] gives the HTTP side of the same end
//! as a [`ConnectionOutcome`]: the [`Cause`] (client asked, request limit,
//! idle, shutdown, upgrade, error, ...), the requests served, and whether the
//! last response was delivered (ACKed by the client's kernel);
//! [`ServeReport::causes`] counts connections by cause.
//!
//! # TLS
//!
//! With the `rustls` feature, `Server::tls` serves every connection over TLS
//! (ALPN h2 and http/1.1). The table above holds inside TLS: the last response,
//! then `close_notify` with **no FIN** (tokio-rustls's own `shutdown()` sends a
//! FIN right after it, which leaves TIME-WAIT on the server), then the policy
//! on the TCP stream. The outcome's
//! [`peer_close_notify`](farewell::Outcome::peer_close_notify) says whether the
//! client's own `close_notify` came; a failed or stalled handshake
//! (`Server::tls_handshake_timeout`) ends with the policy, after rustls's
//! alert where TLS has one.
//!
//! # Example: axum
//!
//! [`serve`] is a drop-in for `axum::serve`: the same call, with
//! `.with_graceful_shutdown(..)`, `into_make_service()` and
//! `into_make_service_with_connect_info::<SocketAddr>()` (see [`Serve`] for
//! what differs). For every setting and a report at the end, use [`Server`]:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let app = Router::new().route("/", get(|| async { "hello\n" }));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     // Instead of `axum::serve(listener, app).await?`:
//!     let report = farewell_http::Server::new()
//!         .serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
//!         .await?;
//!     eprintln!("{report}"); // e.g. "12 connections, 40 requests, 0 forced at shutdown; teardowns: ..."
//!     Ok(())
//! }
//! ```
//!
//! # Example: a plain hyper service
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::service::service_fn;
//! use hyper::{Request, Response};
//!
//! async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
//! }
//!
//! # #[allow(dead_code)]
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! let report = farewell_http::Server::new()
//!     .serve_hyper(listener, service_fn(hello), async {
//!         let _ = stopped.await;
//!     })
//!     .await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! # Notes
//!
//! An HTTP/1.1 request without `Host` is answered with 400 and
//! `Connection: close` by the server itself (RFC 9112 §3.2: hyper does not
//! check); the service never sees it.
//!
//! # Upgrades (WebSocket) and the shutdown signal
//!
//! HTTP/1.1 upgrades are served (`hyper::upgrade::on`): the upgraded stream
//! still holds the wrapper, and the server keeps track of it after hyper is
//! done. A WebSocket has its own goodbye, the close frame, and after the close
//! handshake the client waits for the server to close TCP (RFC 6455 §7.1.1,
//! §7.1.2; Python `websockets` waits, Node `ws` ends its side itself). So
//! when the handler drops the stream, the server ends it as it ends a
//! close-delimited body: everything written ACKed, then its FIN, reset by the
//! kernel on that FIN's ACK; the client reads the end of file at once and
//! nobody keeps TIME-WAIT ([`ServeReport::upgrades_closed`]). The keep-alive
//! idle timeout does not apply to an upgraded connection; its own bound is
//! [`Server::upgrade_idle_timeout`] (no byte either way; ping/pong counts).
//!
//! [`Server::shutdown_handle`] gives handlers the server's [`Shutdown`]
//! signal (take it before serving; axum: `State<Shutdown>`, or captured by a
//! `service_fn`). When the server shuts down, a WebSocket handler sends close
//! 1001 ("going away", RFC 6455 §7.4.1), reads the client's close, and drops
//! the stream; the drain waits for it up to [`Server::shutdown_timeout`]. At
//! the deadline, upgraded streams still held are cut (reads and writes fail
//! with `ErrorKind::TimedOut`), reset once their bytes are ACKed, and counted
//! in [`ServeReport::forced`]. Handlers that take `Extension<Shutdown>` need
//! [`Server::shutdown_extension`]`(true)` (off by default: an allocation per
//! request).
//!
//! Over TLS (`Server::tls`), an upgraded stream ends with `close_notify` and
//! the policy, as any TLS connection does: no FIN-first ending there.
//!
//! **What a WebSocket handler must bound itself.** After the upgrade the
//! handler's library owns the protocol, and its buffers are out of
//! farewell-http's sight: the server bounds what it can see (idle streams,
//! the shutdown deadline, a socket whose writes stall), not what a library
//! queues without writing. tungstenite (and so tokio-tungstenite and axum's
//! `WebSocket`) answers every ping with a pong it queues, and its
//! `max_write_buffer_size` is unbounded by default: a client that sends
//! pings and never reads grew a server by about 1 GB in 2.5 s. Set
//! `WebSocketConfig::max_write_buffer_size` (the demo of `farewell
//! serve-http` uses 2 MiB + 128 KiB: room for one largest echo) and
//! `max_message_size`; past the first, the handler's write fails, it ends,
//! and the server ends the connection (our FIN once delivered; a client that
//! never reads is reset when delivery stalls or the drain limit is reached).
//!
//! ```no_run
//! use axum::extract::{Request, State};
//! use axum::{routing::get, Router};
//! use farewell_http::{Server, Shutdown};
//!
//! async fn ws(State(shutdown): State<Shutdown>, request: Request) -> &'static str {
//!     // Upgrade with `hyper::upgrade::on(request)`, then, in the socket's task:
//!     // tokio::select! { msg = socket.next() => ..., () = shutdown.requested() => {
//!     //     send close 1001, read until the client's close, return } }
//!     # let _ = (shutdown, request);
//!     "..."
//! }
//! # #[allow(dead_code)]
//! # fn app(server: &Server) -> Router {
//! Router::new().route("/ws", get(ws)).with_state(server.shutdown_handle())
//! # }
//! ```
//!
//! # Read-ahead
//!
//! Read-ahead bytes hyper had buffered past the last response
//! (pipelined requests after a `Connection: close`) are discarded, as
//! RFC 9112 §9.3.2 allows.
//!
//! Connections beyond [`Server::max_connections`] (by default, what the
//! descriptor limit allows: [`farewell::accept::default_max_connections`])
//! get a 503 (one non-blocking write, plain HTTP only) and are reset at
//! accept: one RST, no task, no TIME-WAIT; so are the clients
//! waiting in the backlog when the process runs out of descriptors all the
//! same. Accept errors pause the accept loop (growing, at most
//! [`MAX_ACCEPT_BACKOFF`]) while the open connections are served, with one
//! warning per burst ([`farewell::accept::AcceptBackoff`]). Both are counted
//! in the [`ServeReport`].
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "axum")]
pub mod axum;
mod conn;
mod decide;
mod delimited;
mod io;
pub mod metrics;
mod record;
mod serve;
mod server;
mod service;
mod shutdown;
mod upgrade;

pub use record::{Cause, ConnectionOutcome};
pub use serve::{
    serve, BoxError, Listener, MadeService, MakeConnectionService, MakeServiceMarker, Serve,
    ServeFuture, ServiceMarker, WithGracefulShutdown,
};
#[cfg(feature = "rustls")]
pub use server::DEFAULT_TLS_HANDSHAKE_TIMEOUT;
pub use server::{
    ServeReport, Server, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_DRAIN_LIMIT,
    DEFAULT_H2_MAX_CONCURRENT_STREAMS, DEFAULT_H2_MAX_HEADER_LIST_SIZE,
    DEFAULT_H2_MAX_SEND_BUF_SIZE, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_BUF_SIZE,
    DEFAULT_SEND_TIMEOUT, DEFAULT_UPGRADE_IDLE_TIMEOUT, MAX_ACCEPT_BACKOFF,
};
pub use shutdown::Shutdown;

/// rustls, as farewell-http uses it (feature `rustls`): build the
/// [`rustls::ServerConfig`] for [`Server::tls`] with it, so the versions match.
#[cfg(feature = "rustls")]
pub use farewell::tls::rustls;

/// The README's examples, compiled as doc tests (this crate's and the
/// workspace's, whose HTTP section shows the drop-in).
#[cfg(doctest)]
#[doc(test(attr(allow(dead_code))))]
#[doc = include_str!("../README.md")]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
