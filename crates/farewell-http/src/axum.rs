//! axum's listeners (feature `axum`): `listener.tap_io(..)` and any axum
//! [`Listener`](::axum::serve::Listener) of TCP streams.
//!
//! [`serve`](crate::serve) needs the TCP socket of every connection (the
//! teardown runs on it), so it takes listeners of [`TcpStream`]s with
//! [`SocketAddr`] addresses. axum's `TapIo` (from
//! [`ListenerExt::tap_io`](::axum::serve::ListenerExt::tap_io)) over a tokio
//! `TcpListener` is accepted as it is; any other axum listener of that kind
//! goes through [`AxumListener`]. A listener of other streams (Unix sockets,
//! TLS streams made by the listener) cannot be served: the teardown needs
//! the TCP socket itself. For TLS, use [`Server::tls`](crate::Server) (feature
//! `rustls`).
//!
//! How accept errors are handled differs: a tokio `TcpListener` given
//! directly goes through farewell-http's accept loop (logged, a short pause
//! when descriptors run out); an axum listener handles its own errors (axum
//! logs them and pauses 1 s) and never returns one.
//!
//! # Examples
//!
//! ```no_run
//! use axum::serve::ListenerExt;
//! use axum::{routing::get, Router};
//!
//! # #[allow(dead_code)]
//! # async fn demo() -> std::io::Result<()> {
//! let app = Router::new().route("/", get(|| async { "hello\n" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080")
//!     .await?
//!     .tap_io(|tcp| {
//!         let _ = tcp.set_ttl(64);
//!     });
//! farewell_http::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use ::axum::serve::{Listener as AxumListenerTrait, TapIo};
use tokio::net::TcpStream;

use crate::Listener;

/// axum's `tap_io` over a listener of TCP streams: accepted as it is.
impl<L, F> Listener for TapIo<L, F>
where
    TapIo<L, F>: AxumListenerTrait<Io = TcpStream, Addr = SocketAddr>,
{
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        let accepted = AxumListenerTrait::accept(self);
        async move { Ok(accepted.await) }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        AxumListenerTrait::local_addr(self)
    }
}

/// Any axum [`Listener`](::axum::serve::Listener) of TCP streams, as a
/// farewell-http [`Listener`].
///
/// # Examples
///
/// ```no_run
/// use farewell_http::axum::AxumListener;
///
/// # #[allow(dead_code)]
/// # async fn demo<L>(listener: L, app: axum::Router) -> std::io::Result<()>
/// # where L: axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
/// farewell_http::serve(AxumListener(listener), app).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AxumListener<L>(pub L);

impl<L> Listener for AxumListener<L>
where
    L: AxumListenerTrait<Io = TcpStream, Addr = SocketAddr>,
{
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        let accepted = self.0.accept();
        async move { Ok(accepted.await) }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
