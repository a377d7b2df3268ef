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
use std::time::Duration;

use farewell::tls::tokio_rustls::TlsAcceptor;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

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
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    serve_maybe_tls(listener, None, service, shutdown, shutdown_timeout).await
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
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    serve_maybe_tls(
        listener,
        Some(acceptor),
        service,
        shutdown,
        shutdown_timeout,
    )
    .await
}

async fn serve_maybe_tls<S, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S,
    shutdown: impl Future<Output = ()>,
    shutdown_timeout: Duration,
) -> u64
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let builder = std::sync::Arc::new(auto::Builder::new(TokioExecutor::new()));
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
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}
