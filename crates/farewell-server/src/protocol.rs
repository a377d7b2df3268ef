//! What a protocol tells the supervisor: its handshake, how it answers a line, its goodbye.

use std::fmt;

use bytes::Bytes;

/// Why a connection ended. The supervisor picks some (timeouts, limits,
/// shutdown); the protocol picks others (`Quit`, `BadHandshake`, or its own
/// [`Reason::Protocol`]). [`Protocol::goodbye`] turns a reason into the last
/// bytes the peer gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// The peer asked to end the session (FLP/1 `QUIT`).
    Quit,
    /// The handshake did not complete within the handshake deadline.
    HandshakeTimeout,
    /// The first line was not a valid handshake.
    BadHandshake,
    /// No line came from the peer within the idle timeout.
    Idle,
    /// A line was longer than the maximum line length.
    LineTooLong,
    /// A line was started but not finished within the line timeout (a peer
    /// that trickles bytes to keep the idle timer from firing).
    LineTimeout,
    /// The server is shutting down.
    Shutdown,
    /// The server is at its connection limit; this one was shed at accept.
    Busy,
    /// The connection reached its maximum lifetime.
    MaxLifetime,
    /// The peer did not take our replies within the send timeout (it stopped reading).
    SendTimeout,
    /// The peer closed its side (EOF) without saying goodbye.
    PeerClosed,
    /// Reading or writing failed (the peer reset, or the connection was lost).
    Error,
    /// A reason of the protocol's own, named in kebab-case (used as the metrics label).
    Protocol(&'static str),
}

impl Reason {
    /// The reasons the supervisor and FLP/1 use (everything but [`Reason::Protocol`]).
    pub const BUILTIN: [Reason; 12] = [
        Reason::Quit,
        Reason::HandshakeTimeout,
        Reason::BadHandshake,
        Reason::Idle,
        Reason::LineTooLong,
        Reason::LineTimeout,
        Reason::Shutdown,
        Reason::Busy,
        Reason::MaxLifetime,
        Reason::SendTimeout,
        Reason::PeerClosed,
        Reason::Error,
    ];

    /// A short kebab-case name, stable for logs and metrics labels
    /// (`quit`, `handshake-timeout`, …).
    pub fn name(self) -> &'static str {
        match self {
            Reason::Quit => "quit",
            Reason::HandshakeTimeout => "handshake-timeout",
            Reason::BadHandshake => "bad-handshake",
            Reason::Idle => "idle",
            Reason::LineTooLong => "line-too-long",
            Reason::LineTimeout => "line-timeout",
            Reason::Shutdown => "shutdown",
            Reason::Busy => "busy",
            Reason::MaxLifetime => "max-lifetime",
            Reason::SendTimeout => "send-timeout",
            Reason::PeerClosed => "peer-closed",
            Reason::Error => "error",
            Reason::Protocol(name) => name,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What to do after a line: go on, or say goodbye.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep the connection open and read the next line.
    Continue,
    /// End the connection: send the protocol's goodbye for this reason and
    /// tear down with the configured policy.
    Goodbye(Reason),
}

/// A line protocol the [supervisor](crate) serves: the only part a user writes.
///
/// The supervisor reads, frames lines (at most
/// [`ServerConfig::max_line`](crate::ServerConfig::max_line) bytes,
/// `\n` included), enforces the deadlines and limits, writes replies without
/// ever blocking, and tears every connection down with its policy. The
/// protocol only decides: is this first line a valid handshake, what is the
/// answer to this line, and what are the last bytes for this reason.
///
/// Lines are passed without their `\n`. Replies are appended to `reply`
/// (include the `\n` yourself). The methods are called on a runtime thread:
/// keep them short and never block.
///
/// # Examples
///
/// A protocol that greets, then answers each line with its length; FLP/1
/// ([`crate::flp::Flp`]) is the full example.
///
/// ```
/// use bytes::Bytes;
/// use farewell_server::{Flow, Protocol, Reason};
///
/// struct Lengths;
///
/// impl Protocol for Lengths {
///     type Session = u64; // lines answered so far
///
///     fn handshake(&self, line: &[u8], reply: &mut Vec<u8>) -> Result<u64, Reason> {
///         if line != b"HI" {
///             return Err(Reason::BadHandshake);
///         }
///         reply.extend_from_slice(b"HI\n");
///         Ok(0)
///     }
///
///     fn handle(&self, answered: &mut u64, line: &[u8], reply: &mut Vec<u8>) -> Flow {
///         if line == b"BYE" {
///             return Flow::Goodbye(Reason::Quit);
///         }
///         *answered += 1;
///         reply.extend_from_slice(format!("{}\n", line.len()).as_bytes());
///         Flow::Continue
///     }
///
///     fn goodbye(&self, reason: Reason) -> Bytes {
///         Bytes::from(format!("BYE {reason}\n"))
///     }
/// }
///
/// // The pure conversation runs it without any socket:
/// let mut conversation = farewell_server::Conversation::<Lengths>::new(64);
/// let mut reply = Vec::new();
/// assert_eq!(conversation.feed(&Lengths, b"HI\nabc\n", &mut reply), Flow::Continue);
/// assert_eq!(reply, b"HI\n3\n");
/// ```
pub trait Protocol: Send + Sync + 'static {
    /// Per-connection state, created by a successful handshake. Keep it small:
    /// a server may hold tens of thousands.
    type Session: Send + 'static;

    /// The first line of a connection. `Ok` starts the session (append any
    /// greeting to `reply`); `Err(reason)` ends the connection with that goodbye.
    fn handshake(&self, line: &[u8], reply: &mut Vec<u8>) -> Result<Self::Session, Reason>;

    /// Every later line.
    fn handle(&self, session: &mut Self::Session, line: &[u8], reply: &mut Vec<u8>) -> Flow;

    /// The last bytes sent for `reason` (may be empty: say nothing).
    fn goodbye(&self, reason: Reason) -> Bytes;
}
