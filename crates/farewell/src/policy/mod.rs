//! Teardown policies: what goes on the wire when a connection ends, and who keeps TIME-WAIT.
//!
//! | policy | steps | our TIME-WAIT | last bytes safe? |
//! |---|---|---|---|
//! | [`Policy::Plain`] | write goodbye, `close()` | yes, once the peer closes ([F1](crate::facts#f1)) | yes, unless unread input forces an RST ([F4](crate::facts#f4)) |
//! | [`Policy::Lingering`] | goodbye, FIN, read and discard until EOF or deadline, close | yes when the peer closes ([F2](crate::facts#f2)) | yes |
//! | [`Policy::Lingering`] with `reset_on_timeout` | as above, RST when the deadline passes | only for cooperative peers | yes, unless `max_time` cuts a slow reader |
//! | [`Policy::FinThenReset`] | goodbye, FIN, wait until our FIN is ACKed, RST | only if the peer's FIN wins the race | yes (ACKed before RST) |
//! | [`Policy::Abort`] | RST now | no | **no** ([F3](crate::facts#f3)) |
//! | [`Policy::Silent`] | `TCP_REPAIR` close: nothing sent | no | no: for abusive peers only |
//! | [`Policy::PeerFirst`] (default) | **deliver:** goodbye, *no FIN*, wait while the peer ACKs; **grace:** once all is ACKed, wait for the peer's FIN, then close; **reset** only after that | **never** | yes for every peer whose kernel is alive and still taking bytes |
//!
//! The F-numbers link to the kernel facts in [`crate::facts`], each verified on Linux 6.x.
//!
//! # Delivery is judged by progress, not by a clock
//!
//! A peer on a slow link, or one that reads slowly, takes a large last message
//! over many seconds ([F10](crate::facts#f10)). No policy gives up on a peer
//! that is still taking bytes: while something we wrote is unacknowledged, the
//! teardown watches the peer's kernel ACK it (`tcpi_bytes_acked` rising or
//! `SIOCOUTQ` falling, [F12](crate::facts#f12)) and keeps waiting as long as
//! that moves. It gives up only when delivery *stalls* (no progress for the
//! policy's stall timeout, [`DEFAULT_STALL_TIMEOUT`]) or the policy's total
//! cap passes, and the [`Outcome`](crate::Outcome) says which. A hard deadline
//! ([`Closer::hurry`](crate::Closer::hurry), a server's drain) still ends
//! everything at once, as [`Ending::ResetAtDeadline`](crate::Ending::ResetAtDeadline).
//!
//! Watching costs nothing for a peer that closes at once (its FIN wakes the
//! teardown before the first look), and little otherwise: the kernel is asked
//! about once per two round-trip times (`tcpi_rtt`, at least 20 ms), less often
//! while nothing moves, and, while bytes flow steadily, about when the send
//! queue should be empty at the rate seen so far.
//!
//! Every duration is clamped to [`MAX_WAIT`] so that a teardown always ends.

mod machine;

pub(crate) use machine::{Event, Finish, Machine, Probe, Release, Step};

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The longest any teardown step may wait; longer durations are clamped to it.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// The default stall timeout: how long delivery may go without any progress
/// (no byte written, none newly ACKed) before a policy gives up on the peer.
///
/// 15 s, in the spirit of nginx's `send_timeout` (60 s between two successful
/// writes) but shorter, because the connection is already ending: a stalled
/// teardown only holds a descriptor and a send buffer for a peer that stopped
/// reading (zero window) or vanished. 15 s is still longer than six
/// retransmission timeouts in a row from Linux's 200 ms minimum (0.2 s
/// doubling to 6.4 s: 12.6 s in all), so a live peer on a lossy path is not
/// cut during a burst of losses. A peer that reads slowly but steadily is
/// never cut by it.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The default total cap on delivering the last bytes: 60 s.
///
/// A stall timeout alone would let a peer that ACKs one byte now and then (a
/// slow-read attack) hold the teardown for ever. 60 s is the length of the
/// TIME-WAIT state that peer-first avoids: at worst a delivering teardown
/// holds its socket about as long as a TIME-WAIT entry would have held its
/// own. At 500 kbit/s it delivers about 3.7 MB, nearly the most a Linux send
/// buffer grows to by default (`tcp_wmem` max, 4 MiB). (nginx's
/// `send_timeout` is also 60 s, but there it bounds the time between two
/// writes, like our stall timeout.)
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// On the wire: data, FIN. We keep TIME-WAIT once the peer closes
    /// ([F1](crate::facts#f1)); if unread input was pending, `close()` sends RST
    /// instead and the peer may lose what it had not read ([F4](crate::facts#f4),
    /// RFC 9112 §9.6). Writing a goodbye larger than the send buffer waits for
    /// the peer to take it, as long as it makes progress.
    Plain(Plain),
    /// Write the goodbye, send FIN (`shutdown(SHUT_WR)`), read and discard until
    /// the peer's EOF or a deadline, then close (RFC 9112 §9.6, nginx, Apache).
    ///
    /// On the wire: data, FIN, then the peer's FIN. The peer's FIN puts the
    /// TIME-WAIT entry on *our* side at once ([F2](crate::facts#f2)). With
    /// `reset_on_timeout`, a peer that never closes gets an RST at the deadline
    /// (nginx `reset_timedout_connection`). A peer still ACKing our bytes is not
    /// idle: only `max_time` cuts it.
    Lingering(Lingering),
    /// Write the goodbye, send FIN, wait until the FIN is ACKed (`FIN-WAIT-2`), then RST.
    ///
    /// On the wire: data, FIN, RST. No TIME-WAIT unless the peer's FIN arrives
    /// before the reset ([F2](crate::facts#f2)). The goodbye is confirmed
    /// delivered before the RST; while the peer keeps ACKing, the wait goes on
    /// (up to `fin_ack_timeout`), and a stalled one ends as
    /// [`Ending::ResetDeliveryStalled`](crate::Ending::ResetDeliveryStalled).
    FinThenReset(FinThenReset),
    /// Reset now (`uv_tcp_close_reset`, tokio's `set_zero_linger`).
    ///
    /// The goodbye gets one non-blocking write attempt, but an RST discards
    /// whatever is not yet delivered ([F3](crate::facts#f3)). No TIME-WAIT.
    Abort,
    /// Close with `TCP_REPAIR`: nothing at all goes on the wire ([F8](crate::facts#f8)).
    ///
    /// No goodbye is sent and the peer is never told. Needs `CAP_NET_ADMIN`;
    /// without it the teardown resets instead and says so in the outcome
    /// ([`Ending::SilentRefusedReset`](crate::Ending::SilentRefusedReset)).
    /// For abusive peers only.
    Silent,
    /// The default: say goodbye, never send the first FIN. Three phases:
    ///
    /// 1. **Deliver.** Write the goodbye and wait until the peer's kernel has
    ///    ACKed everything written (`SIOCOUTQ` = 0), the goodbye and whatever
    ///    the application wrote before it. The wait goes on as long as the peer
    ///    keeps ACKing; it ends in an RST only when delivery stalls
    ///    (`stall_timeout` without progress:
    ///    [`Ending::ResetDeliveryStalled`](crate::Ending::ResetDeliveryStalled))
    ///    or `delivery_timeout` passes
    ///    ([`Ending::ResetDeliveryTimeout`](crate::Ending::ResetDeliveryTimeout)).
    /// 2. **Grace.** Once all is ACKed, give the peer `grace` to close.
    /// 3. **Reset**, only then ([`Ending::ResetAfterGrace`](crate::Ending::ResetAfterGrace)).
    ///
    /// Throughout, input is read and discarded (at most `drain_limit` bytes).
    /// When the peer's FIN comes before everything is ACKed (a half-close), we
    /// close: `LAST-ACK` → `CLOSED`, the kernel still delivers whatever is
    /// queued, and the *peer* keeps TIME-WAIT. When it comes after, a light
    /// client gets the same passive close and a heavy one (a proxy, a load
    /// generator) a reset, so that nobody keeps TIME-WAIT
    /// ([`PeerFirst::peer_time_wait`], [F13](crate::facts#f13)). We never keep
    /// TIME-WAIT; the outcome says whether the goodbye was confirmed delivered,
    /// how long each phase took, and why the peer got the ending it got.
    PeerFirst(PeerFirst),
}

impl Default for Policy {
    fn default() -> Self {
        Policy::PeerFirst(PeerFirst::default())
    }
}

/// Settings of [`Policy::Plain`].
///
/// Plain only waits while the goodbye does not fit in the send buffer; what is
/// written is delivered by the kernel after `close()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain {
    /// The longest writing the goodbye may take in all before we close with
    /// the rest unwritten (default 60 s, [`DEFAULT_DELIVERY_TIMEOUT`]).
    pub flush_timeout: Duration,
    /// The longest writing may go without progress (no byte written, none
    /// newly ACKed) before we close anyway (default 15 s, [`DEFAULT_STALL_TIMEOUT`]).
    pub stall_timeout: Duration,
}

impl Default for Plain {
    fn default() -> Self {
        Plain {
            flush_timeout: DEFAULT_DELIVERY_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// Settings of [`Policy::Lingering`]; the defaults are nginx's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lingering {
    /// The longest pause before giving up (nginx `lingering_timeout`, default
    /// 5 s). A pause is a time with no read from the peer *and* no progress in
    /// delivering our bytes: a slow reader still ACKing is not idle.
    pub idle_timeout: Duration,
    /// The longest the whole lingering close may take, goodbye included (nginx
    /// `lingering_time`, default 30 s): the hard cap, even on a peer still
    /// taking bytes.
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
    /// all before resetting anyway, however the peer is doing (default 60 s,
    /// [`DEFAULT_DELIVERY_TIMEOUT`]).
    pub fin_ack_timeout: Duration,
    /// The longest the delivery of the goodbye and the FIN may go without
    /// progress before resetting (default 15 s, [`DEFAULT_STALL_TIMEOUT`]).
    pub stall_timeout: Duration,
}

impl Default for FinThenReset {
    fn default() -> Self {
        FinThenReset {
            fin_ack_timeout: DEFAULT_DELIVERY_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// Settings of [`Policy::PeerFirst`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use farewell::{PeerFirst, Policy};
///
/// // Give a peer that stopped reading 5 s, not 15 s, before the reset.
/// let policy = Policy::PeerFirst(PeerFirst {
///     stall_timeout: Duration::from_secs(5),
///     ..PeerFirst::default()
/// });
/// # let _ = policy;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFirst {
    /// How long the peer has to close once everything written was ACKed
    /// (default 2 s). It counts from the end of delivery, so a slow reader
    /// gets the whole grace after its last byte.
    pub grace: Duration,
    /// Delivery gives up after this long without progress: no byte written,
    /// none newly ACKed (default 15 s, [`DEFAULT_STALL_TIMEOUT`]). A peer that
    /// never reads (zero window) or vanished is reset this long after its last
    /// ACK, as [`Ending::ResetDeliveryStalled`](crate::Ending::ResetDeliveryStalled).
    pub stall_timeout: Duration,
    /// Delivery gives up after this long in all, counted from the start of the
    /// teardown, however the peer is doing (default 60 s,
    /// [`DEFAULT_DELIVERY_TIMEOUT`]); then
    /// [`Ending::ResetDeliveryTimeout`](crate::Ending::ResetDeliveryTimeout).
    pub delivery_timeout: Duration,
    /// The most bytes to read and discard before resetting a peer that floods
    /// us (default 256 KiB).
    pub drain_limit: u64,
    /// Who keeps TIME-WAIT when the peer closes after everything was
    /// delivered: the peer ([`PeerTimeWait::Keep`]), nobody
    /// ([`PeerTimeWait::Spare`]), or, by default, the peer only if it is a
    /// light client ([`PeerTimeWait::Auto`]).
    pub peer_time_wait: PeerTimeWait,
    /// What a peer that did not close within the grace gets (everything
    /// being ACKed): a reset ([`GraceEnd::Reset`], the default) or our FIN,
    /// reset by the kernel on its ACK ([`GraceEnd::Fin`]).
    pub grace_end: GraceEnd,
}

impl Default for PeerFirst {
    fn default() -> Self {
        PeerFirst {
            grace: Duration::from_secs(2),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            drain_limit: 256 * 1024,
            peer_time_wait: PeerTimeWait::default(),
            grace_end: GraceEnd::default(),
        }
    }
}

/// How peer-first ends a connection whose peer did not close within the
/// grace, once everything written was ACKed ([`PeerFirst::grace_end`]).
///
/// Measured on Linux 6.18 over loopback, 100,000 bytes then the end, 20 runs
/// per client and ending:
///
/// | client | `Reset` | `Fin` |
/// |---|---|---|
/// | Python, reading until end of file | every byte, then `ConnectionResetError` | every byte, then end of file |
/// | `curl --http1.0`, a body with no length | every byte, exit 56 (`Recv failure: Connection reset by peer`) | every byte, exit 0 |
/// | Chromium, a page with no length | the page, but the load never finishes | the page, loaded |
/// | `nc`, `socat` | every byte, exit 0 (they hide the reset) | the same |
///
/// Neither left TIME-WAIT on either side in those runs. `Fin` costs what a
/// FIN costs: if the peer's own FIN crosses ours on the wire (it closes
/// within about one one-way delay of our FIN), both sides pass through
/// `CLOSING` and keep TIME-WAIT (forced here 4 times in about 140 tries); a
/// peer that vanished leaves the orphaned socket in `FIN-WAIT-1` until
/// `tcp_orphan_retries` gives up, where a reset frees it at once. So `Reset`
/// stays the default for a peer that was asked to go and did not (an
/// abusive or broken one), and `Fin` is for a peer that waits for our close:
/// farewell-http uses it for HTTP/1.0 clients that read until the server
/// closes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GraceEnd {
    /// RST ([`Ending::ResetAfterGrace`](crate::Ending::ResetAfterGrace)): a
    /// reader sees `ECONNRESET` after the data (on Linux, [F6](crate::facts#f6)).
    #[default]
    Reset,
    /// Our FIN, with `TCP_LINGER2` = -1, then `close()`: the kernel answers
    /// the ACK of the FIN with an RST ([`crate::sys::close_reset_on_fin_ack`];
    /// [`Ending::FinAfterGrace`](crate::Ending::FinAfterGrace)). A reader sees
    /// end of file; nobody keeps TIME-WAIT unless the peer's FIN crosses ours.
    Fin,
}

/// The default [`PeerTimeWait::Auto`] threshold
/// ([`CloserBuilder::heavy_client_threshold`](crate::CloserBuilder::heavy_client_threshold)):
/// a client address that ended more than this many connections with us in
/// the last minute is heavy.
///
/// Each passive close hands the client one TIME-WAIT entry for 60 s, and a
/// client has about 28,000 ephemeral ports toward one server address
/// (`ip_local_port_range` 32768-60999): 500 entries is under 2 % of them, far
/// below where its `connect()` slows down, and about 8 connections a second
/// sustained. A browser, a phone or a `curl` in a script stays under it; a
/// reverse proxy, a load balancer, a NAT gateway, a load generator or another
/// service's connection pool goes over it within a second of real traffic.
pub const DEFAULT_HEAVY_CLIENT_THRESHOLD: u32 = 500;

/// Who keeps TIME-WAIT when a peer-first teardown sees the peer close
/// ([`PeerFirst::peer_time_wait`]).
///
/// The textbook peer-first close answers the peer's FIN with our own
/// (`LAST-ACK` → `CLOSED`): the peer keeps TIME-WAIT, 60 s and one ephemeral
/// port each. Right for a light client (RFC 9293 §3.5.2, Faber, Touch, Yue),
/// costly for a heavy one: a reverse proxy or load balancer in front of the
/// server, a NAT, a load generator or a connection pool opens thousands of
/// connections a minute from one address, and its ports toward us run out.
///
/// The other answer ([`F13`](crate::facts#f13)): once everything we wrote is
/// ACKed and the peer's FIN is in, *reset* instead of closing. Our
/// `CLOSE-WAIT` socket and the peer's `FIN-WAIT-2` socket both go: no
/// TIME-WAIT anywhere, and a peer application that already closed sees
/// nothing. Nothing we wrote is lost: the peer's kernel had ACKed it all.
///
/// Either way a FIN that comes *before* everything we wrote was ACKed (or,
/// with a goodbye, before the goodbye was written) is a half-close, not a
/// goodbye: the peer may still be reading, and a reset would hand it
/// `ECONNRESET` instead of the end of file after its data. Such a peer always
/// gets the passive close ([`PeerFinChoice::HalfClose`](crate::PeerFinChoice::HalfClose)).
///
/// # Examples
///
/// ```
/// use farewell::{PeerFirst, PeerTimeWait, Policy};
///
/// // A server behind a reverse proxy: no client of ours should keep TIME-WAIT.
/// let behind_proxy = Policy::PeerFirst(PeerFirst {
///     peer_time_wait: PeerTimeWait::Spare,
///     ..PeerFirst::default()
/// });
/// # let _ = behind_proxy;
/// assert_eq!(PeerTimeWait::default(), PeerTimeWait::Auto);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerTimeWait {
    /// The default: a light client keeps TIME-WAIT, a heavy one keeps none.
    ///
    /// A client address is heavy when more connections from it than the
    /// closer's threshold ([`CloserBuilder::heavy_client_threshold`](crate::CloserBuilder::heavy_client_threshold),
    /// default [`DEFAULT_HEAVY_CLIENT_THRESHOLD`]) ended with its FIN after
    /// ours were delivered in the last 60 s (the length of TIME-WAIT on Linux,
    /// so this counts the entries the textbook close would have left it). A
    /// [`Closer`](crate::Closer) keeps the counts in a fixed table (4,096
    /// slots, 32 KiB; a sliding one-minute window per slot; no lock):
    /// addresses that share a slot share a count, which can only make a light
    /// client look heavy, never lose data. [`close`](crate::close), which has
    /// no closer and so no memory of past connections, treats every peer as
    /// light.
    #[default]
    Auto,
    /// Always the textbook passive close: the peer keeps TIME-WAIT.
    Keep,
    /// Always reset once the peer's FIN is in and everything is ACKed: nobody
    /// keeps TIME-WAIT. For a server that only ever has heavy clients (behind
    /// a proxy or load balancer).
    Spare,
}

impl PeerTimeWait {
    /// Every name [`PeerTimeWait::from_str`] accepts.
    pub const NAMES: [&'static str; 3] = ["auto", "keep", "spare"];

    /// The name, as the CLI spells it: `auto`, `keep`, `spare`.
    pub fn name(self) -> &'static str {
        match self {
            PeerTimeWait::Auto => "auto",
            PeerTimeWait::Keep => "keep",
            PeerTimeWait::Spare => "spare",
        }
    }
}

impl fmt::Display for PeerTimeWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The error of parsing a [`PeerTimeWait`] from a name it does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown peer TIME-WAIT choice {given:?}; expected one of: {}", PeerTimeWait::NAMES.join(", "))]
pub struct UnknownPeerTimeWait {
    given: String,
}

impl FromStr for PeerTimeWait {
    type Err = UnknownPeerTimeWait;

    /// Parses `auto`, `keep` or `spare`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(PeerTimeWait::default()),
            "keep" => Ok(PeerTimeWait::Keep),
            "spare" => Ok(PeerTimeWait::Spare),
            _ => Err(UnknownPeerTimeWait {
                given: s.to_owned(),
            }),
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
    ///
    /// # Notes
    ///
    /// For plain, lingering and fin-then-reset that deadline is the total cap,
    /// which cuts even a peer still taking bytes; peer-first's grace only
    /// starts once everything is delivered.
    pub fn with_grace(self, grace: Duration) -> Policy {
        let grace = grace.min(MAX_WAIT);
        match self {
            Policy::Plain(p) => Policy::Plain(Plain {
                flush_timeout: grace,
                ..p
            }),
            Policy::Lingering(l) => Policy::Lingering(Lingering {
                max_time: grace,
                idle_timeout: l.idle_timeout.min(grace),
                ..l
            }),
            Policy::FinThenReset(f) => Policy::FinThenReset(FinThenReset {
                fin_ack_timeout: grace,
                ..f
            }),
            Policy::PeerFirst(p) => Policy::PeerFirst(PeerFirst { grace, ..p }),
            other => other,
        }
    }

    /// The same policy with peer-first's [`PeerFirst::peer_time_wait`] set;
    /// other policies are returned unchanged (they never wait for the peer's
    /// FIN after delivery).
    pub fn with_peer_time_wait(self, choice: PeerTimeWait) -> Policy {
        match self {
            Policy::PeerFirst(p) => Policy::PeerFirst(PeerFirst {
                peer_time_wait: choice,
                ..p
            }),
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
