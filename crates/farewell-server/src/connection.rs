//! One served connection: read, converse, reply without blocking, and hand
//! the stream to the closer with the protocol's goodbye when it must end.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::sleep_until;

use super::conversation::Conversation;
use super::protocol::{Flow, Protocol, Reason};
use super::Shared;

/// Bytes read per call. One buffer per runtime thread, shared by every
/// connection on it: an idle connection holds no read buffer.
const SCRATCH_LEN: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
    static REPLY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What one non-blocking round of reading did.
enum Read {
    /// Nothing to read after all (spurious readiness).
    Nothing,
    /// Bytes came and were answered (what could not be written is in `unsent`);
    /// `line_ended`: they held a `\n`, so an unfinished line now is a new one.
    Progress { line_ended: bool },
    /// The connection must end.
    End(Reason),
}

/// Serves `stream` until a goodbye, then hands it to the closer. Never blocks:
/// replies a slow reader does not take wait in `unsent` (and reading pauses)
/// until the send timeout.
pub(super) async fn serve<P: Protocol>(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared<P>>,
    mut stop: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let accepted = Instant::now();
    let lifetime_end = config.max_lifetime.map(|d| accepted + d);
    let mut conversation = Conversation::<P>::new(config.max_line);
    let mut unsent: Vec<u8> = Vec::new();
    let mut last_input = accepted;
    let mut stalled_since = accepted;
    // When the unfinished line in `conversation` got its first byte.
    let mut line_started: Option<Instant> = None;

    let reason = loop {
        if *stop.borrow_and_update() {
            break Reason::Shutdown;
        }
        // The one deadline that matters now, and the goodbye it brings.
        let (mut deadline, mut on_deadline) = if !unsent.is_empty() {
            (stalled_since + config.send_timeout, Reason::SendTimeout)
        } else if conversation.is_established() {
            (last_input + config.idle_timeout, Reason::Idle)
        } else {
            (
                accepted + config.handshake_timeout,
                Reason::HandshakeTimeout,
            )
        };
        if let Some(end) = line_started
            .map(|started| started + config.line_timeout)
            .filter(|&end| end < deadline)
        {
            (deadline, on_deadline) = (end, Reason::LineTimeout);
        }
        if let Some(end) = lifetime_end.filter(|&end| end < deadline) {
            (deadline, on_deadline) = (end, Reason::MaxLifetime);
        }

        tokio::select! {
            biased;
            _ = stop.changed() => break Reason::Shutdown,
            () = sleep_until(deadline.into()) => break on_deadline,
            ready = stream.writable(), if !unsent.is_empty() => {
                if ready.is_err() {
                    break Reason::Error;
                }
                match stream.try_write(&unsent) {
                    Ok(n) => {
                        unsent.drain(..n);
                        if unsent.is_empty() {
                            unsent = Vec::new(); // free it: an idle connection holds no buffer
                        }
                    }
                    Err(e) if is_transient(&e) => {}
                    Err(_) => break Reason::Error,
                }
            }
            ready = stream.readable(), if unsent.is_empty() => {
                if ready.is_err() {
                    break Reason::Error;
                }
                match read(&stream, &mut conversation, &shared.protocol, &mut unsent) {
                    Read::Nothing => {}
                    Read::Progress { line_ended } => {
                        last_input = Instant::now();
                        stalled_since = last_input;
                        line_started = match conversation.pending_len() {
                            0 => None,
                            _ if line_ended => Some(last_input),
                            _ => line_started.or(Some(last_input)),
                        };
                    }
                    Read::End(reason) => break reason,
                }
            }
        }
    };
    // The teardown goes on in this task: no second task per connection.
    shared.goodbye_here(stream, peer, reason, unsent).await;
}

/// Reads once into the thread's scratch buffer, feeds the conversation and
/// writes the replies at once; what the socket does not take goes to `unsent`.
fn read<P: Protocol>(
    stream: &TcpStream,
    conversation: &mut Conversation<P>,
    protocol: &P,
    unsent: &mut Vec<u8>,
) -> Read {
    SCRATCH.with_borrow_mut(|scratch| {
        let n = match stream.try_read(scratch) {
            Ok(0) => return Read::End(Reason::PeerClosed),
            Ok(n) => n,
            Err(e) if is_transient(&e) => return Read::Nothing,
            Err(_) => return Read::End(Reason::Error),
        };
        REPLY.with_borrow_mut(|reply| {
            reply.clear();
            let flow = conversation.feed(protocol, &scratch[..n], reply);
            if let Flow::Goodbye(reason) = flow {
                // The replies before the goodbye go out with it, through the closer.
                unsent.extend_from_slice(reply);
                return Read::End(reason);
            }
            let written = match stream.try_write(reply) {
                Ok(written) => written,
                Err(e) if is_transient(&e) => 0,
                Err(_) => return Read::End(Reason::Error),
            };
            unsent.extend_from_slice(&reply[written..]);
            if reply.capacity() > SCRATCH_LEN * 4 {
                *reply = Vec::new(); // a burst of long replies: do not keep its buffer
            }
            Read::Progress {
                line_ended: scratch[..n].contains(&b'\n'),
            }
        })
    })
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl<P: Protocol> Shared<P> {
    /// Says goodbye: counts it and hands the stream to the closer, with the
    /// replies not yet written in front of the protocol's goodbye.
    /// `served` is false for a connection shed at accept (never counted as open).
    pub(super) fn goodbye(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        reason: Reason,
        unsent: Vec<u8>,
        served: bool,
    ) {
        let (goodbye, policy) = self.farewell(peer, reason, unsent, served);
        // With the address `accept` gave: no `getpeername` in the teardown.
        self.closer.close_with((stream, peer), goodbye, policy);
        // Only now: the drain waits for no connection open *and* the closer
        // idle, so the teardown must be in flight before the connection stops
        // counting as open, or the drain could end between the two.
        self.counts.goodbye(reason, served);
    }

    /// As [`Shared::goodbye`] for a served connection, the teardown running
    /// in the caller's task ([`farewell::Closer::close_here`]): await it.
    pub(super) fn goodbye_here(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        reason: Reason,
        unsent: Vec<u8>,
    ) -> farewell::Closing {
        let (goodbye, policy) = self.farewell(peer, reason, unsent, true);
        let closing = self.closer.close_here((stream, peer), goodbye, policy);
        // After the hand-over, as in `goodbye`: the closer counts it now.
        self.counts.goodbye(reason, true);
        closing
    }

    /// The goodbye's bytes (unsent replies first) and the policy for `reason`.
    fn farewell(
        &self,
        peer: SocketAddr,
        reason: Reason,
        unsent: Vec<u8>,
        served: bool,
    ) -> (Bytes, farewell::Policy) {
        super::metrics::goodbye(reason);
        tracing::debug!(%peer, %reason, "goodbye");
        let goodbye = self.protocol.goodbye(reason);
        let goodbye = if unsent.is_empty() {
            goodbye
        } else {
            let mut all = unsent;
            all.extend_from_slice(&goodbye);
            Bytes::from(all)
        };
        let policy = match reason {
            _ if !served => self.config.busy.policy(),
            Reason::Shutdown => self.shutdown_policy,
            _ => self.config.policy,
        };
        (goodbye, policy)
    }
}
