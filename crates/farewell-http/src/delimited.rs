//! The end of a response whose client reads until the server closes: the
//! server's FIN is the end of the response, so this is the one teardown where
//! the server must send a FIN first.
//!
//! Two kinds of response are read that way ([`decide::owes_fin`](crate::decide::owes_fin)):
//!
//! - **Any response to an HTTP/1.0 request without `Connection: keep-alive`**,
//!   `Content-Length` included. Such a connection carries one response and the
//!   server closes it (RFC 9112 §9.3, §9.6); its clients (`ab`, `lynx -dump`,
//!   `nc`, a plain socket reader) read until that close and send no FIN of
//!   their own before it.
//! - **A close-delimited body**: hyper sends a body of unknown length to an
//!   HTTP/1.0 client with neither `Content-Length` nor chunked coding, so it
//!   ends where the connection does (RFC 9112 §6.3, item 8).
//!
//! Peer-first's "no FIN, wait for the client's" would make such a client wait
//! the whole grace and then see a reset instead of the end of the response
//! (`ab`: `apr_socket_recv: Connection reset by peer (104)`). An HTTP/1.1
//! `Connection: close` client is not one of them: it stops at the end of the
//! framed response and closes itself, so the policy serves it.
//!
//! A FIN first leaves TIME-WAIT on the server whenever the client's FIN
//! arrives while the server's socket still exists. Fin-then-reset (FIN, wait
//! until it is ACKed, RST) loses that race against every client that closes
//! on end of file: Linux delays the ACK of a FIN (the receiver, in
//! `CLOSE-WAIT`, waits to send it with its own FIN), so the ACK comes with the
//! client's FIN and the server keeps TIME-WAIT (measured here: 20 of 20
//! connections); a FIN and an RST sent back to back from user space lose it
//! too whenever the woken client runs first (5 of 10 with curl). So the
//! connection goes to the server's closer with its peer-first settings and
//! [`GraceEnd::Fin`] ([`policy`]): one delivery watcher for every ending,
//! the core's.
//!
//! 1. **Deliver:** wait, while the client's kernel keeps ACKing, until every
//!    byte of the response is ACKed (`SIOCOUTQ` = 0), probing about once per
//!    two round-trip times; give up as peer-first does (its stall timeout
//!    without progress, its delivery cap). Input is read and discarded
//!    meanwhile, up to the drain limit: `close()` with unread bytes sends an
//!    RST instead of the FIN ([F4](farewell::facts#f4)), which could erase
//!    the response in the client's kernel ([F9](farewell::facts#f9)).
//! 2. **A short grace** for a framed response only: two round-trip times (5
//!    to 100 ms), in which a client that closes by itself once it has the
//!    whole response (nginx's HTTP/1.0 upstream, curl) sends its FIN first.
//!    Its FIN is then answered as the server's policy answers any: a passive
//!    close, or for a heavy client a reset ([`farewell::PeerTimeWait`]). A
//!    close-delimited body gets none: its client cannot know its end.
//! 3. **FIN, reset on its ACK, in the kernel**
//!    ([`farewell::sys::close_reset_on_fin_ack`]: `TCP_LINGER2` = -1, then
//!    `close()`; [`farewell::Ending::FinAfterGrace`]): the ACK of our FIN
//!    destroys the closed socket and is answered with an RST, before a FIN
//!    riding on it is processed. The client reads the whole response and then
//!    end of file (the reset only fails its later writes); nobody keeps
//!    TIME-WAIT.
//!
//! If the client's FIN is already in (it half-closed after its request), the
//! close is passive (`LAST-ACK`) and no RST is needed.
//!
//! # Notes
//!
//! Over TLS none of this applies: `close_notify` ends the response, and the
//! teardown runs the policy as for any other connection.
//!
//! A client still sending a request body when the server closes (more than
//! the drain limit, or bytes still in flight) gets the kernel's reset for the
//! bytes that arrive after the close, as it would from hyper alone.

use std::time::Duration;

use bytes::Bytes;
use farewell::{Closer, Ending, GraceEnd, PeerFirst, Policy};

/// The shortest wait for the client's own FIN once a length-framed response
/// is ACKed (see [`end`]), and the longest: two round-trip times between.
const CLIENT_FIN_WAIT: (Duration, Duration) =
    (Duration::from_millis(5), Duration::from_millis(100));

/// How a response ended by the server's FIN went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Every byte was ACKed, then FIN and an RST on its ACK (or, the client's
    /// FIN being in already, a passive close).
    Delivered,
    /// Delivery stalled, passed its cap, or the connection failed: reset
    /// without a FIN; the client sees a reset, not the end of the body.
    ResetUndelivered,
    /// Every byte was ACKed, then the client closed by itself before our
    /// FIN: the server's policy ended the connection (a passive close, or a
    /// heavy client's reset).
    ClientClosed,
}

/// The peer-first settings that end such a response: the server's stall
/// timeout, delivery cap, drain limit and heavy-client choice; a grace of
/// two round-trip times (`rtt`, within [`CLIENT_FIN_WAIT`]) when the client
/// may close by itself, none when it cannot; then our FIN, reset by the
/// kernel on its ACK ([`GraceEnd::Fin`]).
pub(crate) fn policy(settings: PeerFirst, client_may_close: bool, rtt: Duration) -> Policy {
    let grace = if client_may_close {
        (rtt * 2).clamp(CLIENT_FIN_WAIT.0, CLIENT_FIN_WAIT.1)
    } else {
        Duration::ZERO
    };
    Policy::PeerFirst(PeerFirst {
        grace,
        grace_end: GraceEnd::Fin,
        ..settings
    })
}

/// What an ending means for a response owed our FIN.
pub(crate) fn end_of(ending: Ending, client_may_close: bool) -> End {
    match ending {
        Ending::FinAfterGrace => End::Delivered,
        // The client's FIN first: a half-close after its request (it waits
        // for our FIN all the same, and gets it: the passive close), or a
        // client that closed once it had the whole framed response.
        Ending::PeerClosed | Ending::ResetAfterPeerFin if client_may_close => End::ClientClosed,
        Ending::PeerClosed | Ending::ResetAfterPeerFin => End::Delivered,
        _ => End::ResetUndelivered,
    }
}

/// Ends the last response on `stream` with the server's FIN (see the
/// [module docs](self)), through `closer` (its hurry ends the wait at once,
/// with a reset), with `settings`' stall timeout, delivery cap and drain limit.
///
/// With `client_may_close` (the response has a length, so the client knows
/// its end), the client may close by itself rather than wait for us: nginx
/// does (its default upstream is HTTP/1.0), curl does. Our FIN crossing its
/// FIN would be a simultaneous close, TIME-WAIT on both sides. So once
/// everything is ACKed, its FIN gets two round-trip times (5 to 100 ms) to
/// come; if it does, the policy's answer to a FIN ends the connection (a
/// passive close, or for a heavy client a reset) and this returns
/// [`End::ClientClosed`]. Otherwise our FIN goes as above.
pub(crate) async fn end(
    stream: impl Into<farewell::Handoff>,
    closer: &Closer,
    settings: PeerFirst,
    client_may_close: bool,
) -> End {
    let stream = stream.into();
    let rtt = farewell::sys::tcp_info(stream.stream()).map_or(Duration::ZERO, |info| info.rtt);
    let policy = policy(settings, client_may_close, rtt);
    let outcome = closer
        .close_here_reporting(stream, Bytes::new(), policy)
        .await;
    end_of(outcome.ending, client_may_close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn test_policy_framed_response_gives_the_client_two_rtts_within_bounds() {
        for (rtt, grace) in [(ms(0), ms(5)), (ms(10), ms(20)), (ms(900), ms(100))] {
            let Policy::PeerFirst(p) = policy(PeerFirst::default(), true, rtt) else {
                unreachable!()
            };
            assert_eq!((p.grace, p.grace_end), (grace, GraceEnd::Fin), "{rtt:?}");
        }
    }

    #[test]
    fn test_policy_close_delimited_body_gets_our_fin_at_once() {
        let Policy::PeerFirst(p) = policy(PeerFirst::default(), false, ms(10)) else {
            unreachable!()
        };
        assert_eq!((p.grace, p.grace_end), (Duration::ZERO, GraceEnd::Fin));
    }

    #[test]
    fn test_end_of_each_ending() {
        assert_eq!(end_of(Ending::FinAfterGrace, true), End::Delivered);
        assert_eq!(end_of(Ending::ResetAfterPeerFin, true), End::ClientClosed);
        assert_eq!(end_of(Ending::PeerClosed, false), End::Delivered);
        assert_eq!(
            end_of(Ending::ResetDeliveryStalled, true),
            End::ResetUndelivered
        );
        assert_eq!(
            end_of(Ending::ResetAtDeadline, false),
            End::ResetUndelivered
        );
    }
}
