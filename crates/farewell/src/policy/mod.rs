//! Teardown policies: what goes on the wire when a connection ends, and who keeps TIME-WAIT.
//!
//! | policy | steps | our TIME-WAIT | last bytes safe? |
//! |---|---|---|---|
//! | [`Policy::Plain`] | write goodbye, `close()` | yes, once the peer closes (F1) | yes, unless unread input forces an RST (F4) |
//! | [`Policy::Lingering`] | goodbye, FIN, read and discard until EOF or deadline, close | yes when the peer closes (F2) | yes |
//! | [`Policy::Lingering`] with `reset_on_timeout` | as above, RST when the deadline passes | only for cooperative peers | yes |
//! | [`Policy::FinThenReset`] | goodbye, FIN, wait until our FIN is ACKed, RST | only if the peer's FIN wins the race | yes (ACKed before RST) |
//! | [`Policy::Abort`] | RST now | no | **no** (F3) |
//! | [`Policy::Silent`] | `TCP_REPAIR` close: nothing sent | no | no: for abusive peers only |
//! | [`Policy::PeerFirst`] (default) | goodbye, *no FIN*, read and discard until the peer's FIN, then close; at the grace deadline, wait (bounded) until the goodbye is ACKed, then RST | **never** | yes for every peer whose kernel is alive |
//!
//! The F-numbers refer to the kernel facts in DESIGN.md, each verified on Linux 6.x.
//!
//! Every duration is clamped to [`MAX_WAIT`] so that a teardown always ends.

mod machine;

pub(crate) use machine::{Event, Finish, Machine, Probe, Release, Step};

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The longest any teardown step may wait; longer durations are clamped to it.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// How a connection is torn down. See the [module docs](self) for what each puts on the wire.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use farewell::{Policy, PeerFirst};
///
/// // The default: peer-first with a 2 s grace.
/// assert_eq!(Policy::default().name(), "peer-first");
///
/// // A shorter grace for a server that disconnects idle clients often.
/// let policy = Policy::PeerFirst(PeerFirst { grace: Duration::from_millis(500), ..PeerFirst::default() });
/// assert_eq!(policy.to_string(), "peer-first");
///
/// // Policies parse from the names the CLI uses.
/// let lingering: Policy = "lingering-reset".parse().unwrap();
/// assert_eq!(lingering.name(), "lingering-reset");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Write the goodbye, then `close()`.
    ///
    /// On the wire: data, FIN. We keep TIME-WAIT once the peer closes (F1); if
    /// unread input was pending, `close()` sends RST instead and the peer may
    /// lose what it had not read (F4, RFC 9112 §9.6).
    Plain(Plain),
    /// Write the goodbye, send FIN (`shutdown(SHUT_WR)`), read and discard until
    /// the peer's EOF or a deadline, then close (RFC 9112 §9.6, nginx, Apache).
    ///
    /// On the wire: data, FIN, then the peer's FIN. The peer's FIN puts the
    /// TIME-WAIT entry on *our* side at once (F2). With `reset_on_timeout`, a
    /// peer that never closes gets an RST at the deadline (nginx
    /// `reset_timedout_connection`).
    Lingering(Lingering),
    /// Write the goodbye, send FIN, wait until the FIN is ACKed (`FIN-WAIT-2`), then RST.
    ///
    /// On the wire: data, FIN, RST. No TIME-WAIT unless the peer's FIN arrives
    /// before the reset (F2). The goodbye is confirmed delivered before the RST.
    FinThenReset(FinThenReset),
    /// Reset now (`uv_tcp_close_reset`, tokio's `set_zero_linger`).
    ///
    /// The goodbye gets one non-blocking write attempt, but an RST discards
    /// whatever is not yet delivered (F3). No TIME-WAIT.
    Abort,
    /// Close with `TCP_REPAIR`: nothing at all goes on the wire (F8).
    ///
    /// No goodbye is sent and the peer is never told. Needs `CAP_NET_ADMIN`;
    /// without it the teardown falls back to [`Policy::Abort`] and says so in
    /// the outcome's path. For abusive peers only.
    Silent,
    /// The default: say goodbye, never send the first FIN.
    ///
    /// Write the goodbye, then read and discard (at most `drain_limit` bytes)
    /// until the peer's FIN. When it comes, close: we go `LAST-ACK` → `CLOSED`
    /// and the *peer* keeps TIME-WAIT. If the grace passes first, wait at most
    /// `confirm_timeout` until the goodbye is ACKed (`SIOCOUTQ` = 0), then RST.
    /// We never keep TIME-WAIT; the outcome says whether the goodbye was
    /// confirmed delivered.
    PeerFirst(PeerFirst),
}

impl Default for Policy {
    fn default() -> Self {
        Policy::PeerFirst(PeerFirst::default())
    }
}

/// Settings of [`Policy::Plain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain {
    /// How long writing the goodbye may take before we close anyway (default 2 s).
    pub flush_timeout: Duration,
}

impl Default for Plain {
    fn default() -> Self {
        Plain {
            flush_timeout: Duration::from_secs(2),
        }
    }
}

/// Settings of [`Policy::Lingering`]; the defaults are nginx's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lingering {
    /// The longest pause between two reads before giving up (nginx
    /// `lingering_timeout`, default 5 s).
    pub idle_timeout: Duration,
    /// The longest the whole lingering close may take, goodbye included (nginx
    /// `lingering_time`, default 30 s).
    pub max_time: Duration,
    /// Reset instead of closing when a deadline passes (nginx
    /// `reset_timedout_connection`, default off).
    pub reset_on_timeout: bool,
}

impl Default for Lingering {
    fn default() -> Self {
        Lingering {
            idle_timeout: Duration::from_secs(5),
            max_time: Duration::from_secs(30),
            reset_on_timeout: false,
        }
    }
}

/// Settings of [`Policy::FinThenReset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinThenReset {
    /// How long writing the goodbye and waiting for the FIN's ACK may take in
    /// all before resetting anyway (default 2 s).
    pub fin_ack_timeout: Duration,
}

impl Default for FinThenReset {
    fn default() -> Self {
        FinThenReset {
            fin_ack_timeout: Duration::from_secs(2),
        }
    }
}

/// Settings of [`Policy::PeerFirst`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFirst {
    /// How long the peer has to close after the goodbye, writing it included (default 2 s).
    pub grace: Duration,
    /// After the grace: how long to wait for the goodbye's ACK before resetting
    /// anyway (default 1 s). A peer whose kernel is alive ACKs within one RTT;
    /// one that never reads (zero window) or vanished never does.
    pub confirm_timeout: Duration,
    /// The most bytes to read and discard before resetting a peer that floods
    /// us (default 256 KiB).
    pub drain_limit: u64,
}

impl Default for PeerFirst {
    fn default() -> Self {
        PeerFirst {
            grace: Duration::from_secs(2),
            confirm_timeout: Duration::from_secs(1),
            drain_limit: 256 * 1024,
        }
    }
}

impl Policy {
    /// Every policy name [`Policy::from_str`] accepts, in the order of the table above.
    pub const NAMES: [&'static str; 7] = [
        "plain",
        "lingering",
        "lingering-reset",
        "fin-then-reset",
        "abort",
        "silent",
        "peer-first",
    ];

    /// The policy's name, as the CLI spells it (`"peer-first"`, `"lingering-reset"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Plain(_) => "plain",
            Policy::Lingering(l) if l.reset_on_timeout => "lingering-reset",
            Policy::Lingering(_) => "lingering",
            Policy::FinThenReset(_) => "fin-then-reset",
            Policy::Abort => "abort",
            Policy::Silent => "silent",
            Policy::PeerFirst(_) => "peer-first",
        }
    }

    /// The same policy with its main deadline set to `grace` (clamped to
    /// [`MAX_WAIT`]): the grace of peer-first, the flush timeout of plain, the
    /// total time of lingering, the FIN-ACK timeout of fin-then-reset. Abort and
    /// silent have no deadline and are returned unchanged.
    pub fn with_grace(self, grace: Duration) -> Policy {
        let grace = grace.min(MAX_WAIT);
        match self {
            Policy::Plain(_) => Policy::Plain(Plain {
                flush_timeout: grace,
            }),
            Policy::Lingering(l) => Policy::Lingering(Lingering {
                max_time: grace,
                idle_timeout: l.idle_timeout.min(grace),
                ..l
            }),
            Policy::FinThenReset(_) => Policy::FinThenReset(FinThenReset {
                fin_ack_timeout: grace,
            }),
            Policy::PeerFirst(p) => Policy::PeerFirst(PeerFirst { grace, ..p }),
            other => other,
        }
    }

    /// True for policies that may send RST (and so never leave TIME-WAIT behind by design).
    pub fn may_reset(&self) -> bool {
        match self {
            Policy::Plain(_) => false,
            Policy::Lingering(l) => l.reset_on_timeout,
            _ => true,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The error of parsing a [`Policy`] from a name it does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown teardown policy {given:?}; expected one of: {}", Policy::NAMES.join(", "))]
pub struct UnknownPolicy {
    given: String,
}

impl FromStr for Policy {
    type Err = UnknownPolicy;

    /// Parses a policy name (see [`Policy::NAMES`]) into that policy with its default settings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "plain" => Policy::Plain(Plain::default()),
            "lingering" => Policy::Lingering(Lingering::default()),
            "lingering-reset" => Policy::Lingering(Lingering {
                reset_on_timeout: true,
                ..Lingering::default()
            }),
            "fin-then-reset" => Policy::FinThenReset(FinThenReset::default()),
            "abort" => Policy::Abort,
            "silent" => Policy::Silent,
            "peer-first" => Policy::PeerFirst(PeerFirst::default()),
            _ => {
                return Err(UnknownPolicy {
                    given: s.to_owned(),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_and_prints_back() {
        for name in Policy::NAMES {
            let policy: Policy = name.parse().unwrap();
            assert_eq!(policy.name(), name);
        }
    }

    #[test]
    fn unknown_name_error_lists_the_choices() {
        let err = "linger".parse::<Policy>().unwrap_err().to_string();
        assert!(err.contains("\"linger\""), "{err}");
        assert!(err.contains("peer-first"), "{err}");
    }

    #[test]
    fn with_grace_clamps_huge_durations() {
        let policy = Policy::default().with_grace(Duration::MAX);
        assert_eq!(
            policy,
            Policy::PeerFirst(PeerFirst {
                grace: MAX_WAIT,
                ..PeerFirst::default()
            })
        );
    }
}
