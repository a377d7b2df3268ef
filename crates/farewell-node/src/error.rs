//! Why the addon refused a socket, and how that reaches JavaScript: an
//! `Error` whose message starts with its code (`EFAREWELL_NOT_TCP: …`);
//! `index.js` moves that code to the error's `code` property.

use std::fmt;
use std::io;

/// Why a socket was not taken.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not a TCP socket (a Unix-domain socket, a pipe, a file).
    NotTcp,
    /// No open descriptor: the socket was destroyed, or never had one.
    Closed,
    /// A TCP socket that is not connected (listening, or already reset).
    NotConnected,
    /// This socket is already being torn down by the addon.
    Already,
    /// An option that does not parse.
    BadOption(String),
    /// A system call failed for another reason.
    Os(io::Error),
}

impl Refusal {
    /// The `code` the JavaScript error gets.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refusal::NotTcp => "EFAREWELL_NOT_TCP",
            Refusal::Closed => "EFAREWELL_CLOSED",
            Refusal::NotConnected => "EFAREWELL_NOT_CONNECTED",
            Refusal::Already => "EFAREWELL_ALREADY",
            Refusal::BadOption(_) => "EFAREWELL_BAD_OPTION",
            Refusal::Os(_) => "EFAREWELL_OS",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.code())?;
        match self {
            Refusal::NotTcp => write!(f, "not a TCP socket"),
            Refusal::Closed => write!(f, "the socket is closed (no descriptor)"),
            Refusal::NotConnected => write!(f, "the TCP socket is not connected"),
            Refusal::Already => write!(f, "the socket was already handed to farewell"),
            Refusal::BadOption(what) => write!(f, "{what}"),
            Refusal::Os(error) => write!(f, "{error}"),
        }
    }
}

impl From<Refusal> for napi::Error {
    fn from(refusal: Refusal) -> napi::Error {
        napi::Error::new(napi::Status::GenericFailure, refusal.to_string())
    }
}
