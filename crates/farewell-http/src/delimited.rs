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
//! too whenever the woken client runs first (5 of 10 with curl). So:
//!
//! 1. **Deliver:** wait, while the client's kernel keeps ACKing, until every
//!    byte of the response is ACKed (`SIOCOUTQ` = 0); give up as peer-first
//!    does (its stall timeout without progress, its delivery cap). No grace:
//!    the client is waiting for us.
//! 2. **Discard unread input** the client sent that nobody read (the rest of
//!    a request body answered early), up to the policy's drain limit:
//!    `close()` with unread bytes sends an RST instead of the FIN
//!    ([`farewell::facts`] F4), which could erase the response in the
//!    client's kernel (F9).
//! 3. **FIN, reset on its ACK, in the kernel**
//!    ([`farewell::sys::close_reset_on_fin_ack`]: `TCP_LINGER2` = -1, then
//!    `close()`): the ACK of our FIN destroys the closed socket and is
//!    answered with an RST, before a FIN riding on it is processed. The client
//!    reads the whole response and then end of file (the reset only fails its
//!    later writes); nobody keeps TIME-WAIT.
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

use std::io::Read as _;
use std::time::{Duration, Instant};

use farewell::{PeerFirst, TcpState};
use tokio::net::TcpStream;

/// The first pause between two looks at the send queue; it doubles while nothing moves.
const MIN_GAP: Duration = Duration::from_millis(1);
/// The longest pause between two looks at the send queue.
const MAX_GAP: Duration = Duration::from_millis(50);

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
    /// FIN: the server's policy ended the connection.
    ClientClosed,
}

/// Waits (two round-trip times, within [`CLIENT_FIN_WAIT`]) for the client's
/// FIN, discarding what it sends meanwhile up to `drain_limit` bytes. True
/// once its FIN is in.
async fn client_fin(stream: &TcpStream, drain_limit: u64) -> bool {
    let rtt = farewell::sys::tcp_info(stream).map_or(Duration::ZERO, |info| info.rtt);
    let wait = (rtt * 2).clamp(CLIENT_FIN_WAIT.0, CLIENT_FIN_WAIT.1);
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    let mut drained = 0u64;
    loop {
        if tokio::time::timeout_at(deadline, stream.readable())
            .await
            .is_err()
        {
            return false;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                drained += n as u64;
                if drained > drain_limit {
                    return false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
}

/// The shortest wait for the client's own FIN once a length-framed response
/// is ACKed (see [`end`]), and the longest: two round-trip times between.
const CLIENT_FIN_WAIT: (Duration, Duration) =
    (Duration::from_millis(5), Duration::from_millis(100));

/// Ends the last response on `stream` with the server's FIN (see the
/// [module docs](self)), with `settings`' stall timeout, delivery cap and
/// drain limit; `hurried` turning true (the server's shutdown deadline
/// passed) ends the wait at once, with a reset.
///
/// With `client_may_close` (the response has a length, so the client knows
/// its end), the client may close by itself rather than wait for us: nginx
/// does (its default upstream is HTTP/1.0), curl does. Our FIN crossing its
/// FIN would be a simultaneous close, TIME-WAIT on both sides. So once
/// everything is ACKed, its FIN gets two round-trip times (5 to 100 ms) to
/// come; if it does, `client_closed` gets the stream (the server's policy
/// ends it: a passive close, or for a heavy client a reset) and this returns
/// [`End::ClientClosed`]. Otherwise our FIN goes as above.
pub(crate) async fn end(
    stream: TcpStream,
    settings: PeerFirst,
    hurried: impl Fn() -> bool,
    client_may_close: bool,
    client_closed: impl FnOnce(TcpStream),
) -> End {
    // A client that closes by itself does so once it has the response: its
    // FIN (which ACKs everything) usually comes before the first look at the
    // send queue would. After a delivery that took a while, it gets another
    // chance.
    let mut waited = false;
    if client_may_close && client_fin(&stream, settings.drain_limit).await {
        client_closed(stream);
        return End::ClientClosed;
    }
    let delivered = deliver(&stream, settings, &hurried, &mut waited).await;
    if delivered
        && waited
        && client_may_close
        && !hurried()
        && client_fin(&stream, settings.drain_limit).await
    {
        client_closed(stream);
        return End::ClientClosed;
    }
    // Out of the runtime: a non-blocking socket read directly, so an empty
    // queue is `WouldBlock` whatever tokio last saw of its readiness.
    let Ok(stream) = stream.into_std() else {
        return End::ResetUndelivered;
    };
    if delivered {
        discard_unread(&stream, settings.drain_limit);
    }
    let peer_fin = matches!(farewell::sys::tcp_state(&stream), Ok(TcpState::CloseWait));
    match delivered {
        true if peer_fin => {
            // The client half-closed first: close() is the passive close.
            drop(stream);
            End::Delivered
        }
        true => {
            if farewell::sys::close_reset_on_fin_ack(stream).is_err() {
                tracing::debug!("TCP_LINGER2 refused: closed with a FIN, TIME-WAIT likely");
            }
            End::Delivered
        }
        false => {
            let _ = farewell::sys::abort(stream);
            End::ResetUndelivered
        }
    }
}

/// Reads and discards what the client sent that nobody read, at most `limit`
/// bytes, without waiting: `close()` then sends a FIN, not an RST (F4).
fn discard_unread(mut stream: &std::net::TcpStream, limit: u64) {
    let mut buf = [0u8; 16 * 1024];
    let mut read = 0u64;
    while read < limit {
        match stream.read(&mut buf) {
            // End of file (the client's FIN) or nothing more queued.
            Ok(0) | Err(_) => return,
            Ok(n) => read += n as u64,
        }
    }
}

/// Waits until the client's kernel ACKed everything written; false when
/// delivery stalled for the stall timeout, passed the delivery cap, or the
/// connection is no longer open.
///
/// `waited` is set once it had to wait for an ACK.
async fn deliver(
    stream: &TcpStream,
    settings: PeerFirst,
    hurried: &impl Fn() -> bool,
    waited: &mut bool,
) -> bool {
    let start = Instant::now();
    let cap = start + settings.delivery_timeout;
    let mut stall_at = start + settings.stall_timeout;
    let mut least = u32::MAX;
    let mut gap = MIN_GAP;
    loop {
        match farewell::sys::tcp_state(stream) {
            Ok(TcpState::Established | TcpState::CloseWait) => {}
            _ => return false,
        }
        let now = Instant::now();
        match farewell::sys::unacked_bytes(stream) {
            Ok(0) => return true,
            Ok(n) if n < least => {
                least = n;
                stall_at = now + settings.stall_timeout;
                gap = MIN_GAP;
            }
            Ok(_) => {}
            Err(_) => return false,
        }
        let deadline = stall_at.min(cap);
        if now >= deadline || hurried() {
            return false;
        }
        *waited = true;
        tokio::time::sleep(gap.min(deadline - now)).await;
        gap = (gap * 2).min(MAX_GAP);
    }
}
