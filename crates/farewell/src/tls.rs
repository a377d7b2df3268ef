//! TLS over TCP (tokio-rustls): say goodbye inside TLS, send `close_notify`
//! with **no TCP FIN**, then run the policy on the TCP stream.
//!
//! A TLS server that ends a connection the usual way, tokio-rustls's
//! `shutdown()`, sends `close_notify` and then shuts down the TCP write side:
//! the FIN goes first and the server keeps TIME-WAIT, as it would over plain
//! TCP (verified on Linux 6.x: `tests/it/tls.rs`,
//! `tokio_rustls_shutdown_sends_a_fin_and_leaves_server_time_wait`).
//! rustls's maintainers point to `send_close_notify()` followed by a flush
//! instead (rustls/tokio-rustls PR #102, issue #64). This module does that,
//! and then hands the TCP stream to the teardown:
//!
//! 1. the goodbye (the protocol's last message, may be empty) is encrypted,
//!    then the `close_notify` alert; both are written by the teardown as its
//!    goodbye, so they are delivered and confirmed (`SIOCOUTQ` = 0) exactly as
//!    a plain goodbye is;
//! 2. the policy runs on the TCP stream. Under [`Policy::PeerFirst`] the server
//!    reads and discards until the peer's FIN and closes passively (the *peer*
//!    keeps TIME-WAIT), or resets once everything written, `close_notify`
//!    included, is ACKed (nobody keeps it);
//! 3. the bytes the teardown reads are decrypted on the way to the bin, so
//!    [`Outcome::peer_close_notify`] says whether the peer's own `close_notify`
//!    came (RFC 8446 §6.1: each side sends one; a TCP EOF without it is a
//!    truncation signal).
//!
//! A TLS 1.3 peer may keep sending after our `close_notify` (a half-closed TLS
//! connection is normal, RFC 8446 §6.1); whatever it sends is read and
//! discarded, within the policy's drain limit.
//!
//! Handshakes that fail or stall are ended the same way: [`accept`] bounds
//! the handshake; on failure rustls has already tried to write its alert, and
//! [`HandshakeError::close`] runs the policy on the TCP stream with nothing
//! more to say.
//!
//! The crypto provider is the caller's: this module only needs a
//! [`rustls::ServerConfig`]. farewell itself builds rustls with `ring`, so
//! enabling this feature does not compile aws-lc.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use farewell::tls::{self, tokio_rustls::TlsAcceptor};
//! use farewell::Policy;
//! use tokio::io::AsyncWriteExt;
//!
//! # #[allow(dead_code)]
//! # async fn demo(config: Arc<tls::rustls::ServerConfig>) -> std::io::Result<()> {
//! let acceptor = TlsAcceptor::from(config);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let (tcp, _) = listener.accept().await?;
//! let mut stream = match tls::accept(&acceptor, tcp, Duration::from_secs(10)).await {
//!     Ok(stream) => stream,
//!     Err(failed) => {
//!         // rustls wrote its alert (if TLS allows one); no FIN from us.
//!         let outcome = failed.close(Policy::default()).await;
//!         println!("{outcome}");
//!         return Ok(());
//!     }
//! };
//! stream.write_all(b"hello\n").await?;
//! // ... the protocol decides the client must go ...
//! let outcome = tls::close(stream, Policy::default(), &b"BYE idle\n"[..]).await;
//! println!("{outcome}"); // e.g. `... peer-closed, TIME-WAIT at peer, ..., peer close_notify`
//! # Ok(())
//! # }
//! ```
//!
//! # Notes
//!
//! Only [`tokio_rustls::server::TlsStream`] over a tokio [`TcpStream`] is
//! supported. Its own `poll_shutdown` must not have been called: that already
//! sent the FIN.
//!
//! A pending TLS teardown keeps its rustls connection (its state and record
//! buffers, kilobytes to tens of kilobytes) until the peer's `close_notify`
//! comes or the teardown ends, where a plain TCP teardown holds about 1 KB
//! (see [`Closer`]).

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::time::Duration;

use bytes::Bytes;
use rustls::ServerConnection;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::outcome::Outcome;
use crate::policy::Policy;
use crate::teardown::{teardown, Drain, NoHurry, Report};
use crate::{Closer, Closing, Handoff};

pub use rustls;
pub use tokio_rustls;

/// Tears a TLS stream down with `policy`: `goodbye` inside TLS, then
/// `close_notify`, **no FIN**, then the policy on the TCP stream; reports
/// what happened, with [`Outcome::peer_close_notify`] set.
///
/// As [`crate::close`] otherwise: it never blocks a thread, ends within the
/// policy's deadlines and always closes the descriptor. The outcome's
/// `goodbye_written` counts TLS record bytes (the encrypted goodbye and
/// `close_notify`), and `bytes_drained` the encrypted bytes read.
///
/// # Examples
///
/// ```no_run
/// use farewell::{tls, Policy, TimeWait};
///
/// # #[allow(dead_code)]
/// # async fn demo(stream: tls::tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
/// let outcome = tls::close(stream, Policy::default(), &b""[..]).await;
/// assert_ne!(outcome.time_wait, TimeWait::Us);
/// println!("close_notify from the peer: {:?}", outcome.peer_close_notify);
/// # }
/// ```
pub fn close(
    stream: TlsStream<TcpStream>,
    policy: Policy,
    goodbye: impl AsRef<[u8]>,
) -> impl Future<Output = Outcome> + Send + 'static {
    let (tcp, records, drain) = seal(stream, goodbye.as_ref());
    teardown(tcp, policy, records, Report::Full, NoHurry, drain)
}

impl Closer {
    /// Tears a TLS stream down in the background with the closer's policy, as
    /// [`tls::close`](close) does: `goodbye` inside TLS, `close_notify`, no
    /// FIN, then the policy. Returns at once; the outcome (with
    /// [`Outcome::peer_close_notify`]) goes to the closer's hook.
    ///
    /// Needs the `rustls` feature.
    pub fn close_tls(
        &self,
        stream: impl Into<Handoff<TlsStream<TcpStream>>>,
        goodbye: impl AsRef<[u8]>,
    ) {
        self.close_tls_with(stream, goodbye, self.policy());
    }

    /// As [`Closer::close_tls`], with another policy for this one connection.
    ///
    /// Needs the `rustls` feature.
    pub fn close_tls_with(
        &self,
        stream: impl Into<Handoff<TlsStream<TcpStream>>>,
        goodbye: impl AsRef<[u8]>,
        policy: Policy,
    ) {
        let (tcp, records, drain) = seal_handoff(stream.into(), goodbye.as_ref());
        self.close_drained(tcp, records, policy, drain);
    }

    /// As [`Closer::close_tls_with`], the teardown running in the caller's
    /// own task, as [`Closer::close_here`] runs it: await the [`Closing`].
    ///
    /// Needs the `rustls` feature.
    pub fn close_tls_here(
        &self,
        stream: impl Into<Handoff<TlsStream<TcpStream>>>,
        goodbye: impl AsRef<[u8]>,
        policy: Policy,
    ) -> Closing {
        let (tcp, records, drain) = seal_handoff(stream.into(), goodbye.as_ref());
        self.close_drained_here(tcp, records, policy, drain)
    }
}

/// [`seal`] for a [`Handoff`]: the TCP stream's hand-over keeps the peer's
/// address, not [`Handoff::peer_fin_read`] (a TLS read that returned 0 may
/// have been the peer's `close_notify`, its FIN still to come).
fn seal_handoff(
    handoff: Handoff<TlsStream<TcpStream>>,
    goodbye: &[u8],
) -> (Handoff, Bytes, PeerCloseNotify) {
    let (tcp, records, drain) = seal(handoff.stream, goodbye);
    let tcp = Handoff {
        stream: tcp,
        peer: handoff.peer,
        fin_read: false,
    };
    (tcp, records, drain)
}

/// Takes the TLS stream apart: the TCP stream, every TLS record still to be
/// written (whatever tokio-rustls had not flushed, the goodbye, then
/// `close_notify`), and the connection, which goes on reading what the
/// teardown drains.
fn seal(stream: TlsStream<TcpStream>, goodbye: &[u8]) -> (TcpStream, Bytes, PeerCloseNotify) {
    let (tcp, mut conn) = stream.into_inner();
    // The whole goodbye is encrypted now, whatever its size: the teardown
    // delivers it at the pace the peer takes it.
    conn.set_buffer_limit(None);
    if !goodbye.is_empty() {
        if let Err(e) = conn.writer().write_all(goodbye) {
            tracing::debug!(error = %e, "the TLS goodbye could not be encrypted");
        }
    }
    conn.send_close_notify();
    let mut records = Vec::new();
    while conn.wants_write() {
        match conn.write_tls(&mut records) {
            Ok(0) => break,
            Ok(_) => {}
            // Writing into a Vec does not fail; stop rather than spin if it ever does.
            Err(_) => break,
        }
    }
    let mut drain = PeerCloseNotify {
        conn: Some(conn),
        seen: false,
    };
    // tokio-rustls may have read records it has not processed yet (a
    // close_notify that came with the last request, say).
    drain.process();
    (tcp, Bytes::from(records), drain)
}

/// Decrypts what a teardown drains, until the peer's `close_notify`.
struct PeerCloseNotify {
    /// `None` once the alert came, or the bytes stopped making sense.
    conn: Option<ServerConnection>,
    seen: bool,
}

impl PeerCloseNotify {
    /// Processes the records buffered in the connection and throws away their
    /// plaintext; lets go of the connection once `close_notify` came or an
    /// error ends the TLS session.
    fn process(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match conn.process_new_packets() {
            Ok(state) => {
                let closed = state.peer_has_closed();
                let mut bin = [0u8; 4096];
                // Ok(0) at close_notify, WouldBlock when nothing is left.
                while let Ok(n @ 1..) = conn.reader().read(&mut bin) {
                    let _ = n;
                }
                if closed {
                    self.seen = true;
                    self.conn = None;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "the peer's TLS records after our close_notify are not valid");
                self.conn = None;
            }
        }
    }
}

impl Drain for PeerCloseNotify {
    fn drained(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            match conn.read_tls(&mut bytes) {
                Ok(0) | Err(_) => {
                    self.conn = None;
                    return;
                }
                Ok(_) => self.process(),
            }
        }
    }

    fn finish(self, outcome: &mut Outcome) {
        outcome.peer_close_notify = Some(self.seen);
    }
}

/// Accepts a TLS connection on `stream`, within `timeout`.
///
/// On success, the TLS stream; on failure or timeout, the TCP stream back
/// with what went wrong, so the caller can end it without a FIN
/// ([`HandshakeError::close`], or a [`Closer`]). When the handshake failed,
/// rustls has already tried to write the alert that says why (TLS sends one
/// for a bad ClientHello, no common version or cipher suite, and so on); a
/// stalled handshake gets no alert.
///
/// # Notes
///
/// To get the TCP stream back from a timed-out handshake, the descriptor is
/// duplicated before the handshake starts (one `dup` and one `close` per
/// handshake): tokio-rustls's handshake future hands its IO back only on an
/// error. Dropping this future before it ends closes the socket plainly (a
/// FIN, or an RST over unread input); [`Closer::accept_tls`] does not.
///
/// # Errors
///
/// [`HandshakeError`], with the TCP stream.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let mut spare = match Spare::new(&stream, None) {
        Ok(spare) => spare,
        Err(error) => {
            return Err(HandshakeError {
                stream,
                error,
                timed_out: false,
            })
        }
    };
    handshake(acceptor, stream, timeout, &mut spare).await
}

impl Closer {
    /// Accepts a TLS connection on `stream` within `timeout`; a handshake that
    /// fails or times out hands the TCP stream to this closer, which ends it
    /// with `policy` and nothing more to say (`None` is returned then).
    ///
    /// As [`accept`], and cancel-safe: if this future is dropped before the
    /// handshake ends (a server aborting its connection tasks at shutdown), the
    /// socket goes to the closer too, never to a plain `close()`.
    ///
    /// Needs the `rustls` feature.
    pub async fn accept_tls(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
        timeout: Duration,
        policy: Policy,
    ) -> Option<TlsStream<TcpStream>> {
        let mut spare = match Spare::new(&stream, Some((self.clone(), policy))) {
            Ok(spare) => spare,
            Err(e) => {
                // Out of descriptors: shed the connection before the handshake.
                tracing::debug!(error = %e, "no descriptor for the TLS handshake");
                self.close_with(stream, Bytes::new(), policy);
                return None;
            }
        };
        match handshake(acceptor, stream, timeout, &mut spare).await {
            Ok(stream) => Some(stream),
            Err(failed) => {
                tracing::debug!(error = %failed, "TLS handshake ended");
                self.close_with(failed.stream, Bytes::new(), policy);
                None
            }
        }
    }
}

/// A second descriptor of a socket in a TLS handshake, so the socket outlives
/// the handshake future. Dropped armed, it hands the socket to its closer.
struct Spare {
    socket: Option<socket2::Socket>,
    closer: Option<(Closer, Policy)>,
}

impl Spare {
    fn new(stream: &TcpStream, closer: Option<(Closer, Policy)>) -> io::Result<Spare> {
        Ok(Spare {
            socket: Some(socket2::SockRef::from(stream).try_clone()?),
            closer,
        })
    }

    /// The handshake future is gone: the socket, back as a stream. `None`
    /// only without a reactor (a runtime shutting down): then the socket
    /// closes plainly.
    fn take(&mut self) -> Option<TcpStream> {
        let socket = self.socket.take()?;
        let _runtime = self.closer.as_ref().map(|(c, _)| c.handle().enter());
        TcpStream::from_std(std::net::TcpStream::from(socket)).ok()
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        if self.closer.is_none() || self.socket.is_none() {
            return;
        }
        if let Some(stream) = self.take() {
            if let Some((closer, policy)) = self.closer.take() {
                closer.close_with(stream, Bytes::new(), policy);
            }
        }
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    spare: &mut Spare,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let timeout = timeout.min(crate::policy::MAX_WAIT);
    let outcome = tokio::time::timeout(timeout, acceptor.accept(stream).into_fallible()).await;
    match outcome {
        Ok(Ok(stream)) => {
            drop(spare.socket.take()); // a second descriptor: closing it sends nothing
            Ok(stream)
        }
        Ok(Err((error, stream))) => {
            drop(spare.socket.take());
            Err(HandshakeError {
                stream,
                error,
                timed_out: false,
            })
        }
        Err(_elapsed) => {
            // The handshake future (and with it the first descriptor, which
            // tokio deregisters before closing) is gone; the socket lives on
            // in the spare: nothing went on the wire.
            let error = io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out");
            // This future runs on a runtime with a reactor (the timeout
            // above needs one), so the spare registers.
            let stream = spare
                .take()
                .expect("a TLS handshake runs inside a tokio runtime with I/O enabled");
            Err(HandshakeError {
                stream,
                error,
                timed_out: true,
            })
        }
    }
}
/// A TLS handshake that failed or timed out ([`accept`]), with the TCP stream.
#[derive(Debug)]
#[non_exhaustive]
pub struct HandshakeError {
    /// The connection, still open and with no FIN sent.
    pub stream: TcpStream,
    /// Why the handshake ended (`TimedOut` for the deadline).
    pub error: io::Error,
    /// The handshake did not finish within the deadline.
    pub timed_out: bool,
}

impl HandshakeError {
    /// Ends the connection with `policy` and nothing more to say (the alert,
    /// if any, is already written), as [`crate::close`] does.
    pub fn close(self, policy: Policy) -> impl Future<Output = Outcome> + Send + 'static {
        crate::close(self.stream, policy, Bytes::new())
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.timed_out {
            write!(f, "TLS handshake timed out")
        } else {
            write!(f, "TLS handshake failed: {}", self.error)
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
