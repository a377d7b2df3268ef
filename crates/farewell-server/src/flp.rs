//! FLP/1, the line protocol of `farewell serve`, as a [`Protocol`] for the
//! [supervisor](crate).
//!
//! Lines end in `\n` and are at most `max_line` bytes long, the `\n` included
//! (4096 by default).
//!
//! 1. The client sends `HELLO <id>` within the handshake deadline; the server
//!    answers `WELCOME <id>`. Anything else first: goodbye `bad-handshake`.
//! 2. After the handshake every line is echoed back unchanged.
//! 3. `QUIT`: goodbye `quit`.
//! 4. The goodbye is the line `BYE <reason>`, with reason `quit`,
//!    `handshake-timeout`, `bad-handshake`, `idle`, `line-too-long`,
//!    `shutdown` or `busy`. After it the server sends nothing more and tears
//!    the connection down with its policy.
//! 5. A cooperative client closes its socket when it reads `BYE`.
//!
//! The supervisor's other reasons map onto these: a connection that reached
//! its maximum lifetime gets `BYE shutdown` (the server ends it for its own
//! reasons), one whose peer stopped taking replies, or trickles a line more
//! slowly than the line timeout allows, gets `BYE idle` (no progress); a peer
//! that closed or reset gets nothing.
//!
//! `<id>` is one or more printable ASCII characters without spaces. A `\r`
//! before the `\n` is tolerated on `HELLO` and `QUIT` (for clients that send
//! CRLF) and echoed back like any other byte.
//!
//! # Examples
//!
//! The session logic is pure, so another server can reuse it as is:
//!
//! ```
//! use farewell_server::flp::{self, Session};
//! use farewell_server::Reason;
//!
//! let mut session = Session::new(flp::DEFAULT_MAX_LINE);
//! let mut reply = Vec::new();
//! assert_eq!(session.feed(b"HELLO me\n", &mut reply), None);
//! assert_eq!(session.feed(b"ping\nQUIT\n", &mut reply), Some(Reason::Quit));
//! assert_eq!(reply, b"WELCOME me\nping\n");
//! assert_eq!(flp::goodbye(Reason::Quit), &b"BYE quit\n"[..]);
//! ```
//!
//! And served by the supervisor:
//!
//! ```no_run
//! use farewell_server::flp::Flp;
//! use farewell_server::ServerConfig;
//! use tokio::net::TcpListener;
//!
//! # #[allow(dead_code)]
//! # async fn demo() -> std::io::Result<()> {
//! let listener = TcpListener::bind("127.0.0.1:7878").await?;
//! let shutdown = async { tokio::signal::ctrl_c().await.ok(); };
//! let summary = farewell_server::serve(listener, Flp, ServerConfig::default(), shutdown).await;
//! eprintln!("{summary}");
//! # Ok(()) }
//! ```

use bytes::Bytes;

use crate::{Conversation, Flow, Protocol, Reason};

/// The default maximum line length, `\n` included (the supervisor's
/// [`ServerConfig::max_line`](crate::ServerConfig::max_line) default).
pub use crate::config::DEFAULT_MAX_LINE;

/// FLP/1. A unit type: the protocol has no settings of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flp;

/// The state of an FLP/1 session after its handshake: nothing is needed
/// beyond "the handshake is done", so it is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Established;

impl Protocol for Flp {
    type Session = Established;

    fn handshake(&self, line: &[u8], reply: &mut Vec<u8>) -> Result<Established, Reason> {
        let id = strip_cr(line)
            .strip_prefix(b"HELLO ")
            .filter(|id| !id.is_empty() && id.iter().all(|&b| b.is_ascii_graphic()))
            .ok_or(Reason::BadHandshake)?;
        reply.extend_from_slice(b"WELCOME ");
        reply.extend_from_slice(id);
        reply.push(b'\n');
        Ok(Established)
    }

    fn handle(&self, _: &mut Established, line: &[u8], reply: &mut Vec<u8>) -> Flow {
        if strip_cr(line) == b"QUIT" {
            return Flow::Goodbye(Reason::Quit);
        }
        reply.extend_from_slice(line);
        reply.push(b'\n');
        Flow::Continue
    }

    fn goodbye(&self, reason: Reason) -> Bytes {
        Bytes::from_static(goodbye(reason))
    }
}

/// The FLP/1 goodbye line for `reason` (empty for a peer that closed or failed).
pub fn goodbye(reason: Reason) -> &'static [u8] {
    match reason {
        Reason::Quit => b"BYE quit\n",
        Reason::HandshakeTimeout => b"BYE handshake-timeout\n",
        Reason::BadHandshake => b"BYE bad-handshake\n",
        Reason::Idle | Reason::SendTimeout | Reason::LineTimeout => b"BYE idle\n",
        Reason::LineTooLong => b"BYE line-too-long\n",
        Reason::Shutdown | Reason::MaxLifetime | Reason::Protocol(_) => b"BYE shutdown\n",
        Reason::Busy => b"BYE busy\n",
        Reason::PeerClosed | Reason::Error => b"",
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The whole FLP/1 session logic of one connection, without I/O: bytes in,
/// replies and the goodbye reason out. See the [module docs](self).
#[derive(Debug)]
pub struct Session {
    conversation: Conversation<Flp>,
}

impl Session {
    /// A session waiting for `HELLO`; lines longer than `max_line` bytes (`\n`
    /// included) end it with `line-too-long`.
    pub fn new(max_line: usize) -> Session {
        Session {
            conversation: Conversation::new(max_line),
        }
    }

    /// Takes bytes from the client and appends the replies to `reply`.
    /// `Some(reason)` when the session ends: write
    /// [`goodbye(reason)`](goodbye) after the replies, then tear down.
    pub fn feed(&mut self, input: &[u8], reply: &mut Vec<u8>) -> Option<Reason> {
        match self.conversation.feed(&Flp, input, reply) {
            Flow::Continue => None,
            Flow::Goodbye(reason) => Some(reason),
        }
    }

    /// True once `HELLO` was accepted.
    pub fn is_established(&self) -> bool {
        self.conversation.is_established()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max_line: usize, input: &[&[u8]]) -> (Vec<u8>, Option<Reason>) {
        let mut session = Session::new(max_line);
        let mut reply = Vec::new();
        for chunk in input {
            if let Some(reason) = session.feed(chunk, &mut reply) {
                return (reply, Some(reason));
            }
        }
        (reply, None)
    }

    // ---- handshake ----

    #[test]
    fn hello_is_welcomed_with_the_same_id() {
        assert_eq!(
            run(4096, &[b"HELLO me\n"]),
            (b"WELCOME me\n".to_vec(), None)
        );
    }

    #[test]
    fn hello_with_crlf_is_welcomed_without_the_cr() {
        assert_eq!(
            run(4096, &[b"HELLO me\r\n"]),
            (b"WELCOME me\n".to_vec(), None)
        );
    }

    #[test]
    fn anything_else_first_is_a_bad_handshake() {
        for first in [
            &b"hello me\n"[..],
            b"HELLO\n",
            b"HELLO \n",
            b"HELLO a b\n",
            b"QUIT\n",
            b"\n",
            b"HELLO \xff\xfe\n",
            b"\x00\x01\x02\n",
        ] {
            assert_eq!(
                run(4096, &[first]),
                (vec![], Some(Reason::BadHandshake)),
                "{first:?}"
            );
        }
    }

    #[test]
    fn handshake_split_across_reads_is_joined() {
        assert_eq!(
            run(4096, &[b"HEL", b"LO m", b"e\n"]),
            (b"WELCOME me\n".to_vec(), None)
        );
    }

    // ---- established ----

    #[test]
    fn lines_are_echoed_unchanged_binary_included() {
        let (reply, end) = run(4096, &[b"HELLO x\nping\n\xff\x00bin\r\n\n"]);
        assert_eq!(reply, b"WELCOME x\nping\n\xff\x00bin\r\n\n");
        assert_eq!(end, None);
    }

    #[test]
    fn quit_ends_with_quit_and_ignores_what_follows() {
        let (reply, end) = run(4096, &[b"HELLO x\nQUIT\nafter\n"]);
        assert_eq!(reply, b"WELCOME x\n");
        assert_eq!(end, Some(Reason::Quit));
    }

    // ---- max line ----

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_accepted() {
        let line = [b"HELLO x\n".as_slice(), &[b'a'; 15], b"\n"].concat();
        let (reply, end) = run(16, &[&line]);
        assert_eq!(end, None);
        assert!(reply.ends_with(&[[b'a'; 15].as_slice(), b"\n"].concat()));
    }

    #[test]
    fn one_byte_more_is_line_too_long() {
        let line = [b"HELLO x\n".as_slice(), &[b'a'; 16], b"\n"].concat();
        assert_eq!(run(16, &[&line]).1, Some(Reason::LineTooLong));
    }

    #[test]
    fn an_unfinished_line_reaching_max_line_ends_without_waiting_for_its_newline() {
        assert_eq!(
            run(16, &[b"HELLO x\n", &[b'a'; 10], &[b'a'; 6]]).1,
            Some(Reason::LineTooLong)
        );
        assert_eq!(run(16, &[&[b'a'; 15]]).1, None);
    }

    #[test]
    fn an_overlong_first_line_is_line_too_long_not_bad_handshake() {
        assert_eq!(run(16, &[&[b'H'; 100]]).1, Some(Reason::LineTooLong));
    }

    // ---- goodbyes ----

    #[test]
    fn every_reason_of_the_spec_has_its_bye_line() {
        for (reason, line) in [
            (Reason::Quit, "quit"),
            (Reason::HandshakeTimeout, "handshake-timeout"),
            (Reason::BadHandshake, "bad-handshake"),
            (Reason::Idle, "idle"),
            (Reason::LineTooLong, "line-too-long"),
            (Reason::Shutdown, "shutdown"),
            (Reason::Busy, "busy"),
        ] {
            assert_eq!(goodbye(reason), format!("BYE {line}\n").as_bytes());
            assert_eq!(reason.name(), line);
        }
        assert_eq!(goodbye(Reason::PeerClosed), b"");
    }
}
