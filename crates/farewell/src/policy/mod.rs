//! Teardown policies: what goes on the wire when a connection ends, and who keeps TIME-WAIT.
//!
//! | policy | steps | our TIME-WAIT | last bytes safe? |
//! |---|---|---|---|
//! | [`Policy::Plain`] | write goodbye, `close()` | yes, once the peer closes ([F1](crate::facts#f1)) | yes, unless unread input forces an RST ([F4](crate::facts#f4)) |
//! | [`Policy::Lingering`] | goodbye, FIN, read and discard until EOF or deadline, close | yes when the peer closes ([F2](crate::facts#f2)) | yes |
//! | [`Policy::Lingering`] with `reset_on_timeout` | as above, RST when the deadline passes | yes when the peer closes ([F2](crate::facts#f2)) | yes, unless `delivery_timeout` cuts a slow reader |
//! | [`Policy::FinThenReset`] | goodbye, FIN, wait until our FIN is ACKed, RST | when the peer's FIN comes before the RST ([F2](crate::facts#f2)) | yes (ACKed before RST) |
//! | [`Policy::Abort`] | RST now | no | **no** ([F3](crate::facts#f3)) |
//! | [`Policy::Silent`] | `TCP_REPAIR` close: nothing sent | no | no: for abusive peers only |
//! | [`Policy::PeerFirst`] (default) | **deliver:** goodbye, *no FIN*, wait while the peer ACKs; **grace:** once all is ACKed, wait for the peer's FIN, then close; **reset** only after that | **never** | yes for every peer whose kernel is alive and still taking bytes |
//!
//! The F-numbers link to the kernel facts in [`crate::facts`], each verified on Linux 6.x.
//!
//! # Deadlines
//!
//! Three deadlines, each with one name everywhere (the policies' fields, the
//! accessors on [`Policy`], libfarewell's `fw_options_set_*_ms`, the CLI's
//! `--grace`, `--stall-timeout` and `--delivery-timeout`):
//!
//! * **`grace`**: how long peer-first waits for the peer's FIN once
//!   everything it wrote was ACKed. Counted from the end of delivery.
//! * **`stall_timeout`**: how long delivering what we wrote may go without
//!   progress (no byte written, none newly ACKed by the peer's kernel).
//!   Counted from the last progress, so a slow but steady reader is never cut.
//! * **`delivery_timeout`**: the total cap on delivering what we wrote,
//!   counted from the start of the teardown; it cuts even a peer that is
//!   still taking bytes (a slow-read attack).
//!
//! What each policy does with each ([`Policy::grace`],
//! [`Policy::stall_timeout`], [`Policy::delivery_timeout`] read them; the
//! `with_` methods set them):
//!
//! | policy | `grace` | `stall_timeout` | `delivery_timeout` |
//! |---|---|---|---|
//! | [`Policy::Plain`] | none | writing the goodbye made no progress: close with the rest unwritten (default 15 s, [`DEFAULT_STALL_TIMEOUT`]) | writing the goodbye took this long in all: close with the rest unwritten (default 60 s, [`DEFAULT_DELIVERY_TIMEOUT`]) |
//! | [`Policy::Lingering`] | none (it reads for the peer's FIN until one of the other two passes) | writing the goodbye made no progress, or, after our FIN, no byte was read *and* none ACKed for this long: close, or reset with `reset_on_timeout` (nginx `lingering_timeout`, default 5 s) | the whole lingering close, goodbye and reading included: close, or reset with `reset_on_timeout` (nginx `lingering_time`, default 30 s) |
//! | [`Policy::FinThenReset`] | none (it resets once its FIN is ACKed) | delivering the goodbye and our FIN made no progress: reset, [`Ending::ResetDeliveryStalled`](crate::Ending::ResetDeliveryStalled) (default 15 s) | goodbye and FIN not ACKed within this: reset, [`Ending::ResetFinUnacked`](crate::Ending::ResetFinUnacked) (default 60 s) |
//! | [`Policy::Abort`], [`Policy::Silent`] | none | none | none: they do not wait |
//! | [`Policy::PeerFirst`] | after everything was ACKed, the peer has this long to close: then [`GraceEnd`] (default 2 s, [`DEFAULT_GRACE`]) | delivery made no progress: reset, [`Ending::ResetDeliveryStalled`](crate::Ending::ResetDeliveryStalled) (default 15 s) | delivery took this long in all: reset, [`Ending::ResetDeliveryTimeout`](crate::Ending::ResetDeliveryTimeout) (default 60 s) |
//!
//! A policy's `with_` method leaves a policy without that deadline as it is
//! (the accessor says `None`). The measured counterparts are
//! [`Outcome::deliver`](crate::Outcome::deliver) and
//! [`Outcome::grace`](crate::Outcome::grace). A [`Closer`](crate::Closer)'s
//! hard deadline ([`Closer::hurry`](crate::Closer::hurry)) cuts all three.
//!
//! ```
//! use std::time::Duration;
//! use farewell::Policy;
//!
//! let plain: Policy = "plain".parse().unwrap();
//! let plain = plain.with_delivery_timeout(Duration::from_secs(5));
//! assert_eq!(plain.delivery_timeout(), Some(Duration::from_secs(5)));
//! // Plain never waits for the peer's FIN: it has no grace, and setting one changes nothing.
//! assert_eq!(plain.with_grace(Duration::from_secs(1)), plain);
//! assert_eq!(plain.grace(), None);
//!
//! let peer_first = Policy::default().with_stall_timeout(Duration::from_secs(5));
//! assert_eq!(peer_first.stall_timeout(), Some(Duration::from_secs(5)));
//! assert_eq!(peer_first.grace(), Some(farewell::policy::DEFAULT_GRACE));
//! ```
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

/// The default grace of [`Policy::PeerFirst`]: how long the peer has to
/// close once everything written was ACKed, 2 s.
///
/// A cooperative peer closes within one round trip of reading the goodbye;
/// 2 s covers a slow application's reaction and a retransmitted FIN, while
/// a peer that never closes holds its socket only that long after delivery.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// The default drain limit of [`Policy::PeerFirst`]: at most 256 KiB read
/// and discarded from the peer during a teardown before it is reset as a
/// flood ([`Ending::ResetOnDrainLimit`](crate::Ending::ResetOnDrainLimit)).
///
/// Enough for a peer that was still sending when we said goodbye (a request
/// or two in flight, a protocol's own close message), small enough that a
/// peer flooding us cannot keep a teardown reading for long. A server whose
/// peers may have a large unread body in flight when it answers early (an
/// HTTP 413 to an upload) wants more: farewell-http uses 2 MiB
/// (`farewell_http::DEFAULT_DRAIN_LIMIT`, which says why).
pub const DEFAULT_DRAIN_LIMIT: u64 = 256 * 1024;

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
    /// the peer to take it, as long as it makes progress (its `stall_timeout`
    /// and `delivery_timeout`: see [Deadlines](self#deadlines)).
    Plain(Plain),
    /// Write the goodbye, send FIN (`shutdown(SHUT_WR)`), read and discard until
    /// the peer's EOF or a deadline, then close (RFC 9112 §9.6, nginx, Apache).
    ///
    /// On the wire: data, FIN, then the peer's FIN. The peer's FIN puts the
    /// TIME-WAIT entry on *our* side at once ([F2](crate::facts#f2)). With
    /// `reset_on_timeout`, a peer that never closes gets an RST at the deadline
    /// (nginx `reset_timedout_connection`). A peer still ACKing our bytes is not
    /// stalled: only `delivery_timeout` cuts it.
    Lingering(Lingering),
    /// Write the goodbye, send FIN, wait until the FIN is ACKed (`FIN-WAIT-2`), then RST.
    ///
    /// On the wire: data, FIN, RST. No TIME-WAIT unless the peer's FIN arrives
    /// before the reset: then we keep it ([F2](crate::facts#f2)). A peer that
    /// closes as soon as it reads our FIN usually wins that race ([`Policy::may_reset`]
    /// has the figures). The goodbye is confirmed
    /// delivered before the RST; while the peer keeps ACKing, the wait goes on
    /// (up to `delivery_timeout`), and a stalled one ends as
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
    ///    (These three deadlines, for every policy: [Deadlines](self#deadlines).)
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
    pub delivery_timeout: Duration,
    /// The longest writing may go without progress (no byte written, none
    /// newly ACKed) before we close anyway (default 15 s, [`DEFAULT_STALL_TIMEOUT`]).
    pub stall_timeout: Duration,
}

impl Default for Plain {
    fn default() -> Self {
        Plain {
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// Settings of [`Policy::Lingering`]; the defaults are nginx's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lingering {
    /// The longest pause before giving up (nginx `lingering_timeout`, default
    /// 5 s). A pause is a time with no read from the peer *and* no progress in
    /// delivering our bytes: a slow reader still ACKing is not stalled.
    pub stall_timeout: Duration,
    /// The longest the whole lingering close may take, goodbye included (nginx
    /// `lingering_time`, default 30 s): the hard cap, even on a peer still
    /// taking bytes.
    pub delivery_timeout: Duration,
    /// Reset instead of closing when a deadline passes (nginx
    /// `reset_timedout_connection`, default off).
    pub reset_on_timeout: bool,
}

impl Default for Lingering {
    fn default() -> Self {
        Lingering {
            stall_timeout: Duration::from_secs(5),
            delivery_timeout: Duration::from_secs(30),
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
    pub delivery_timeout: Duration,
    /// The longest the delivery of the goodbye and the FIN may go without
    /// progress before resetting (default 15 s, [`DEFAULT_STALL_TIMEOUT`]).
    pub stall_timeout: Duration,
}

impl Default for FinThenReset {
    fn default() -> Self {
        FinThenReset {
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
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
    /// (default 2 s, [`DEFAULT_GRACE`]). It counts from the end of delivery,
    /// so a slow reader gets the whole grace after its last byte.
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
    /// us (default 256 KiB, [`DEFAULT_DRAIN_LIMIT`]).
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
            grace: DEFAULT_GRACE,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            drain_limit: DEFAULT_DRAIN_LIMIT,
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
/// Without a goodbye, a FIN already in when the teardown starts, with nothing
/// in flight, cannot be told from a peer that read everything and closed: the
/// teardown sees the socket only now. The caller knows when its last answer
/// was written, and one that saw the FIN come before it keeps the passive
/// close itself: farewell-http checks before each response's first write and
/// then hands the connection over with [`PeerTimeWait::Keep`]; the Node addon
/// checks before each request and closes such a socket passively.
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

    /// Peer-first's grace: how long the peer has to close once everything
    /// written was ACKed. `None` for every other policy: none of them waits
    /// for the peer's FIN after delivery (see [Deadlines](self#deadlines)).
    pub fn grace(&self) -> Option<Duration> {
        let mut policy = *self;
        policy.deadlines().and_then(|d| d.grace.map(|grace| *grace))
    }

    /// How long delivering what we wrote may go without progress before the
    /// policy gives up (lingering: without progress and without a read).
    /// `None` for abort and silent, which never wait.
    pub fn stall_timeout(&self) -> Option<Duration> {
        let mut policy = *self;
        policy.deadlines().map(|d| *d.stall)
    }

    /// The total cap on delivering what we wrote, from the start of the
    /// teardown (lingering: on the whole lingering close). `None` for abort
    /// and silent, which never wait.
    pub fn delivery_timeout(&self) -> Option<Duration> {
        let mut policy = *self;
        policy.deadlines().map(|d| *d.delivery)
    }

    /// The same policy with peer-first's grace set (clamped to [`MAX_WAIT`]);
    /// other policies have no grace and are returned unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use farewell::Policy;
    ///
    /// let patient = Policy::default().with_grace(Duration::from_secs(5));
    /// assert_eq!(patient.grace(), Some(Duration::from_secs(5)));
    /// ```
    pub fn with_grace(mut self, grace: Duration) -> Policy {
        if let Some(place) = self.deadlines().and_then(|d| d.grace) {
            *place = grace.min(MAX_WAIT);
        }
        self
    }

    /// The same policy with its stall timeout set (clamped to [`MAX_WAIT`]);
    /// abort and silent are returned unchanged.
    pub fn with_stall_timeout(mut self, stall: Duration) -> Policy {
        if let Some(d) = self.deadlines() {
            *d.stall = stall.min(MAX_WAIT);
        }
        self
    }

    /// The same policy with its delivery timeout, the total cap, set (clamped
    /// to [`MAX_WAIT`]); abort and silent are returned unchanged.
    pub fn with_delivery_timeout(mut self, cap: Duration) -> Policy {
        if let Some(d) = self.deadlines() {
            *d.delivery = cap.min(MAX_WAIT);
        }
        self
    }

    /// The one place that knows which field of which policy holds which
    /// deadline; `None` for the policies that never wait.
    fn deadlines(&mut self) -> Option<Deadlines<'_>> {
        match self {
            Policy::Plain(p) => Some(Deadlines {
                grace: None,
                stall: &mut p.stall_timeout,
                delivery: &mut p.delivery_timeout,
            }),
            Policy::Lingering(l) => Some(Deadlines {
                grace: None,
                stall: &mut l.stall_timeout,
                delivery: &mut l.delivery_timeout,
            }),
            Policy::FinThenReset(f) => Some(Deadlines {
                grace: None,
                stall: &mut f.stall_timeout,
                delivery: &mut f.delivery_timeout,
            }),
            Policy::PeerFirst(p) => Some(Deadlines {
                grace: Some(&mut p.grace),
                stall: &mut p.stall_timeout,
                delivery: &mut p.delivery_timeout,
            }),
            Policy::Abort | Policy::Silent => None,
        }
    }

    /// Peer-first's [`PeerFirst::peer_time_wait`]: what it does once the
    /// peer's FIN comes after delivery. `None` for the other policies (they
    /// never wait for the peer's FIN after delivery).
    ///
    /// ```
    /// use farewell::{PeerTimeWait, Policy};
    ///
    /// assert_eq!(Policy::default().peer_time_wait(), Some(PeerTimeWait::Auto));
    /// assert_eq!(Policy::Abort.peer_time_wait(), None);
    /// ```
    pub fn peer_time_wait(&self) -> Option<PeerTimeWait> {
        match self {
            Policy::PeerFirst(p) => Some(p.peer_time_wait),
            _ => None,
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

    /// True for policies that may end a connection with an RST: lingering
    /// with `reset_on_timeout`, fin-then-reset, abort, silent (which resets
    /// when `TCP_REPAIR` is refused) and peer-first.
    ///
    /// # Notes
    ///
    /// A reset leaves no TIME-WAIT, but a policy that *may* reset does not
    /// always reset, so this says nothing about TIME-WAIT. Peer-first never
    /// keeps it on our side (it never sends the first FIN), nor do abort and
    /// silent. Lingering-reset and fin-then-reset send their FIN first, so a
    /// peer whose FIN comes before the reset leaves the TIME-WAIT entry with
    /// us ([F2](crate::facts#f2)): in `farewell lab --path loopback` (Linux
    /// 6.18, 5 connections for each of 9 peer behaviours), fin-then-reset kept
    /// it on 12 of 45 connections (every cooperative peer, 2 of 5 slow
    /// readers, every peer that never handshakes and then closes) and
    /// lingering-reset on 15.
    pub fn may_reset(&self) -> bool {
        match self {
            Policy::Plain(_) => false,
            Policy::Lingering(l) => l.reset_on_timeout,
            _ => true,
        }
    }
}

/// Where a policy keeps its deadlines ([`Policy::deadlines`]).
struct Deadlines<'a> {
    grace: Option<&'a mut Duration>,
    stall: &'a mut Duration,
    delivery: &'a mut Duration,
}

impl fmt::Display for Policy {
    /// The name (`peer-first`); with `{:#}`, the name and its deadlines:
    /// `peer-first (grace 2s, stall timeout 15s, delivery timeout 60s)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return f.pad(self.name());
        }
        let deadlines = [
            ("grace", self.grace()),
            ("stall timeout", self.stall_timeout()),
            ("delivery timeout", self.delivery_timeout()),
        ];
        let set: Vec<String> = deadlines
            .iter()
            .filter_map(|(name, d)| d.map(|d| format!("{name} {d:?}")))
            .collect();
        if set.is_empty() {
            write!(f, "{}", self.name())
        } else {
            write!(f, "{} ({})", self.name(), set.join(", "))
        }
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
        let policy = Policy::default()
            .with_stall_timeout(Duration::MAX)
            .with_delivery_timeout(Duration::MAX);
        assert_eq!(policy.stall_timeout(), Some(MAX_WAIT));
        assert_eq!(policy.delivery_timeout(), Some(MAX_WAIT));
    }

    /// Which field of each policy holds each deadline: (name, grace, stall, delivery).
    fn deadline_fields(policy: Policy) -> (Option<Duration>, Option<Duration>, Option<Duration>) {
        match policy {
            Policy::Plain(p) => (None, Some(p.stall_timeout), Some(p.delivery_timeout)),
            Policy::Lingering(l) => (None, Some(l.stall_timeout), Some(l.delivery_timeout)),
            Policy::FinThenReset(f) => (None, Some(f.stall_timeout), Some(f.delivery_timeout)),
            Policy::PeerFirst(p) => (
                Some(p.grace),
                Some(p.stall_timeout),
                Some(p.delivery_timeout),
            ),
            Policy::Abort | Policy::Silent => (None, None, None),
        }
    }

    #[test]
    fn every_policy_reads_every_deadline_from_its_own_field() {
        let expected = [
            ("plain", (None, Some(15_000), Some(60_000))),
            ("lingering", (None, Some(5_000), Some(30_000))),
            ("lingering-reset", (None, Some(5_000), Some(30_000))),
            ("fin-then-reset", (None, Some(15_000), Some(60_000))),
            ("abort", (None, None, None)),
            ("silent", (None, None, None)),
            ("peer-first", (Some(2_000), Some(15_000), Some(60_000))),
        ];
        assert_eq!(expected.len(), Policy::NAMES.len());
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        for (name, (grace, stall, delivery)) in expected {
            let policy: Policy = name.parse().unwrap();
            assert_eq!(ms(policy.grace()), grace, "{name} grace");
            assert_eq!(ms(policy.stall_timeout()), stall, "{name} stall");
            assert_eq!(ms(policy.delivery_timeout()), delivery, "{name} delivery");
            assert_eq!(
                (
                    policy.grace(),
                    policy.stall_timeout(),
                    policy.delivery_timeout()
                ),
                deadline_fields(policy),
                "{name}"
            );
        }
    }

    #[test]
    fn every_setter_changes_its_own_deadline_and_nothing_else() {
        let (g, s, d) = (
            Duration::from_millis(111),
            Duration::from_millis(222),
            Duration::from_millis(333),
        );
        for name in Policy::NAMES {
            let policy: Policy = name.parse().unwrap();
            let (grace, stall, delivery) = deadline_fields(policy);

            let with = policy.with_grace(g);
            assert_eq!(
                deadline_fields(with),
                (grace.map(|_| g), stall, delivery),
                "{name}"
            );
            assert_eq!(with.grace(), grace.map(|_| g), "{name}");

            let with = policy.with_stall_timeout(s);
            assert_eq!(
                deadline_fields(with),
                (grace, stall.map(|_| s), delivery),
                "{name}"
            );
            assert_eq!(with.stall_timeout(), stall.map(|_| s), "{name}");

            let with = policy.with_delivery_timeout(d);
            assert_eq!(
                deadline_fields(with),
                (grace, stall, delivery.map(|_| d)),
                "{name}"
            );
            assert_eq!(with.delivery_timeout(), delivery.map(|_| d), "{name}");

            // The rest of the policy is kept: its name, and a policy
            // without the deadline is unchanged.
            for with in [
                policy.with_grace(g),
                policy.with_stall_timeout(s),
                policy.with_delivery_timeout(d),
            ] {
                assert_eq!(with.name(), name);
            }
            if grace.is_none() {
                assert_eq!(policy.with_grace(g), policy, "{name}");
            }
            if stall.is_none() {
                assert_eq!(policy.with_stall_timeout(s), policy, "{name}");
                assert_eq!(policy.with_delivery_timeout(d), policy, "{name}");
            }
        }
        // Peer-first keeps its other settings.
        let spare = Policy::default()
            .with_peer_time_wait(PeerTimeWait::Spare)
            .with_delivery_timeout(d);
        assert!(matches!(spare, Policy::PeerFirst(p) if p.peer_time_wait == PeerTimeWait::Spare));
    }

    #[test]
    fn alternate_display_lists_the_deadlines_a_policy_has() {
        assert_eq!(Policy::default().to_string(), "peer-first");
        assert_eq!(
            format!("{:#}", Policy::default()),
            "peer-first (grace 2s, stall timeout 15s, delivery timeout 60s)"
        );
        let plain: Policy = "plain".parse().unwrap();
        assert_eq!(
            format!("{:#}", plain.with_stall_timeout(Duration::from_millis(300))),
            "plain (stall timeout 300ms, delivery timeout 60s)"
        );
        assert_eq!(format!("{:#}", Policy::Abort), "abort");
    }
}
