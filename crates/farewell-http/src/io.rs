//! The socket as hyper sees it: reads and writes pass through, shutdown sends no FIN,
//! and dropping it hands the socket to the teardown instead of closing it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::{ConnState, Handover};
use crate::upgrade::{self, Direction};

/// A stream (TCP, or TLS over TCP) lent to hyper for the life of one connection.
///
/// hyper ends a connection by calling `poll_shutdown` (HTTP/1.1 after a
/// `Connection: close` response, h2 after GOAWAY) and then dropping its IO.
/// Both would send the first FIN and leave TIME-WAIT on the server (farewell::facts [F1](farewell::facts#f1)). Here `poll_shutdown` only flushes, and `Drop` gives the socket to the
/// connection's teardown ([`ConnState::release`]), which runs the server's
/// policy on it: for peer-first, no FIN from us, ever. Over TLS, tokio-rustls's
/// own `poll_shutdown` would send `close_notify` *and* the FIN; the teardown
/// sends `close_notify` alone.
///
/// It also keeps the clocks of the abuse bounds ([`ConnState::watch`]): when
/// a read found nothing (the header and body read timeouts), when a write
/// found the socket full (the send timeout).
pub(crate) struct TeardownIo<S: Handover> {
    stream: Option<S>,
    conn: Arc<ConnState>,
    /// The ACK probe was made (at the first blocked write).
    probed: bool,
}

impl<S: Handover> TeardownIo<S> {
    pub(crate) fn new(stream: S, conn: Arc<ConnState>) -> TeardownIo<S> {
        TeardownIo {
            stream: Some(stream),
            conn,
            probed: false,
        }
    }

    /// A write found the socket full: the send clock runs, and from now on the
    /// connection task reads the client's ACK progress.
    fn blocked(&mut self) {
        self.conn.write_blocked();
        if !self.probed {
            self.probed = true;
            if let Some(probe) = self.stream.as_ref().and_then(Handover::ack_probe) {
                self.conn.set_ack_probe(probe);
            }
        }
    }

    /// One write (`write` polls the stream): counts what it wrote, starts the
    /// send clock when the socket is full, and fails it once an upgrade was cut.
    fn write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if self.conn.upgrade.is_cut() {
            return Poll::Ready(Err(upgrade::cut_error()));
        }
        if self.conn.take_fin_check() && self.stream.as_ref().is_some_and(Handover::fin_received) {
            // The client's FIN came before this response: a half-close.
            self.conn.peer_fin_seen();
        }
        let poll = write(self.stream(), cx);
        match poll {
            Poll::Ready(Ok(n)) => self.conn.wrote(n),
            Poll::Pending => self.blocked(),
            Poll::Ready(Err(_)) => {}
        }
        if poll.is_pending() && self.conn.park_upgraded(cx, Direction::Write) {
            return Poll::Ready(Err(upgrade::cut_error()));
        }
        poll
    }

    fn stream(&mut self) -> Pin<&mut S> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is only taken in Drop"),
        )
    }
}

impl<S: Handover> AsyncRead for TeardownIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.conn.upgrade.is_cut() {
            return Poll::Ready(Err(upgrade::cut_error()));
        }
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let poll = self.stream().poll_read(cx, buf);
        match poll {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                // A FIN read before our last response is a half-close, not a
                // goodbye (see `ConnState::half_closed`); one that comes with
                // or after a request but before its response is caught by the
                // look before the response's first write.
                if room && n == 0 {
                    self.conn.eof_read();
                } else if n > 0 {
                    self.conn.first_bytes(&buf.filled()[before..]);
                    self.conn.responding();
                }
                self.conn.read_done(n)
            }
            Poll::Ready(Err(_)) => self.conn.read_done(0),
            // hyper waits for the client: the header or body read clock runs.
            Poll::Pending => self.conn.read_pending(),
        }
        if poll.is_pending() && self.conn.park_upgraded(cx, Direction::Read) {
            return Poll::Ready(Err(upgrade::cut_error()));
        }
        poll
    }
}

impl<S: Handover> AsyncWrite for TeardownIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_with(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_with(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Over TLS, writes land in rustls's buffer and the flush meets the full socket.
        let poll = self.stream().poll_flush(cx);
        match poll {
            Poll::Ready(Ok(())) => self.conn.flushed(),
            Poll::Pending => self.blocked(),
            Poll::Ready(Err(_)) => {}
        }
        poll
    }

    /// Flushes, and sends **no FIN**: whether one is ever sent is the
    /// teardown policy's decision, made when hyper drops the IO. Before it
    /// returns, it may wait a little for the client's FIN
    /// ([`ConnState::fin_wait`]), so that the teardown finds it in and ends
    /// at once; bytes instead of the FIN (nothing a client may send after
    /// the last response) end the wait too, discarded as the teardown
    /// would discard them.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.stream().poll_flush(cx))?;
        if !S::WAITS_FOR_FIN || !self.conn.fin_wait() {
            return Poll::Ready(Ok(()));
        }
        let mut scratch = [0u8; 256];
        let mut buf = ReadBuf::new(&mut scratch);
        match self.stream().poll_read(cx, &mut buf) {
            Poll::Pending if !self.conn.fin_wait_expired() => Poll::Pending,
            Poll::Pending => Poll::Ready(Ok(())),
            Poll::Ready(read) => {
                if read.is_ok() && buf.filled().is_empty() {
                    self.conn.eof_read();
                }
                self.conn.fin_wait_over();
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: Handover> Drop for TeardownIo<S> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            // No duplicate may outlive the hand-over: it would keep the socket open.
            self.conn.drop_ack_probe();
            self.conn.release(stream);
        }
    }
}
