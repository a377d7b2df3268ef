//! What one teardown did: the path it took, who keeps TIME-WAIT, whether the goodbye arrived.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Policy, TcpState};

/// The way a teardown ended: its [`Outcome::ending`].
///
/// Named `Ending` (not `Path`) so it does not shadow [`std::path::Path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Ending {
    /// The peer sent its FIN first; we closed after it (passive close).
    PeerClosed,
    /// Peer-first: everything we wrote was ACKed, then the grace passed without
    /// the peer's FIN; we reset.
    ResetAfterGrace,
    /// Peer-first: the peer sent more than the drain limit during the teardown; we reset.
    ResetOnDrainLimit,
    /// The peer reset the connection (or it was already reset) during the teardown.
    PeerReset,
    /// The connection failed during the teardown for another reason (e.g.
    /// `ETIMEDOUT` after `TCP_USER_TIMEOUT`); we closed.
    ConnectionLost,
    /// Lingering: we sent FIN, the peer closed in time, we closed.
    LingeringClose,
    /// Lingering: its stall timeout (no read and no progress) or its
    /// delivery timeout (the whole close) passed; we closed anyway (no reset).
    LingeringTimeout,
    /// Lingering with `reset_on_timeout`: its stall timeout or delivery
    /// timeout passed; we reset.
    ResetAfterLinger,
    /// Fin-then-reset: our FIN was ACKed, then we reset.
    ResetAfterFinAck,
    /// Fin-then-reset: the goodbye and our FIN were not ACKed within the
    /// policy's `delivery_timeout` (the peer kept ACKing, but too slowly); we reset.
    ResetFinUnacked,
    /// Plain: we wrote the goodbye (or gave up writing it) and closed.
    PlainClose,
    /// Abort: we reset at once.
    Aborted,
    /// Silent: the socket was closed with nothing on the wire.
    Silent,
    /// Silent was asked for but `TCP_REPAIR` was refused (no `CAP_NET_ADMIN`); we reset instead.
    SilentRefusedReset,
    /// The socket was not an established connection (still connecting, or never
    /// connected); we reset it at once.
    NotEstablished,
    /// The closer was hurried ([`Closer::hurry`](crate::Closer::hurry), e.g. at
    /// a server's drain deadline) before the peer's FIN came; we reset after one
    /// probe of whether the goodbye was ACKed (the outcome's `goodbye` says).
    ResetAtDeadline,
    /// Delivery stalled: the peer's kernel ACKed nothing more for the policy's
    /// stall timeout (it stopped reading, its window is zero, or it vanished)
    /// while bytes of ours were still unacknowledged; we reset. Peer-first and
    /// fin-then-reset. [`Outcome::unacked_at_close`] says how much was lost.
    ResetDeliveryStalled,
    /// Peer-first: delivery was still going (the peer kept ACKing) when
    /// its `delivery_timeout`, the total cap, passed; we reset.
    ResetDeliveryTimeout,
    /// Peer-first: everything we wrote was ACKed, then the peer's FIN came,
    /// and we reset instead of closing passively, so that the peer (a heavy
    /// client, or [`PeerTimeWait::Spare`](crate::PeerTimeWait::Spare)) keeps
    /// no TIME-WAIT either ([F13](crate::facts#f13)). Nothing was lost; a peer
    /// application that already closed sees nothing.
    ResetAfterPeerFin,
    /// Peer-first with [`GraceEnd::Fin`](crate::GraceEnd::Fin): everything we
    /// wrote was ACKed, the grace passed without the peer's FIN, and we sent
    /// ours; the kernel resets the connection when it is ACKed. The peer
    /// reads end of file; nobody keeps TIME-WAIT.
    FinAfterGrace,
}

impl Ending {
    /// Every path, in declaration order.
    pub const ALL: [Ending; 20] = [
        Ending::PeerClosed,
        Ending::ResetAfterGrace,
        Ending::ResetOnDrainLimit,
        Ending::PeerReset,
        Ending::ConnectionLost,
        Ending::LingeringClose,
        Ending::LingeringTimeout,
        Ending::ResetAfterLinger,
        Ending::ResetAfterFinAck,
        Ending::ResetFinUnacked,
        Ending::PlainClose,
        Ending::Aborted,
        Ending::Silent,
        Ending::SilentRefusedReset,
        Ending::NotEstablished,
        Ending::ResetAtDeadline,
        Ending::ResetDeliveryStalled,
        Ending::ResetDeliveryTimeout,
        Ending::ResetAfterPeerFin,
        Ending::FinAfterGrace,
    ];

    /// True when *we* ended the connection with an RST (or, for
    /// [`Ending::Silent`], with nothing on the wire): no TIME-WAIT entry
    /// anywhere. False for [`Ending::PeerReset`]: the peer sent that one.
    pub fn we_reset(self) -> bool {
        matches!(
            self,
            Ending::ResetAfterGrace
                | Ending::ResetOnDrainLimit
                | Ending::ResetAfterLinger
                | Ending::ResetAfterFinAck
                | Ending::ResetFinUnacked
                | Ending::Aborted
                | Ending::Silent
                | Ending::SilentRefusedReset
                | Ending::NotEstablished
                | Ending::ResetAtDeadline
                | Ending::ResetDeliveryStalled
                | Ending::ResetDeliveryTimeout
                | Ending::ResetAfterPeerFin
        )
    }

    /// A short kebab-case name, stable for logs, metrics labels and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Ending::PeerClosed => "peer-closed",
            Ending::ResetAfterGrace => "reset-after-grace",
            Ending::ResetOnDrainLimit => "reset-on-drain-limit",
            Ending::PeerReset => "peer-reset",
            Ending::ConnectionLost => "connection-lost",
            Ending::LingeringClose => "lingering-close",
            Ending::LingeringTimeout => "lingering-timeout",
            Ending::ResetAfterLinger => "reset-after-linger",
            Ending::ResetAfterFinAck => "reset-after-fin-ack",
            Ending::ResetFinUnacked => "reset-fin-unacked",
            Ending::PlainClose => "plain-close",
            Ending::Aborted => "aborted",
            Ending::Silent => "silent",
            Ending::SilentRefusedReset => "silent-refused-reset",
            Ending::NotEstablished => "not-established",
            Ending::ResetAtDeadline => "reset-at-deadline",
            Ending::ResetDeliveryStalled => "reset-delivery-stalled",
            Ending::ResetDeliveryTimeout => "reset-delivery-timeout",
            Ending::ResetAfterPeerFin => "reset-after-peer-fin",
            Ending::FinAfterGrace => "fin-after-grace",
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Which side keeps the connection's TIME-WAIT entry after the teardown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeWait {
    /// The peer closed first; it keeps TIME-WAIT and we keep nothing.
    Peer,
    /// We sent the first FIN and the peer's FIN has come: our kernel keeps the
    /// entry (60 s on Linux).
    Us,
    /// We sent the first FIN and the peer has not closed yet: if it closes
    /// within `tcp_fin_timeout`, our kernel keeps the entry; if not, nobody does.
    UsIfPeerCloses,
    /// The connection ended with a reset (or silently): no entry anywhere.
    Nobody,
}

impl TimeWait {
    /// A short name for logs and JSON: `peer`, `us`, `us-if-peer-closes`, `nobody`.
    pub fn name(self) -> &'static str {
        match self {
            TimeWait::Peer => "peer",
            TimeWait::Us => "us",
            TimeWait::UsIfPeerCloses => "us-if-peer-closes",
            TimeWait::Nobody => "nobody",
        }
    }
}

impl fmt::Display for TimeWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A duration as a person reads it: `0`, `1.2ms`, `2.0s` (never `0.0ns`).
struct Short(Duration);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            f.write_str("0")
        } else {
            write!(f, "{:.1?}", self.0)
        }
    }
}

/// Why a peer-first teardown that saw the peer's FIN ended the way it did:
/// passive close (the peer keeps TIME-WAIT) or reset (nobody does). See
/// [`PeerTimeWait`](crate::PeerTimeWait).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerFinChoice {
    /// The FIN came before everything we wrote was ACKed (or before the
    /// goodbye was written): a half-close, the peer may still be reading.
    /// Passive close, whatever the setting.
    HalfClose,
    /// [`PeerTimeWait::Keep`](crate::PeerTimeWait::Keep): passive close.
    Kept,
    /// [`PeerTimeWait::Spare`](crate::PeerTimeWait::Spare): reset.
    Spared,
    /// [`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto), a light client:
    /// `recent` endings from its address in the last minute (this one
    /// included), not over the threshold. Passive close.
    Light {
        /// Endings from the peer's address in the last minute, this one included.
        recent: u32,
    },
    /// [`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto), a heavy client:
    /// over the threshold. Reset.
    Heavy {
        /// Endings from the peer's address in the last minute, this one included.
        recent: u32,
    },
}

impl PeerFinChoice {
    /// A short name for logs, metrics labels and JSON: `half-close`, `kept`,
    /// `spared`, `light`, `heavy`.
    pub fn name(self) -> &'static str {
        match self {
            PeerFinChoice::HalfClose => "half-close",
            PeerFinChoice::Kept => "kept",
            PeerFinChoice::Spared => "spared",
            PeerFinChoice::Light { .. } => "light",
            PeerFinChoice::Heavy { .. } => "heavy",
        }
    }
}

impl fmt::Display for PeerFinChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerFinChoice::Light { recent } | PeerFinChoice::Heavy { recent } => {
                write!(
                    f,
                    "{} client ({recent} endings in the last minute)",
                    self.name()
                )
            }
            other => f.pad(other.name()),
        }
    }
}

/// Whether the goodbye reached the peer's kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// The whole goodbye was written and the peer's kernel ACKed it
    /// (`SIOCOUTQ` reached 0, or our later FIN was ACKed).
    Confirmed,
    /// It may or may not have arrived: not fully written, or not ACKed when the
    /// socket was closed.
    Unconfirmed,
    /// There was no goodbye to send (empty, or the policy sends none).
    NoneSent,
}

impl Delivery {
    /// A short name for logs and JSON: `confirmed`, `unconfirmed`, `none-sent`.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Confirmed => "confirmed",
            Delivery::Unconfirmed => "unconfirmed",
            Delivery::NoneSent => "none-sent",
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The report of one teardown.
///
/// `Display` gives one line, e.g.
/// `peer-first 127.0.0.1:7878 -> 127.0.0.1:50312: peer-closed, TIME-WAIT at peer, goodbye confirmed, ACKed by the peer's kernel 9 B, drained 0 B, unacked 0 B, deliver 1.2ms + grace 0 = 1.2ms`
/// (the peer closed before the teardown looked at its ACKs: all of it counts as delivering).
///
/// # Phases
///
/// A teardown first *delivers* (writes the goodbye and waits until the peer's
/// kernel ACKed everything written), then waits for the peer to close.
/// [`Outcome::deliver`] and [`Outcome::grace`] say how long each took; they
/// add up to [`Outcome::elapsed`]. They are the measured times of the
/// policy's deadlines of the same names ([the policy docs](crate::policy#deadlines)):
/// `deliver` is bounded by its `stall_timeout` and `delivery_timeout`,
/// `grace` by peer-first's `grace`. A teardown that ended while delivering
/// (the peer closed first, or delivery stalled) has a zero grace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// The policy that ran, with its settings (its name: [`Policy::name`]).
    pub policy: Policy,
    /// The way the teardown ended.
    pub ending: Ending,
    /// Who keeps TIME-WAIT, as far as the kernel's state at close tells.
    pub time_wait: TimeWait,
    /// Whether the goodbye reached the peer's kernel.
    pub goodbye: Delivery,
    /// Bytes of the goodbye that were written into the socket.
    pub goodbye_written: usize,
    /// Bytes the peer's kernel ACKed during the teardown (`tcpi_bytes_acked`,
    /// our FIN not counted): the goodbye, and whatever the application had
    /// written before that was still in flight. 0 where the kernel does not
    /// count (before Linux 4.1, or when it could not be asked).
    pub bytes_delivered: u64,
    /// Bytes read and discarded during the teardown.
    pub bytes_drained: u64,
    /// Data bytes still unacknowledged when the socket was closed (a queued FIN
    /// is not counted); `None` when the kernel could no longer tell (the
    /// connection was already reset).
    pub unacked_at_close: Option<u32>,
    /// The TCP state just before the socket was closed, when the kernel reported one.
    pub state_at_close: Option<TcpState>,
    /// The deliver phase: from the start of the teardown until everything
    /// written was seen ACKed, or, if it never was, until the socket was closed.
    pub deliver: Duration,
    /// The grace phase: from the end of delivery until the socket was closed
    /// (zero if delivery never completed). For peer-first, the measured time
    /// of its [`grace`](crate::PeerFirst::grace): how long the peer took to
    /// close, or the whole grace before the reset. Other policies have no
    /// grace setting; for them it is the time after delivery (lingering:
    /// reading until the peer's FIN; fin-then-reset: from our FIN's ACK to the
    /// reset).
    pub grace: Duration,
    /// From the start of the teardown until the descriptor was closed
    /// (`deliver + grace`).
    pub elapsed: Duration,
    /// Our address, when known.
    pub local: Option<SocketAddr>,
    /// The peer's address, when known.
    pub peer: Option<SocketAddr>,
    /// The TIME-WAIT entry this teardown left on our side was destroyed
    /// afterwards (a [`Closer`](crate::Closer) with `reap_time_wait`).
    pub reaped: bool,
    /// TLS only (the `tls` module, feature `rustls`): whether the peer's `close_notify` alert came
    /// before the connection ended (`Some(false)`: the peer closed or was reset
    /// without it, or sent something rustls could not read). `None` for a
    /// plain TCP teardown.
    pub peer_close_notify: Option<bool>,
    /// Peer-first only, when the peer's FIN came: why it got a passive close
    /// ([`Ending::PeerClosed`], the peer keeps TIME-WAIT) or a reset
    /// ([`Ending::ResetAfterPeerFin`], nobody does). `None` otherwise.
    pub peer_fin: Option<PeerFinChoice>,
}

impl Outcome {
    /// True when *we* ended the connection with an RST (or silently); false
    /// when the peer reset it. See [`Ending::we_reset`].
    pub fn we_reset(&self) -> bool {
        self.ending.we_reset()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.policy)?;
        if let (Some(local), Some(peer)) = (self.local, self.peer) {
            write!(f, " {local} -> {peer}")?;
        }
        write!(
            f,
            ": {}, TIME-WAIT at {}, goodbye {}, ACKed by the peer's kernel {} B, drained {} B, unacked ",
            self.ending, self.time_wait, self.goodbye, self.bytes_delivered, self.bytes_drained
        )?;
        match self.unacked_at_close {
            Some(n) => write!(f, "{n} B")?,
            None => write!(f, "unknown")?,
        }
        write!(
            f,
            ", deliver {} + grace {} = {}",
            Short(self.deliver),
            Short(self.grace),
            Short(self.elapsed)
        )?;
        if let Some(choice) = self.peer_fin {
            write!(f, ", {choice}")?;
        }
        if self.reaped {
            write!(f, ", reaped")?;
        }
        match self.peer_close_notify {
            Some(true) => write!(f, ", peer close_notify")?,
            Some(false) => write!(f, ", no peer close_notify")?,
            None => {}
        }
        Ok(())
    }
}
