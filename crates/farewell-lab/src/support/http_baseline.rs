//! Plain hyper, served the way most servers do it: the yardstick for
//! `farewell bench http` and for tests that must be able to fail.
//!
//! Each connection is served by hyper-util's `auto::Builder` on a plain
//! `TcpStream`; when hyper ends a connection it calls `shutdown()` (our FIN goes
//! first) and drops the socket, so every connection the server ends leaves a
//! TIME-WAIT entry on the server (farewell::facts [F1](farewell::facts#f1)). [`serve_tls`] does the same
//! over tokio-rustls, whose `shutdown()` sends close_notify and then the FIN.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use farewell::tls::tokio_rustls::TlsAcceptor;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What every baseline serves: a hyper service (the demo's `service_fn`, say)
/// that hyper-util can run on any connection.
pub trait BaselineService<B>:
    Service<
        Request<Incoming>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<Box<dyn StdError + Send + Sync>>,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> BaselineService<B> for S where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Future: Send + 'static,
            Error: Into<Box<dyn StdError + Send + Sync>>,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The response body a [`BaselineService`] gives.
pub trait BaselineBody:
    http_body::Body<Data: Send, Error: Into<Box<dyn StdError + Send + Sync>>> + Send + 'static
{
}

impl<B> BaselineBody for B where
    B: http_body::Body<Data: Send, Error: Into<Box<dyn StdError + Send + Sync>>> + Send + 'static
{
}

/// Which plain-hyper yardstick to serve ([`serve_as`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// hyper-util's `auto` builder as it comes: when hyper ends a
    /// connection, our FIN goes first ([`serve`]).
    Plain,
    /// No FIN from the server: a connection hyper ends waits for the
    /// client's FIN (or an error, or 2 s), then closes, as peer-first's light
    /// ending does; nothing else differs. It prices that one event (waking
    /// for the client's FIN, the read that finds it, the passive close: the
    /// client keeps TIME-WAIT) apart from the rest of farewell-http. The
    /// stream comes back from hyper through a oneshot channel (one
    /// allocation per connection). A yardstick, not a server to deploy: a
    /// client that never closes holds its connection for the 2 s.
    PassiveClose,
    /// The one defence hyper itself offers: its HTTP/1 header-read timeout
    /// (30 s, as farewell-http's default, on hyper-util's `TokioTimer`),
    /// which arms a timer per request.
    HeaderReadTimeout,
}

/// Serves `service` on `listener` with plain hyper until `shutdown` completes;
/// then asks every connection to finish (bounded by `shutdown_timeout`) and
/// returns how many connections were accepted.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    shutdown_timeout: Duration,
) -> u64
where
    S: BaselineService<B>,
    B: BaselineBody,
{
    serve_as(
        Baseline::Plain,
        listener,
        service,
        shutdown,
        shutdown_timeout,
    )
    .await
}

/// As [`serve`], the way `baseline` says (`farewell bench overhead` prices
/// farewell-http against each).
pub async fn serve_as<S, B>(
    baseline: Baseline,
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    shutdown_timeout: Duration,
) -> u64
where
    S: BaselineService<B>,
    B: BaselineBody,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if baseline == Baseline::HeaderReadTimeout {
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
    }
    let accept = Accept {
        tls: None,
        passive: baseline == Baseline::PassiveClose,
    };
    accept_loop(
        builder,
        listener,
        accept,
        service,
        shutdown,
        shutdown_timeout,
    )
    .await
}

/// As [`serve`], over TLS: hyper-util on tokio-rustls, as a hand-rolled
/// hyper + rustls server does it (a 10 s handshake timeout; a failed
/// handshake just drops the stream).
pub async fn serve_tls<S, B>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    service: S,
    shutdown: impl Future<Output = ()>,
    shutdown_timeout: Duration,
) -> u64
where
    S: BaselineService<B>,
    B: BaselineBody,
{
    let accept = Accept {
        tls: Some(acceptor),
        passive: false,
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    accept_loop(
        builder,
        listener,
        accept,
        service,
        shutdown,
        shutdown_timeout,
    )
    .await
}

/// How the accept loop takes a connection: over TLS, and (plain TCP only)
/// without a FIN of ours ([`Baseline::PassiveClose`]).
struct Accept {
    tls: Option<TlsAcceptor>,
    passive: bool,
}

/// The accept loop of every baseline, with `builder`'s settings.
async fn accept_loop<S, B>(
    builder: auto::Builder<TokioExecutor>,
    listener: TcpListener,
    Accept { tls, passive }: Accept,
    service: S,
    shutdown: impl Future<Output = ()>,
    shutdown_timeout: Duration,
) -> u64
where
    S: BaselineService<B>,
    B: BaselineBody,
{
    let builder = std::sync::Arc::new(builder);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut accepted = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            next = listener.accept() => {
                let Ok((stream, _)) = next else { continue };
                let _ = stream.set_nodelay(true);
                accepted += 1;
                let builder = std::sync::Arc::clone(&builder);
                let service = service.clone();
                let stop = stop_rx.clone();
                match &tls {
                    None if passive => tasks.spawn(async move {
                        let (back, returned) = tokio::sync::oneshot::channel();
                        let io = PassiveIo { stream: Some(stream), back: Some(back) };
                        serve_one(builder, io, service, stop).await;
                        if let Ok(stream) = returned.await {
                            wait_for_fin(stream, PASSIVE_FIN_WAIT).await;
                        }
                    }),
                    None => tasks.spawn(serve_one(builder, stream, service, stop)),
                    Some(acceptor) => {
                        let accept = acceptor.accept(stream);
                        tasks.spawn(async move {
                            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), accept).await else {
                                return;
                            };
                            serve_one(builder, stream, service, stop).await;
                        })
                    }
                };
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    accepted
}

/// Serves one connection until it ends or the server stops (then gracefully).
async fn serve_one<IO, S, B>(
    builder: std::sync::Arc<auto::Builder<TokioExecutor>>,
    io: IO,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: BaselineService<B>,
    B: BaselineBody,
{
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// How long [`Baseline::PassiveClose`] waits for a client's FIN.
const PASSIVE_FIN_WAIT: Duration = Duration::from_secs(2);

/// A TCP stream whose `shutdown()` sends nothing and which goes back to its
/// connection's task when hyper drops it ([`Baseline::PassiveClose`]).
struct PassiveIo {
    stream: Option<TcpStream>,
    back: Option<tokio::sync::oneshot::Sender<TcpStream>>,
}

impl PassiveIo {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("held until dropped"))
    }
}

impl Drop for PassiveIo {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            let _ = back.send(stream);
        }
    }
}

impl AsyncRead for PassiveIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for PassiveIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    /// No FIN: the client closes first.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Reads (and drops) until the client's FIN, an error or `bound`; the
/// caller then drops the stream: a passive close.
async fn wait_for_fin(stream: TcpStream, bound: Duration) {
    let _ = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 512];
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}
