//! What ended one HTTP connection, next to the teardown's [`Outcome`]: the
//! HTTP cause, the requests served, and whether the last response (the
//! connection's goodbye) reached the client's kernel.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use farewell::{Delivery, Outcome};

/// Why a connection ended, as HTTP sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Cause {
    /// The client closed (FIN or reset) with no request pending, e.g. a
    /// keep-alive client done with the connection.
    ClientClosed,
    /// The client asked: a request with `Connection: close`, or HTTP/1.0
    /// without keep-alive. The response to it is the last.
    ClientAsked,
    /// The service's response said `Connection: close`.
    ServiceAsked,
    /// The max-requests-per-connection limit
    /// ([`Server::max_requests_per_connection`](crate::Server::max_requests_per_connection)):
    /// the last response carried `Connection: close` (HTTP/1.1) or the
    /// connection got a GOAWAY (h2).
    RequestLimit,
    /// The keep-alive idle timeout ([`Server::idle_timeout`](crate::Server::idle_timeout)).
    Idle,
    /// The server shut down.
    Shutdown,
    /// The connection was upgraded (`101 Switching Protocols`, e.g. a
    /// WebSocket) and the upgraded stream was dropped by its handler (ended
    /// with the server's FIN, reset on its ACK, see
    /// [`ServeReport::upgrades_closed`](crate::ServeReport::upgrades_closed)),
    /// or cut by the idle bound or the shutdown deadline (reset once its bytes
    /// are ACKed).
    Upgrade,
    /// hyper ended the connection with an error (a malformed request, a
    /// failed write, a body that could not be read).
    Error,
    /// The client was too slow to send its request: the request head was not
    /// complete within [`Server::header_read_timeout`](crate::Server::header_read_timeout),
    /// or the body stalled for [`Server::body_read_timeout`](crate::Server::body_read_timeout).
    /// Nothing was written to it: reset once everything written before is ACKed.
    ReadTimeout,
    /// The client stopped taking the response: no progress for
    /// [`Server::send_timeout`](crate::Server::send_timeout). Reset at once.
    SendTimeout,
}

impl Cause {
    /// Every cause, in declaration order.
    pub const ALL: [Cause; 10] = [
        Cause::ClientClosed,
        Cause::ClientAsked,
        Cause::ServiceAsked,
        Cause::RequestLimit,
        Cause::Idle,
        Cause::Shutdown,
        Cause::Upgrade,
        Cause::Error,
        Cause::ReadTimeout,
        Cause::SendTimeout,
    ];

    /// A short kebab-case name, stable for logs, metrics labels and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Cause::ClientClosed => "client-closed",
            Cause::ClientAsked => "client-asked",
            Cause::ServiceAsked => "service-asked",
            Cause::RequestLimit => "request-limit",
            Cause::Idle => "idle",
            Cause::Shutdown => "shutdown",
            Cause::Upgrade => "upgrade",
            Cause::Error => "error",
            Cause::ReadTimeout => "read-timeout",
            Cause::SendTimeout => "send-timeout",
        }
    }

    fn index(self) -> usize {
        Cause::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One connection's end, as farewell-http saw it: the HTTP cause, the
/// requests served, whether the last response was delivered, and the
/// teardown's [`Outcome`]. Given to [`Server::on_connection`](crate::Server::on_connection).
///
/// `Display` gives one line, e.g.
/// `client-asked after 3 requests, last response confirmed; peer-first ...: peer-closed, ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionOutcome {
    /// Why the connection ended.
    pub cause: Cause,
    /// Requests handed to the service on this connection.
    pub requests: u64,
    /// The last response (or GOAWAY), the connection's goodbye:
    /// [`Delivery::Confirmed`] when the client's kernel had ACKed every byte
    /// the server wrote when the socket was closed, [`Delivery::Unconfirmed`]
    /// when not (or the kernel could not tell), [`Delivery::NoneSent`] when the
    /// server ended the connection with nothing more to say (an idle HTTP/1.1
    /// connection, a shutdown or forced end between requests) or the client
    /// closed before any request. The teardown's own [`Outcome::goodbye`] says
    /// `none-sent`: hyper, not the teardown, wrote the response.
    pub last_response: Delivery,
    /// The client read the last response until the server closed (HTTP/1.0
    /// without keep-alive, or a close-delimited body) and the connection
    /// ended with the server's FIN, reset by the kernel on its ACK ([`ServeReport::close_delimited`](crate::ServeReport::close_delimited)).
    /// Also true for an upgraded connection ([`Cause::Upgrade`]) its handler
    /// dropped, which ends the same way.
    pub close_delimited: bool,
    /// The teardown's outcome; `None` for a close-delimited ending, which
    /// farewell-http closes itself, and for a connection whose peer address
    /// could not be read at the end (already reset).
    pub outcome: Option<Outcome>,
}

impl fmt::Display for ConnectionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {} requests, last response {}",
            self.cause, self.requests, self.last_response
        )?;
        if self.close_delimited {
            write!(f, ", close-delimited (FIN, reset on its ACK)")?;
        }
        if let Some(outcome) = &self.outcome {
            write!(f, "; {outcome}")?;
        }
        Ok(())
    }
}

/// Whether the goodbye was delivered, judged from the teardown's outcome:
/// everything written was ACKed when the socket was closed.
pub(crate) fn last_response(has_goodbye: bool, outcome: &Outcome) -> Delivery {
    if !has_goodbye {
        Delivery::NoneSent
    } else if outcome.unacked_at_close == Some(0) {
        Delivery::Confirmed
    } else {
        Delivery::Unconfirmed
    }
}

/// A cause recorded once: the first event that decides the end wins.
#[derive(Default)]
pub(crate) struct CauseCell(AtomicU8);

impl CauseCell {
    /// Records `cause` unless one is recorded already.
    pub(crate) fn set(&self, cause: Cause) {
        let _ = self.0.compare_exchange(
            0,
            cause.index() as u8 + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Records `cause` over whatever was recorded: a timeout that cuts the
    /// connection outranks the reason it was going to end for.
    pub(crate) fn replace(&self, cause: Cause) {
        self.0.store(cause.index() as u8 + 1, Ordering::Release);
    }

    /// The recorded cause, if any.
    pub(crate) fn get(&self) -> Option<Cause> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            n => Cause::ALL.get(usize::from(n) - 1).copied(),
        }
    }
}

/// Connections counted by [`Cause`].
#[derive(Default)]
pub(crate) struct CauseCounts([AtomicU64; Cause::ALL.len()]);

impl CauseCounts {
    pub(crate) fn add(&self, cause: Cause) {
        self.0[cause.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Vec<(Cause, u64)> {
        Cause::ALL
            .iter()
            .map(|&c| (c, self.0[c.index()].load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// The hook of [`Server::on_connection`](crate::Server::on_connection).
pub(crate) type ConnectionHook = Arc<dyn Fn(ConnectionOutcome) + Send + Sync>;

/// What a connection's end is known by before its teardown's outcome comes.
#[derive(Clone, Copy)]
struct Pending {
    cause: Cause,
    requests: u64,
    has_goodbye: bool,
}

/// Joins each connection's HTTP end with its teardown's outcome (matched by
/// the peer's address, unique among live connections) for the hook.
pub(crate) struct Connections {
    hook: Option<ConnectionHook>,
    pending: Mutex<HashMap<SocketAddr, Pending>>,
}

impl Connections {
    pub(crate) fn new(hook: Option<ConnectionHook>) -> Connections {
        Connections {
            hook,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// A connection's socket goes to the closer: its outcome will come to
    /// [`Connections::teardown_ended`], which finds it by `peer` (the
    /// closer is given the same address: its outcome names it).
    pub(crate) fn handed_over(
        &self,
        peer: SocketAddr,
        cause: Cause,
        requests: u64,
        has_goodbye: bool,
    ) {
        if self.hook.is_none() {
            return;
        }
        let pending = Pending {
            cause,
            requests,
            has_goodbye,
        };
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, pending);
    }

    /// A teardown ended (called from the closer's outcome hook).
    pub(crate) fn teardown_ended(&self, outcome: &Outcome) {
        let Some(hook) = &self.hook else { return };
        let Some(peer) = outcome.peer else { return };
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&peer);
        // A connection that never reached HTTP (a failed TLS handshake) has none.
        if let Some(p) = pending {
            hook(ConnectionOutcome {
                cause: p.cause,
                requests: p.requests,
                last_response: last_response(p.has_goodbye, outcome),
                close_delimited: false,
                outcome: Some(outcome.clone()),
            });
        }
    }

    /// A close-delimited ending, which farewell-http closed itself.
    pub(crate) fn close_delimited_ended(&self, cause: Cause, requests: u64, delivered: bool) {
        if let Some(hook) = &self.hook {
            hook(ConnectionOutcome {
                cause,
                requests,
                last_response: if delivered {
                    Delivery::Confirmed
                } else {
                    Delivery::Unconfirmed
                },
                close_delimited: true,
                outcome: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cause_first_recorded_wins() {
        let cell = CauseCell::default();
        assert_eq!(cell.get(), None);
        cell.set(Cause::ClientAsked);
        cell.set(Cause::Shutdown);
        assert_eq!(cell.get(), Some(Cause::ClientAsked));
    }

    #[test]
    fn test_cause_every_one_round_trips_through_the_cell() {
        for cause in Cause::ALL {
            let cell = CauseCell::default();
            cell.set(cause);
            assert_eq!(cell.get(), Some(cause));
        }
    }
}
