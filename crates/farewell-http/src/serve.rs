//! The drop-in for `axum::serve`: the free [`serve`] function, its
//! [`Serve`] and [`WithGracefulShutdown`] futures, the [`Listener`] it
//! accepts from, and [`MakeConnectionService`], which lets it take a plain
//! service (an axum `Router`, a `BoxCloneService`) or a make-service
//! (`into_make_service()`, `into_make_service_with_connect_info::<SocketAddr>()`).
//!
//! How it differs from axum 0.8's `serve` (`axum/src/serve/mod.rs`) is
//! listed on [`Serve`].

use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};

use crate::Server;

/// A boxed error, as hyper and tower use them.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Where a server takes its connections from: TCP streams, because the
/// teardown policy runs on the TCP socket.
///
/// Implemented for tokio's [`TcpListener`] and, with the `axum` feature, for
/// axum's `TapIo` (`listener.tap_io(..)`) and `farewell_http::axum::AxumListener`
/// (any axum `Listener` of TCP streams).
///
/// # Examples
///
/// A listener of your own, e.g. one that counts what it accepts:
///
/// ```
/// use std::net::SocketAddr;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// use tokio::net::{TcpListener, TcpStream};
///
/// struct Counting(TcpListener, Arc<AtomicU64>);
///
/// impl farewell_http::Listener for Counting {
///     async fn accept(&mut self) -> std::io::Result<(TcpStream, SocketAddr)> {
///         let accepted = self.0.accept().await?;
///         self.1.fetch_add(1, Ordering::Relaxed);
///         Ok(accepted)
///     }
///
///     fn local_addr(&self) -> std::io::Result<SocketAddr> {
///         self.0.local_addr()
///     }
/// }
/// # let _ = |l: TcpListener, app: axum::Router| {
/// #     farewell_http::serve(Counting(l, Arc::default()), app)
/// # };
/// ```
pub trait Listener: Send + 'static {
    /// Accepts the next connection. An error is logged by the server, which
    /// pauses when descriptors run out and tries again.
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send;

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The tokio listener underneath, if there is one. When the process runs
    /// out of descriptors, the server uses it to shed the clients waiting in
    /// the listen backlog at once (see
    /// [`AcceptBackoff::shed_pending`](farewell::accept::AcceptBackoff::shed_pending))
    /// instead of leaving them to wait. `None` by default.
    fn tcp_listener(&self) -> Option<&TcpListener> {
        None
    }
}

impl Listener for TcpListener {
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }

    fn tcp_listener(&self) -> Option<&TcpListener> {
        Some(self)
    }
}

/// The marker of [`MakeConnectionService`] for a service that is cloned for
/// each connection (an axum `Router`, a `BoxCloneService`).
#[derive(Debug)]
pub enum ServiceMarker {}

/// The marker of [`MakeConnectionService`] for a make-service, called with
/// the client's address for each connection (`into_make_service()`,
/// `into_make_service_with_connect_info::<SocketAddr>()`).
#[derive(Debug)]
pub enum MakeServiceMarker {}

/// What [`serve`] and [`Server::serve`] accept: something that gives the
/// tower service for each connection.
///
/// Implemented for
/// - every `S: Service<Request<Incoming>, Response = Response<B>> + Clone`
///   (marker [`ServiceMarker`]): each connection gets a clone; `S` need not
///   be `Sync`, so `tower::util::BoxCloneService` works;
/// - every make-service `M: Service<SocketAddr, Response = S>` with such an
///   `S` (marker [`MakeServiceMarker`]): called with the client's address
///   for each connection, as axum's `IntoMakeService` and
///   `IntoMakeServiceWithConnectInfo<_, SocketAddr>` (which inserts
///   `ConnectInfo<SocketAddr>` into every request).
///
/// The marker type parameter keeps the two blanket implementations apart;
/// the compiler infers it, so callers never name it.
///
/// The accept loop awaits the make-service's readiness and its call before
/// it accepts the next connection (as axum's does): keep them quick. A
/// make-service that fails gets its connection ended with the quiet policy
/// (reset once anything written is ACKed; nothing was).
pub trait MakeConnectionService<Marker>: Send + 'static {
    /// The body of the service's responses.
    type Body: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;

    /// The service that serves one connection (its requests call clones of it).
    type Service: tower_service::Service<
            Request<Incoming>,
            Response = Response<Self::Body>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static;

    /// The future of [`MakeConnectionService::make_service`].
    type Future: Future<Output = Result<Self::Service, BoxError>> + Send;

    /// Whether [`MakeConnectionService::make_service`] may be called (tower's
    /// `poll_ready`).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;

    /// The service for the connection from `peer`.
    fn make_service(&mut self, peer: SocketAddr) -> Self::Future;
}

impl<S, B> MakeConnectionService<ServiceMarker> for S
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
    type Service = S;
    type Future = std::future::Ready<Result<S, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The service's own readiness is polled per request, on the clone.
        Poll::Ready(Ok(()))
    }

    fn make_service(&mut self, _: SocketAddr) -> Self::Future {
        std::future::ready(Ok(self.clone()))
    }
}

impl<M, S, B> MakeConnectionService<MakeServiceMarker> for M
where
    M: tower_service::Service<SocketAddr, Response = S> + Send + 'static,
    M::Error: Into<BoxError>,
    M::Future: Send,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
    type Service = S;
    type Future = MadeService<M::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::poll_ready(self, cx).map_err(Into::into)
    }

    fn make_service(&mut self, peer: SocketAddr) -> Self::Future {
        MadeService {
            inner: tower_service::Service::call(self, peer),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of a make-service's call, its error boxed.
    #[derive(Debug)]
    pub struct MadeService<F> {
        #[pin]
        inner: F,
    }
}

impl<F, S, E> Future for MadeService<F>
where
    F: Future<Output = Result<S, E>>,
    E: Into<BoxError>,
{
    type Output = Result<S, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

/// Serves `make_service` on `listener` with the default [`Server`]: a drop-in
/// for `axum::serve`, whose shape it has.
///
/// Await the returned [`Serve`] to serve until the process ends, or call
/// [`Serve::with_graceful_shutdown`] to stop on a signal. Every connection
/// ends with the server's teardown policy (peer-first: no TIME-WAIT on the
/// server, no response cut short); see the [crate docs](crate). The
/// differences from axum's `serve` are listed in [`Serve`].
///
/// `make_service` is a tower service cloned per connection (an axum
/// `Router`, a `tower::util::BoxCloneService`) or a make-service called with
/// the client's address (`app.into_make_service()`,
/// `app.into_make_service_with_connect_info::<SocketAddr>()`): see
/// [`MakeConnectionService`].
///
/// # Examples
///
/// ```no_run
/// use std::net::SocketAddr;
///
/// use axum::extract::ConnectInfo;
/// use axum::{routing::get, Router};
///
/// # #[allow(dead_code)]
/// # async fn demo() -> std::io::Result<()> {
/// async fn hello(ConnectInfo(client): ConnectInfo<SocketAddr>) -> String {
///     format!("hello {client}\n")
/// }
///
/// let app = Router::new().route("/", get(hello));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// // was: axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
/// farewell_http::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// # Ok(()) }
/// ```
pub fn serve<L, M, Marker>(listener: L, make_service: M) -> Serve<L, M, Marker>
where
    L: Listener,
    M: MakeConnectionService<Marker>,
{
    Serve {
        listener,
        make_service,
        server: Server::new(),
        _marker: PhantomData,
    }
}

/// A server not yet started, returned by [`serve`]: await it (it is
/// [`IntoFuture`]) or call [`Serve::with_graceful_shutdown`].
///
/// Shaped like axum 0.8's `Serve`; it differs in these ways:
///
/// - The listener gives TCP streams ([`Listener`]): the teardown runs on the
///   TCP socket. Unix sockets are not served.
/// - A make-service is called with the client's [`SocketAddr`], not axum's
///   `IncomingStream` (which only axum can build). axum implements
///   `Connected<SocketAddr> for SocketAddr`, so `ConnectInfo<SocketAddr>`
///   works; a custom `Connected<IncomingStream<..>>` does not.
/// - The service's request is `Request<hyper::body::Incoming>`; its error and
///   response body may be any (axum wants `Infallible` and axum's `Body`).
/// - Graceful shutdown is bounded by [`Server::shutdown_timeout`] (10 s by
///   default): then the laggards are ended with the policy. axum waits for
///   them forever.
/// - axum turns on h2's extended CONNECT (WebSockets over h2) when built
///   with its `http2` feature; here it is off unless you ask:
///   `Server::new().http2(|h2| { h2.enable_connect_protocol(); })`.
/// - [`Serve::with_server`] chooses the [`Server`] settings (policy, grace,
///   timeouts, hyper's HTTP/1 and HTTP/2 settings).
/// - When it stops, the [`ServeReport`](crate::ServeReport) of the teardowns
///   is logged (tracing, debug level); [`Server::serve`] returns it instead.
#[must_use = "futures must be awaited or polled"]
pub struct Serve<L, M, Marker> {
    listener: L,
    make_service: M,
    server: Server,
    _marker: PhantomData<fn() -> Marker>,
}

impl<L, M, Marker> Serve<L, M, Marker>
where
    L: Listener,
{
    /// Stops accepting when `signal` completes, then ends every connection
    /// gracefully (bounded by [`Server::shutdown_timeout`]): in-flight
    /// responses finish with `Connection: close` (h2: GOAWAY), idle
    /// keep-alive connections are ended at once, and none leaves TIME-WAIT
    /// on the server.
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<L, M, Marker, F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }

    /// Serves with these settings instead of [`Server::new`]'s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(app: axum::Router) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// let server = farewell_http::Server::new().grace(Duration::from_secs(5));
    /// farewell_http::serve(listener, app).with_server(server).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_server(mut self, server: Server) -> Self {
        self.server = server;
        self
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl<L, M, Marker> fmt::Debug for Serve<L, M, Marker>
where
    L: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl<L, M, Marker> IntoFuture for Serve<L, M, Marker>
where
    L: Listener,
    M: MakeConnectionService<Marker>,
    Marker: 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> ServeFuture {
        ServeFuture(Box::pin(async move {
            let report = self
                .server
                .serve(self.listener, self.make_service, std::future::pending())
                .await?;
            tracing::debug!(%report, "farewell-http stopped");
            Ok(())
        }))
    }
}

/// A server that stops on a signal, returned by
/// [`Serve::with_graceful_shutdown`]: await it (it is [`IntoFuture`]).
#[must_use = "futures must be awaited or polled"]
pub struct WithGracefulShutdown<L, M, Marker, F> {
    serve: Serve<L, M, Marker>,
    signal: F,
}

impl<L, M, Marker, F> WithGracefulShutdown<L, M, Marker, F>
where
    L: Listener,
{
    /// Serves with these settings instead of [`Server::new`]'s
    /// (as [`Serve::with_server`]).
    pub fn with_server(mut self, server: Server) -> Self {
        self.serve.server = server;
        self
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.serve.local_addr()
    }
}

impl<L, M, Marker, F> fmt::Debug for WithGracefulShutdown<L, M, Marker, F>
where
    L: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

impl<L, M, Marker, F> IntoFuture for WithGracefulShutdown<L, M, Marker, F>
where
    L: Listener,
    M: MakeConnectionService<Marker>,
    Marker: 'static,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> ServeFuture {
        let Serve {
            listener,
            make_service,
            server,
            _marker,
        } = self.serve;
        ServeFuture(Box::pin(async move {
            let report = server.serve(listener, make_service, self.signal).await?;
            // `Server::serve` returns this report; the drop-in, shaped like
            // axum's, returns `()` and logs it.
            tracing::debug!(%report, "farewell-http stopped");
            Ok(())
        }))
    }
}

/// The future of an awaited [`Serve`] or [`WithGracefulShutdown`]: resolves
/// when the server has stopped and every connection has ended.
///
/// # Errors
///
/// None today (accept errors are logged and retried); the `io::Result`
/// matches axum's.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ServeFuture(Pin<Box<dyn Future<Output = io::Result<()>> + Send>>);

impl Future for ServeFuture {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for ServeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeFuture").finish_non_exhaustive()
    }
}
