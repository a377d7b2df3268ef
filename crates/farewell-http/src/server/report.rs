//! What a server did, returned when it has shut down.

use std::fmt;

use farewell::CloserStats;

use crate::record::Cause;
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
    /// [`ServeReport::teardowns`] and produce no [`Outcome`](farewell::Outcome).
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
    /// Upgraded connections cut by [`Server::upgrade_idle_timeout`](crate::Server::upgrade_idle_timeout).
    pub upgrades_idle_cut: u64,
    /// Connections accepted over [`Server::max_connections`](crate::Server::max_connections), or while the
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
