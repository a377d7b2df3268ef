//! The pure part of a connection: bytes in, replies and a goodbye reason out, no I/O.

use super::protocol::{Flow, Protocol, Reason};

/// One connection's conversation with a [`Protocol`], without any I/O: feed it
/// the bytes the peer sent, get the replies and, when the connection must end,
/// the [`Reason`].
///
/// It frames lines (ending in `\n`, at most `max_line` bytes with the `\n`),
/// runs the handshake on the first line and [`Protocol::handle`] on the rest.
/// Only an unfinished line is kept between calls, and its buffer is freed as
/// soon as the line completes, so an idle connection holds no buffer.
///
/// The supervisor drives one per connection; any other server (a plain tokio
/// accept loop, a benchmark baseline) can reuse exactly the same handling.
///
/// # Examples
///
/// ```
/// use farewell_server::flp::Flp;
/// use farewell_server::{Conversation, Flow, Reason};
///
/// let mut conversation = Conversation::<Flp>::new(4096);
/// let mut reply = Vec::new();
/// assert_eq!(conversation.feed(&Flp, b"HELLO me\nping\nQU", &mut reply), Flow::Continue);
/// assert_eq!(reply, b"WELCOME me\nping\n");
/// assert_eq!(conversation.feed(&Flp, b"IT\n", &mut reply), Flow::Goodbye(Reason::Quit));
/// ```
pub struct Conversation<P: Protocol> {
    partial: Vec<u8>,
    session: Option<P::Session>,
    max_line: usize,
}

impl<P: Protocol> Conversation<P> {
    /// A conversation before its handshake. `max_line` counts the `\n`; it is at least 1.
    pub fn new(max_line: usize) -> Self {
        Conversation {
            partial: Vec::new(),
            session: None,
            max_line: max_line.max(1),
        }
    }

    /// True once the handshake succeeded.
    pub fn is_established(&self) -> bool {
        self.session.is_some()
    }

    /// The session state, once established.
    pub fn session(&self) -> Option<&P::Session> {
        self.session.as_ref()
    }

    /// Bytes of an unfinished line held since the last call.
    pub fn pending_len(&self) -> usize {
        self.partial.len()
    }

    /// Takes the bytes the peer sent; appends every reply to `reply`.
    ///
    /// Returns [`Flow::Goodbye`] as soon as a line ends the conversation (the
    /// rest of `input` is ignored, and the conversation is over: feed it no
    /// more): a failed handshake, the
    /// protocol's own goodbye, or [`Reason::LineTooLong`] when a line reaches
    /// `max_line` bytes without its `\n`.
    pub fn feed(&mut self, protocol: &P, mut input: &[u8], reply: &mut Vec<u8>) -> Flow {
        while !input.is_empty() {
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                if self.partial.len() + input.len() >= self.max_line {
                    return self.end(Reason::LineTooLong);
                }
                self.partial.extend_from_slice(input);
                return Flow::Continue;
            };
            let (head, rest) = (&input[..end], &input[end + 1..]);
            input = rest;
            if self.partial.len() + head.len() + 1 > self.max_line {
                return self.end(Reason::LineTooLong);
            }
            let flow = if self.partial.is_empty() {
                self.line(protocol, head, reply)
            } else {
                // The line started in an earlier read: join it, then free the buffer.
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.line(protocol, &line, reply)
            };
            if let Flow::Goodbye(reason) = flow {
                return self.end(reason);
            }
        }
        Flow::Continue
    }

    fn line(&mut self, protocol: &P, line: &[u8], reply: &mut Vec<u8>) -> Flow {
        match &mut self.session {
            Some(session) => protocol.handle(session, line, reply),
            None => match protocol.handshake(line, reply) {
                Ok(session) => {
                    self.session = Some(session);
                    Flow::Continue
                }
                Err(reason) => Flow::Goodbye(reason),
            },
        }
    }

    fn end(&mut self, reason: Reason) -> Flow {
        self.partial = Vec::new();
        Flow::Goodbye(reason)
    }
}

impl<P: Protocol> std::fmt::Debug for Conversation<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("established", &self.is_established())
            .field("pending", &self.partial.len())
            .field("max_line", &self.max_line)
            .finish()
    }
}
