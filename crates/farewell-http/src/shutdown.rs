//! The server's shutdown, as a handler sees it: a signal in every request's
//! extensions, so a long-lived handler (a WebSocket, a stream) can say its
//! own goodbye before the drain deadline.

use tokio::sync::watch;

/// Tells a handler that the server is shutting down.
///
/// [`Server`](crate::Server) puts one in the extensions of every request it
/// hands to the service: take it with `request.extensions().get::<Shutdown>()`
/// (hyper) or as `Extension<Shutdown>` (axum). It is cheap to clone.
///
/// When the server's `shutdown` future completes, the server stops accepting,
/// and every `Shutdown` is requested. A handler of an upgraded connection
/// then says the protocol's goodbye (a WebSocket close frame with code 1001,
/// "going away", RFC 6455 §7.4.1) and finishes; the server waits for it, up
/// to its shutdown timeout ([`Server::shutdown_timeout`](crate::Server::shutdown_timeout)).
/// After that, reads and writes on the upgraded connection fail, and the
/// connection is reset once everything written is ACKed.
///
/// # Examples
///
/// ```no_run
/// use axum::{routing::get, Extension, Router};
/// use farewell_http::Shutdown;
///
/// async fn slow(Extension(shutdown): Extension<Shutdown>) -> &'static str {
///     tokio::select! {
///         () = tokio::time::sleep(std::time::Duration::from_secs(30)) => "done\n",
///         () = shutdown.requested() => "server shutting down, try again\n",
///     }
/// }
///
/// # #[allow(dead_code)]
/// # fn app() -> Router { Router::new().route("/slow", get(slow)) }
/// ```
#[derive(Clone, Debug)]
pub struct Shutdown {
    stop: watch::Receiver<bool>,
}

impl Shutdown {
    pub(crate) fn new(stop: watch::Receiver<bool>) -> Shutdown {
        Shutdown { stop }
    }

    /// Whether the server's shutdown has begun.
    pub fn is_requested(&self) -> bool {
        *self.stop.borrow()
    }

    /// Completes when the server's shutdown begins (at once if it has).
    ///
    /// If the server is gone without a shutdown (its task dropped), this
    /// completes too: nobody is left to wait for the handler.
    pub async fn requested(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|stop| *stop).await;
    }
}
