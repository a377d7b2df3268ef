//! The server's shutdown, as a handler sees it: a signal a long-lived handler
//! (a WebSocket, a stream) awaits to say its own goodbye before the drain
//! deadline.

use tokio::sync::watch;

/// Tells a handler that the server is shutting down.
///
/// Take one from [`Server::shutdown_handle`](crate::Server::shutdown_handle)
/// before serving and give it to the handlers once (axum's `State`, or a
/// `service_fn` closure that captures it). It is cheap to clone (no
/// allocation). [`Server::shutdown_extension`](crate::Server::shutdown_extension)
/// puts one in every request's extensions instead, for handlers that take
/// `Extension<Shutdown>`; that costs an allocation per request, so it is off
/// by default.
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
/// # fn app(server: &Server) -> Router {
/// Router::new().route("/slow", get(slow)).with_state(server.shutdown_handle())
/// # }
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
