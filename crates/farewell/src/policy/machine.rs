//! The teardown state machine: every decision of every policy, with no I/O.
//!
//! The driver ([`crate::close`]) asks [`Machine::step`] what to do next, does
//! it (write, read, wait, probe the kernel, half-close, release), and feeds what
//! happened back through [`Machine::on_event`]. Time is passed in, so the unit
//! tests drive the clock by hand, state by state.
//!
//! ```text
//!  Starting ──state──▶ Flushing ──goodbye written──▶ Delivering ──all ACKed──▶ Grace ──grace passed──▶ Done(reset)
//!      │                  │      (peer-first)          │ stalled / cap          │
//!      │                  │                            ▼                        │
//!      │                  │                   Done(reset, delivery stalled)     │
//!      │                  │            peer FIN in Delivering or Grace ─────────┴──▶ Done(close | reset)
//!      │                  └─(lingering, fin-then-reset)─▶ HalfClosing ──FIN sent──▶ Draining | AwaitingFinAck
//!      └─ not established / already reset ─▶ Done
//!
//!  Starting ──peer's FIN read by the caller, no goodbye: SIOCOUTQ only──▶ Flushing ──▶ Delivering ──▶ Done
//!
//!  any state but Done ──Hurry──▶ Hurrying ──peer FIN──▶ Done(close)
//!                                   │ one write attempt, one probe
//!                                   └──────────────────▶ Done(reset at deadline)
//!
//!  Done(silent) ──RepairRefused──▶ Done(reset, silent refused)
//! ```
//!
//! # Delivery progress
//!
//! No policy gives up on a peer that is still taking bytes. Wherever the
//! machine waits with bytes of ours in flight (writing the goodbye, peer-first's
//! `Delivering`, lingering's `Draining`, `AwaitingFinAck`), it probes the
//! kernel now and then; a probe that shows `tcpi_bytes_acked` risen or
//! `SIOCOUTQ` fallen since the last is progress ([F12](crate::facts#f12)), as
//! is a successful write. The policy gives up only after its stall timeout
//! without progress, confirmed by a probe taken after that timeout, or at its
//! total cap.
//!
//! The probes are spaced by the connection's round-trip time (`tcpi_rtt`, read
//! by the same `TCP_INFO` call that reports the state): the first comes two
//! RTTs (at least [`MIN_PROBE_GAP`](progress::MIN_PROBE_GAP)) after the last
//! write, so a peer that closes at once is never probed; a probe that sees no
//! progress doubles the gap; one that sees progress aims at the moment the send
//! queue should be empty at the rate seen. Never more than
//! [`MAX_PROBE_GAP`](progress::MAX_PROBE_GAP) nor a quarter of the stall
//! timeout (a probe dates the progress it sees to its own time), and always
//! one at the stall deadline. The bookkeeping is in [`progress`].
//!
//! # The peer's FIN
//!
//! A FIN that comes before everything we wrote was ACKed (a probe after it
//! says so), or before the goodbye was written (the connection was already
//! `CLOSE-WAIT` at the start), is a half-close: the peer may still be reading,
//! so it gets the passive close and keeps TIME-WAIT. A FIN that comes after is
//! a goodbye: [`PeerTimeWait`] says whether the peer keeps TIME-WAIT (passive
//! close) or nobody does (reset, [F13](crate::facts#f13)); with `Auto` the
//! machine asks the driver how many endings the peer's address had in the last
//! minute ([`Step::Classify`]).
//!
//! [`Event::Hurry`] is the hard deadline of a [`Closer`](crate::Closer) (a
//! server's drain): every deadline of the policy is cut short. From `Starting`
//! the kernel is asked for the state first, so a connection that is not
//! established still ends as `not-established` (unless the caller read the
//! peer's FIN: that connection was established, see [`Step::CheckUnacked`]).

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::outcome::{Delivery, Ending, Outcome, PeerFinChoice, TimeWait};
use crate::policy::{GraceEnd, PeerTimeWait, Policy, MAX_WAIT};
use crate::sys::TcpInfo;
use crate::TcpState;

mod progress;

use progress::Progress;
#[cfg(test)]
use progress::{MAX_PROBE_GAP, MIN_PROBE_GAP};

/// Where a teardown is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Asking the kernel what state the connection is in before anything else.
    Starting,
    /// Writing the goodbye (and, for reading policies, discarding what the peer sends).
    Flushing,
    /// Sending our FIN (`shutdown(SHUT_WR)`): lingering and fin-then-reset only.
    HalfClosing,
    /// Peer-first: everything is written; waiting, while the peer makes
    /// progress, until its kernel ACKed all of it (`SIOCOUTQ` = 0).
    Delivering,
    /// Peer-first: everything was ACKed; waiting for the peer's FIN until the grace passes.
    Grace,
    /// Lingering: reading and discarding until the peer's FIN or a deadline.
    Draining,
    /// Fin-then-reset: waiting until our FIN is ACKed (`FIN-WAIT-2`).
    AwaitingFinAck,
    /// Hurried: one non-blocking write of what is left of the goodbye, one
    /// probe, then close (the peer's FIN is in) or reset. No waiting.
    Hurrying,
    /// Decided; the driver releases the socket.
    Done,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            State::Starting => "starting",
            State::Flushing => "flushing",
            State::HalfClosing => "half-closing",
            State::Delivering => "delivering",
            State::Grace => "grace",
            State::Draining => "draining",
            State::AwaitingFinAck => "awaiting-fin-ack",
            State::Hurrying => "hurrying",
            State::Done => "done",
        };
        f.pad(name)
    }
}

/// How far a hurried teardown got: one write attempt, then one probe, then the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hurry {
    /// Not hurried.
    No,
    /// [`Event::Hurry`] came.
    Asked,
    /// The one write attempt was made.
    Wrote,
    /// The one probe was answered.
    Probed,
}

/// How the driver finally lets go of the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// `close()`.
    Close,
    /// `SO_LINGER {on, 0}` + `close()`: RST.
    Reset,
    /// `TCP_LINGER2` = -1 + `close()`: our FIN, and the kernel's RST when it
    /// is ACKed (unread input first read and discarded, so the close is a FIN).
    FinResetOnAck,
    /// `TCP_REPAIR` + `close()`: nothing on the wire. If the kernel refuses
    /// (no `CAP_NET_ADMIN`), the driver reports [`Event::RepairRefused`] and
    /// asks again.
    Silent,
}

/// What the machine decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Finish {
    pub(crate) release: Release,
    pub(crate) ending: Ending,
}

/// What the driver should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait until the socket is writable (if `write`), readable (if `read`), or `until` passes.
    Wait {
        write: bool,
        read: bool,
        until: Instant,
    },
    /// One non-blocking write of what is left of the goodbye, no waiting: report
    /// [`Event::Wrote`], [`Event::Failed`], or [`Event::Timer`] if it would block.
    TryWrite,
    /// Send our FIN, then report [`Event::HalfClosed`].
    ShutdownWrite,
    /// Ask the kernel for `TCP_INFO` only, then report [`Event::StateIs`].
    /// The start needs no more: the queues matter only once something was written.
    CheckState,
    /// In place of [`Step::CheckState`] when the caller read the peer's FIN
    /// and there is no goodbye ([`Handoff::peer_fin_read`](crate::Handoff::peer_fin_read)):
    /// the connection is `CLOSE-WAIT` (a read returned end of file), and
    /// the one question left is whether what was written before is ACKed.
    /// Ask `SIOCOUTQ` only (half the cost of `TCP_INFO`), then report
    /// [`Event::UnackedAtStart`].
    CheckUnacked,
    /// Ask the kernel for `TCP_INFO` and the queues, then report [`Event::Probed`].
    Probe,
    /// Record one ending from the peer's address in the closer's table of
    /// recent endings and report [`Event::Classified`] with the count.
    Classify,
    /// Stop and release the socket this way.
    Finish(Finish),
}

/// What the kernel said about the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    /// `TCP_INFO`: state, round-trip time, bytes ACKed.
    pub(crate) info: TcpInfo,
    /// `SIOCOUTQ`: unACKed + unsent bytes, a queued FIN counting one.
    pub(crate) unacked: u32,
    /// `SIOCINQ`: received bytes not yet read.
    pub(crate) unread: u32,
}

impl Probe {
    pub(crate) fn state(&self) -> TcpState {
        self.info.state
    }
}

/// What happened since the last step.
#[derive(Debug)]
pub(crate) enum Event {
    /// `n` more goodbye bytes were written.
    Wrote(usize),
    /// `n` bytes were read and discarded.
    Read(usize),
    /// The peer's FIN: a read returned 0.
    Eof,
    /// A read, write or shutdown failed.
    Failed(io::ErrorKind),
    /// Our FIN is queued; carries the state the kernel reported just *before*
    /// the shutdown, if it could (`CLOSE-WAIT` then means the peer's FIN came first).
    HalfClosed(Option<TcpState>),
    /// The kernel's answer to [`Step::CheckState`].
    StateIs(TcpInfo),
    /// With [`Event::StateIs`], when the same `TCP_INFO` told that nothing
    /// written is in flight or unsent (`tcpi_unacked` = 0 and
    /// `tcpi_notsent_bytes` = 0): what the application wrote before the
    /// teardown is delivered.
    NothingInFlight,
    /// The kernel's answer to [`Step::CheckUnacked`]: `SIOCOUTQ`.
    UnackedAtStart(u32),
    /// The kernel's answer to [`Step::Probe`].
    Probed(Probe),
    /// The kernel could not be asked (not a TCP socket, or an unsupported system).
    ProbeFailed,
    /// A deadline passed; nothing else happened.
    Timer,
    /// The closer's hard deadline: end now, by the shortest safe way.
    Hurry,
    /// The answer to [`Step::Classify`]: [`PeerFinChoice::Light`] or
    /// [`PeerFinChoice::Heavy`], by the closer's table and threshold.
    Classified(PeerFinChoice),
    /// The kernel refused the silent release ([`Release::Silent`]: `TCP_REPAIR`
    /// needs `CAP_NET_ADMIN`); the socket is still open.
    RepairRefused,
}

/// One teardown's decisions. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Machine {
    policy: Policy,
    state: State,
    started: Instant,
    goodbye_len: usize,
    written: usize,
    /// At least one write of the goodbye was attempted (so even a zero
    /// deadline gives the goodbye one chance).
    write_attempted: bool,
    drained: u64,
    last_read: Instant,
    /// The peer's FIN was read (or, hurrying, the kernel reported `CLOSE-WAIT`
    /// with nothing unread before the FIN).
    peer_fin: bool,
    /// Our FIN was queued.
    we_fin: bool,
    /// The peer's FIN had already arrived when we queued ours (it keeps TIME-WAIT).
    peer_fin_first: bool,
    /// The peer's FIN came before everything we wrote was ACKed, or before
    /// the goodbye was written: a half-close, answered passively.
    fin_early: bool,
    /// A probe was taken after the peer's FIN was read.
    fin_probed: bool,
    /// Why the peer's FIN got the ending it got (with `Auto`, set by
    /// [`Event::Classified`] before the machine decides).
    peer_fin_choice: Option<PeerFinChoice>,
    /// How far the hurry got (one byte: a pending teardown should be small).
    hurry: Hurry,
    progress: Progress,
    finish: Option<Finish>,
}

impl Machine {
    /// A teardown of a connection whose goodbye is `goodbye_len` bytes, starting at `now`.
    pub(crate) fn new(policy: Policy, goodbye_len: usize, now: Instant) -> Machine {
        Machine {
            policy,
            state: State::Starting,
            started: now,
            // Silent sends nothing, goodbye included.
            goodbye_len: if policy == Policy::Silent {
                0
            } else {
                goodbye_len
            },
            written: 0,
            write_attempted: false,
            drained: 0,
            last_read: now,
            peer_fin: false,
            we_fin: false,
            peer_fin_first: false,
            fin_early: false,
            fin_probed: false,
            peer_fin_choice: None,
            hurry: Hurry::No,
            progress: Progress::new(now),
            finish: None,
        }
    }

    /// When the teardown started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// The peer's FIN was read: nothing unread can be left in the socket.
    pub(crate) fn saw_eof(&self) -> bool {
        self.peer_fin
    }

    /// [`Event::Hurry`] came: the driver need not watch for it any more.
    pub(crate) fn hurried(&self) -> bool {
        self.hurry != Hurry::No
    }

    /// How many goodbye bytes have been written so far.
    pub(crate) fn written(&self) -> usize {
        self.written
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// The one place the state changes.
    fn set_state(&mut self, new: State) {
        tracing::trace!(policy = %self.policy, old = %self.state, new = %new, "teardown state");
        self.state = new;
    }

    fn finish(&mut self, release: Release, ending: Ending) {
        self.finish = Some(Finish { release, ending });
        self.set_state(State::Done);
    }

    /// `started + d`, with `d` clamped so the deadline always exists.
    fn after_start(&self, d: Duration) -> Instant {
        self.started + d.min(MAX_WAIT)
    }

    /// The policy's hard cap on delivering ([`Policy::delivery_timeout`]):
    /// past it, it gives up even on a peer still taking bytes. Abort and
    /// silent have none: one non-blocking attempt, no waiting.
    fn delivery_cap(&self) -> Instant {
        self.after_start(self.policy.delivery_timeout().unwrap_or(Duration::ZERO))
    }

    /// How long delivery may go without progress ([`Policy::stall_timeout`];
    /// lingering's also counts reads as progress).
    fn stall_timeout(&self) -> Duration {
        self.policy
            .stall_timeout()
            .unwrap_or(Duration::ZERO)
            .min(MAX_WAIT)
    }

    /// Delivery has stalled: the stall deadline passed and a probe taken
    /// since found no progress.
    fn stalled(&self, now: Instant) -> bool {
        self.progress.stalled(now, self.stall_timeout())
    }

    /// Whether the machine must look at the kernel before waiting on.
    fn probe_due(&self, now: Instant) -> bool {
        self.progress.probe_due(now, self.stall_timeout())
    }

    /// The wait while delivering: until the next probe, the stall deadline or the cap.
    fn delivery_wait(&self, write: bool, read: bool) -> Step {
        Step::Wait {
            write,
            read,
            until: self
                .progress
                .next_probe()
                .min(self.progress.stall_deadline(self.stall_timeout()))
                .min(self.delivery_cap()),
        }
    }

    fn drain_limit_exceeded(&self) -> bool {
        matches!(self.policy, Policy::PeerFirst(p) if self.drained > p.drain_limit)
    }

    /// The path of a close after the peer's FIN was read: lingering names its own.
    fn closed_after_peer_fin(&self) -> Ending {
        match self.policy {
            Policy::Lingering(_) => Ending::LingeringClose,
            _ => Ending::PeerClosed,
        }
    }

    /// Policies that read and discard while they write the goodbye.
    fn reads_while_flushing(&self) -> bool {
        !self.peer_fin
            && matches!(
                self.policy,
                Policy::PeerFirst(_) | Policy::Lingering(_) | Policy::FinThenReset(_)
            )
    }

    /// Everything written (fin-then-reset: and our FIN) was seen ACKed.
    fn delivered(&self) -> bool {
        self.progress.delivered_at().is_some()
    }

    /// Starts watching delivery at `now`: the first probe comes one RTT-based gap later.
    fn watch_from(&mut self, now: Instant) {
        self.progress.watch_from(now, self.stall_timeout());
    }

    /// What to do next, at time `now`.
    pub(crate) fn step(&mut self, now: Instant) -> Step {
        loop {
            if let Some(finish) = self.finish {
                return Step::Finish(finish);
            }
            match self.state {
                // The peer's FIN read before the hand-over, nothing to write:
                // no state to learn (a reset since the read would only
                // change the ending's name; nothing on the wire differs).
                State::Starting if self.peer_fin && self.goodbye_len == 0 => {
                    return Step::CheckUnacked
                }
                State::Starting => return Step::CheckState,
                State::Flushing => {
                    if self.drain_limit_exceeded() {
                        self.finish(Release::Reset, Ending::ResetOnDrainLimit);
                    } else if self.written >= self.goodbye_len {
                        self.on_flushed(now);
                    } else if !self.write_attempted {
                        self.write_attempted = true;
                        self.watch_from(now);
                        return self.delivery_wait(true, self.reads_while_flushing());
                    } else if now >= self.delivery_cap() {
                        self.on_flush_given_up(false);
                    } else if self.stalled(now) {
                        self.on_flush_given_up(true);
                    } else if self.probe_due(now) {
                        return Step::Probe;
                    } else {
                        return self.delivery_wait(true, self.reads_while_flushing());
                    }
                }
                State::HalfClosing => return Step::ShutdownWrite,
                State::Delivering => {
                    if self.peer_fin {
                        if let Some(step) = self.on_peer_fin() {
                            return step;
                        }
                    } else if self.drain_limit_exceeded() {
                        self.finish(Release::Reset, Ending::ResetOnDrainLimit);
                    } else if self.delivered() {
                        self.set_state(State::Grace);
                    } else if now >= self.delivery_cap() {
                        self.finish(Release::Reset, Ending::ResetDeliveryTimeout);
                    } else if self.stalled(now) {
                        self.finish(Release::Reset, Ending::ResetDeliveryStalled);
                    } else if self.probe_due(now) {
                        return Step::Probe;
                    } else {
                        return self.delivery_wait(false, true);
                    }
                }
                State::Grace => {
                    let Policy::PeerFirst(p) = self.policy else {
                        unreachable!("only peer-first has a grace")
                    };
                    let delivered_at = self.progress.delivered_at().unwrap_or(now);
                    let grace_end = delivered_at + p.grace.min(MAX_WAIT);
                    if self.peer_fin {
                        if let Some(step) = self.on_peer_fin() {
                            return step;
                        }
                    } else if self.drain_limit_exceeded() {
                        self.finish(Release::Reset, Ending::ResetOnDrainLimit);
                    } else if now >= grace_end {
                        match p.grace_end {
                            GraceEnd::Fin => {
                                self.finish(Release::FinResetOnAck, Ending::FinAfterGrace)
                            }
                            _ => self.finish(Release::Reset, Ending::ResetAfterGrace),
                        }
                    } else {
                        return Step::Wait {
                            write: false,
                            read: true,
                            until: grace_end,
                        };
                    }
                }
                State::Draining => {
                    let Policy::Lingering(l) = self.policy else {
                        unreachable!("only lingering drains after its FIN")
                    };
                    // Stalled: no read and no delivery progress for the stall timeout.
                    let idle_end = self.last_read.max(self.progress.last()) + self.stall_timeout();
                    let cap = self.delivery_cap();
                    if self.peer_fin {
                        self.finish(Release::Close, Ending::LingeringClose);
                    } else if now >= cap
                        || (now >= idle_end
                            && (self.delivered() || self.progress.probed_since(idle_end)))
                    {
                        if l.reset_on_timeout {
                            self.finish(Release::Reset, Ending::ResetAfterLinger);
                        } else {
                            self.finish(Release::Close, Ending::LingeringTimeout);
                        }
                    } else if !self.delivered()
                        && (self.progress.next_probe() <= now || now >= idle_end)
                    {
                        // Our bytes are still in flight: is the peer taking them?
                        return Step::Probe;
                    } else {
                        let mut until = idle_end.min(cap);
                        if !self.delivered() {
                            until = until.min(self.progress.next_probe());
                        }
                        return Step::Wait {
                            write: false,
                            read: true,
                            until,
                        };
                    }
                }
                State::AwaitingFinAck => {
                    if self.peer_fin {
                        // The peer's FIN won the race: TIME-WAIT is ours already ([F2](crate::facts#f2)).
                        self.finish(Release::Close, Ending::PeerClosed);
                    } else if self.delivered() {
                        self.finish(Release::Reset, Ending::ResetAfterFinAck);
                    } else if now >= self.delivery_cap() {
                        self.finish(Release::Reset, Ending::ResetFinUnacked);
                    } else if self.stalled(now) {
                        self.finish(Release::Reset, Ending::ResetDeliveryStalled);
                    } else if self.probe_due(now) {
                        return Step::Probe;
                    } else {
                        return self.delivery_wait(false, !self.peer_fin);
                    }
                }
                State::Hurrying => {
                    if self.peer_fin {
                        // Passive close, as without the hurry: the peer keeps
                        // TIME-WAIT (or, after our FIN, we already do: [F2](crate::facts#f2)).
                        self.finish(Release::Close, self.closed_after_peer_fin());
                    } else if self.hurry == Hurry::Asked && self.written < self.goodbye_len {
                        self.hurry = Hurry::Wrote;
                        return Step::TryWrite;
                    } else if self.hurry != Hurry::Probed {
                        return Step::Probe;
                    } else {
                        self.finish(Release::Reset, Ending::ResetAtDeadline);
                    }
                }
                State::Done => unreachable!("a finished machine always has its finish"),
            }
        }
    }

    /// Peer-first saw the peer's FIN while delivering or in its grace: a
    /// passive close or a reset (see the [module docs](self#the-peers-fin)).
    /// Returns the step to take first, if the machine must ask before it decides.
    fn on_peer_fin(&mut self) -> Option<Step> {
        let Policy::PeerFirst(p) = self.policy else {
            unreachable!("only peer-first delivers and has a grace")
        };
        if !self.fin_early && !self.delivered() && p.peer_time_wait != PeerTimeWait::Keep {
            if !self.fin_probed {
                // Was everything ACKed when the FIN came? (The FIN's own
                // segment ACKs all the peer received before it.)
                return Some(Step::Probe);
            }
            // Bytes of ours were still in flight: the peer half-closed.
            self.fin_early = true;
        }
        let choice = if self.fin_early {
            PeerFinChoice::HalfClose
        } else {
            match p.peer_time_wait {
                PeerTimeWait::Keep => PeerFinChoice::Kept,
                PeerTimeWait::Spare => PeerFinChoice::Spared,
                PeerTimeWait::Auto => match self.peer_fin_choice {
                    None => return Some(Step::Classify),
                    Some(choice) => choice,
                },
            }
        };
        self.peer_fin_choice = Some(choice);
        match choice {
            PeerFinChoice::Spared | PeerFinChoice::Heavy { .. } => {
                // Everything is ACKed and the peer closed: the reset frees
                // our CLOSE-WAIT and its FIN-WAIT-2 ([F13](crate::facts#f13)).
                self.finish(Release::Reset, Ending::ResetAfterPeerFin)
            }
            // The passive close: the kernel still delivers what is queued.
            _ => self.finish(Release::Close, Ending::PeerClosed),
        }
        None
    }

    /// The whole goodbye is in the socket.
    fn on_flushed(&mut self, now: Instant) {
        match self.policy {
            Policy::Plain(_) => self.finish(Release::Close, Ending::PlainClose),
            Policy::Abort => self.finish(Release::Reset, Ending::Aborted),
            Policy::Silent => self.finish(Release::Silent, Ending::Silent),
            Policy::Lingering(_) | Policy::FinThenReset(_) => self.set_state(State::HalfClosing),
            Policy::PeerFirst(_) => {
                // Delivered already (nothing was in flight at the start):
                // nothing to watch, no probe to schedule.
                if !self.delivered() {
                    self.watch_from(now);
                }
                self.set_state(State::Delivering);
            }
        }
    }

    /// Writing the goodbye stalled (`stalled`) or hit the policy's cap.
    fn on_flush_given_up(&mut self, stalled: bool) {
        match self.policy {
            // What was written is delivered by the kernel after close().
            Policy::Plain(_) => self.finish(Release::Close, Ending::PlainClose),
            Policy::Abort | Policy::Silent => self.finish(Release::Reset, Ending::Aborted),
            Policy::Lingering(l) if l.reset_on_timeout => {
                self.finish(Release::Reset, Ending::ResetAfterLinger)
            }
            Policy::Lingering(_) => self.finish(Release::Close, Ending::LingeringTimeout),
            Policy::FinThenReset(_) if stalled => {
                self.finish(Release::Reset, Ending::ResetDeliveryStalled)
            }
            Policy::FinThenReset(_) => self.finish(Release::Reset, Ending::ResetFinUnacked),
            Policy::PeerFirst(_) if stalled => {
                self.finish(Release::Reset, Ending::ResetDeliveryStalled)
            }
            Policy::PeerFirst(_) => self.finish(Release::Reset, Ending::ResetDeliveryTimeout),
        }
    }

    /// Data bytes the peer has not ACKed, leaving out a queued FIN.
    fn data_unacked(&self, probe: &Probe) -> u32 {
        let fin_unacked = self.we_fin
            && matches!(
                probe.state(),
                TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck
            );
        probe.unacked.saturating_sub(u32::from(fin_unacked))
    }

    /// Feeds what happened at `now`.
    pub(crate) fn on_event(&mut self, now: Instant, event: Event) {
        if self.state == State::Done {
            match event {
                // After the decision, only a late FIN still matters: it tells who
                // keeps TIME-WAIT (the driver reads once more when the kernel says CLOSED).
                Event::Eof => self.peer_fin = true,
                // The silent close needs CAP_NET_ADMIN: reset instead, and say so.
                Event::RepairRefused
                    if self.finish.is_some_and(|f| f.release == Release::Silent) =>
                {
                    self.finish(Release::Reset, Ending::SilentRefusedReset);
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Wrote(n) => {
                self.written += n;
                if n > 0 {
                    self.progress.progressed(now);
                }
            }
            Event::Read(n) => {
                self.drained += n as u64;
                self.last_read = now;
            }
            Event::Eof => {
                self.peer_fin = true;
                if self.written < self.goodbye_len {
                    // The peer closed before it could have read our goodbye.
                    self.fin_early = true;
                }
            }
            Event::Classified(choice) => self.peer_fin_choice = Some(choice),
            Event::NothingInFlight => {
                // Peer-first with no goodbye to write: delivery is over before
                // it began, so the grace starts now and the peer's FIN needs
                // no probe. (Other policies judge their own FIN or flush.)
                if self.goodbye_len == 0 && matches!(self.policy, Policy::PeerFirst(_)) {
                    self.progress.delivered_before(now);
                }
            }
            Event::UnackedAtStart(unacked) => {
                if self.state == State::Starting {
                    self.established();
                }
                if unacked == 0 {
                    self.on_event(now, Event::NothingInFlight);
                }
            }
            Event::Failed(kind) => {
                let ending = match kind {
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted => Ending::PeerReset,
                    _ => Ending::ConnectionLost,
                };
                self.finish(Release::Close, ending);
            }
            Event::HalfClosed(state) => {
                self.we_fin = true;
                // Already in CLOSE-WAIT before our FIN: the peer's came first.
                // (After the shutdown the state is no witness: on loopback
                // LAST-ACK turns CLOSED at once, as does FIN-WAIT-2 on the peer's FIN.)
                self.peer_fin_first = self.peer_fin || state == Some(TcpState::CloseWait);
                self.progress.progressed(now);
                self.watch_from(now);
                match self.policy {
                    Policy::FinThenReset(_) => self.set_state(State::AwaitingFinAck),
                    _ => self.set_state(State::Draining),
                }
            }
            Event::StateIs(info) => {
                self.progress.note_info(&info);
                if self.state == State::Starting {
                    self.on_start_state(info.state);
                }
            }
            Event::Probed(probe) => self.on_probe(now, probe),
            Event::ProbeFailed => {
                // Without the kernel's word, we cannot see progress or confirm
                // anything; go on blind and let the deadlines decide.
                self.progress.probe_failed(now, self.stall_timeout());
                if self.state == State::Starting {
                    self.established();
                } else if self.state == State::Hurrying {
                    self.hurry = Hurry::Probed;
                }
            }
            Event::Timer => {}
            Event::Hurry => self.on_hurry(),
            // Only a silent release can be refused, and that is decided (Done) first.
            Event::RepairRefused => {}
        }
    }

    /// The closer's hard deadline. `Starting` first learns the state (so a
    /// connection that is not established ends as such); every other state
    /// moves to `Hurrying`.
    fn on_hurry(&mut self) {
        if self.hurry == Hurry::No {
            self.hurry = Hurry::Asked;
        }
        if self.state != State::Starting {
            self.set_state(State::Hurrying);
        }
    }

    /// Where a teardown goes once it knows the connection is established.
    fn established(&mut self) {
        if self.hurried() {
            self.set_state(State::Hurrying);
        } else {
            self.set_state(State::Flushing);
        }
    }

    /// Decides from the state at the start whether there is a connection to say goodbye on.
    fn on_start_state(&mut self, state: TcpState) {
        match state {
            // A reset connection reports CLOSED; there is nothing left to say goodbye on.
            TcpState::Closed => self.finish(Release::Close, Ending::PeerReset),
            TcpState::SynSent
            | TcpState::SynReceived
            | TcpState::NewSynReceived
            | TcpState::Listen => self.finish(Release::Reset, Ending::NotEstablished),
            TcpState::CloseWait if self.goodbye_len > 0 => {
                // The peer's FIN came before our goodbye: a half-close.
                self.fin_early = true;
                self.established();
            }
            _ => self.established(),
        }
    }

    fn on_probe(&mut self, now: Instant, probe: Probe) {
        if self.state == State::Starting {
            self.progress.note_info(&probe.info);
            return self.on_start_state(probe.state());
        }
        if probe.state() == TcpState::Closed && !self.we_fin {
            // Without our FIN, only a reset (or a timeout) closes the connection.
            return self.finish(Release::Close, Ending::PeerReset);
        }
        if self.peer_fin {
            self.fin_probed = true;
        }
        if self.state == State::Hurrying {
            self.hurry = Hurry::Probed;
            if probe.state() == TcpState::CloseWait && probe.unread == 0 {
                // The peer's FIN is in, not yet read, and nothing is before it:
                // closing now is the passive close (LAST-ACK), with no RST.
                self.peer_fin = true;
            }
        }
        let alive = probe.state() != TcpState::Closed;
        let done = self.written >= self.goodbye_len
            && alive
            && self.data_unacked(&probe) == 0
            && match self.policy {
                // Fin-then-reset wants the FIN ACKed too: FIN-WAIT-2.
                Policy::FinThenReset(_) => probe.state() == TcpState::FinWait2,
                _ => true,
            };
        self.progress.look(now, &probe, done, self.stall_timeout());
    }

    /// The report, given how the socket was finally closed and the kernel's last word before that.
    pub(crate) fn outcome(
        &self,
        finish: Finish,
        last: Option<Probe>,
        elapsed: Duration,
    ) -> Outcome {
        let state_at_close = last.map(|p| p.state());
        let both_fins = self.we_fin && self.peer_fin;
        let time_wait = match finish.release {
            // Our FIN went first and the peer's came: the entry exists already,
            // a reset cannot undo it ([F2](crate::facts#f2)).
            _ if both_fins && !self.peer_fin_first => TimeWait::Us,
            Release::Reset | Release::Silent | Release::FinResetOnAck => TimeWait::Nobody,
            Release::Close
                if matches!(finish.ending, Ending::PeerReset | Ending::ConnectionLost) =>
            {
                TimeWait::Nobody
            }
            // Closing with unread input sends RST whatever else ([F4](crate::facts#f4)).
            Release::Close if last.is_some_and(|p| p.unread > 0) => TimeWait::Nobody,
            Release::Close if both_fins => TimeWait::Peer,
            // The peer's FIN was read, so nothing was left unread: our close
            // answers it with our FIN, and the peer keeps TIME-WAIT. (When
            // the kernel was asked, its state at close says the same.)
            Release::Close if self.peer_fin && last.is_none() => TimeWait::Peer,
            Release::Close => match state_at_close {
                Some(TcpState::CloseWait | TcpState::LastAck) => TimeWait::Peer,
                Some(TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2) => {
                    TimeWait::UsIfPeerCloses
                }
                Some(TcpState::Closing | TcpState::TimeWait) => TimeWait::Us,
                _ => TimeWait::Nobody,
            },
        };
        // CLOSED after both FINs were exchanged: the kernel only gets there
        // (LAST-ACK -> CLOSED, or FIN-WAIT-2 -> TIME-WAIT) once our FIN, and so
        // all data before it, was ACKed.
        let closed_cleanly = both_fins && state_at_close == Some(TcpState::Closed);
        let unacked_at_close = if closed_cleanly {
            Some(0)
        } else {
            last.filter(|p| p.state() != TcpState::Closed)
                .map(|p| self.data_unacked(&p))
        };
        let goodbye = if self.goodbye_len == 0 {
            Delivery::NoneSent
        } else if self.delivered()
            || (self.written >= self.goodbye_len && unacked_at_close == Some(0))
        {
            Delivery::Confirmed
        } else {
            Delivery::Unconfirmed
        };
        // Bytes ACKed during the teardown; our ACKed FIN counts one in the
        // kernel's counter, not here.
        let fin_acked = self.we_fin
            && (closed_cleanly
                || matches!(
                    state_at_close,
                    Some(TcpState::FinWait2 | TcpState::TimeWait)
                ));
        let bytes_delivered = self.progress.bytes_delivered(last.as_ref(), fin_acked);
        let deliver = self
            .progress
            .delivered_at()
            .map_or(elapsed, |at| at.saturating_duration_since(self.started))
            .min(elapsed);
        Outcome {
            policy: self.policy,
            ending: finish.ending,
            time_wait,
            goodbye,
            goodbye_written: self.written,
            bytes_delivered,
            bytes_drained: self.drained,
            unacked_at_close,
            state_at_close,
            deliver,
            grace: elapsed - deliver,
            elapsed,
            local: None,
            peer: None,
            reaped: false,
            peer_close_notify: None,
            peer_fin: self.peer_fin_choice,
        }
    }
}

#[cfg(test)]
mod tests;
