//! The teardown state machine: every decision of every policy, with no I/O.
//!
//! The driver ([`crate::close`]) asks [`Machine::step`] what to do next, does
//! it (write, read, wait, probe the kernel, half-close), and feeds what happened
//! back through [`Machine::on_event`]. Time is passed in, so the unit tests at
//! the bottom drive the clock by hand, state by state.
//!
//! ```text
//!  Starting ──state──▶ Flushing ──goodbye written──▶ Draining ──peer FIN──▶ Done(close)
//!      │                  │  (peer-first)               │ grace passed
//!      │                  │                             ▼
//!      │                  │                    ConfirmingDelivery ──ACKed / bounded wait──▶ Done(reset)
//!      │                  └─(lingering, fin-then-reset)─▶ HalfClosing ──FIN sent──▶ Draining | AwaitingFinAck
//!      └─ not established / already reset ─▶ Done
//!
//!  any state but Done ──Hurry──▶ Hurrying ──peer FIN──▶ Done(close)
//!                                   │ one write attempt, one probe
//!                                   └──────────────────▶ Done(reset at deadline)
//! ```
//!
//! [`Event::Hurry`] is the hard deadline of a [`Closer`](crate::Closer) (a
//! server's drain): every deadline of the policy is cut short. From `Starting`
//! the kernel is asked for the state first, so a connection that is not
//! established still ends as `not-established`.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::outcome::{Delivery, Ending, Outcome, TimeWait};
use crate::policy::{Policy, MAX_WAIT};
use crate::TcpState;

/// The first pause between two kernel probes while waiting for an ACK; it doubles up to [`MAX_PROBE_GAP`].
const FIRST_PROBE_GAP: Duration = Duration::from_millis(1);
/// The longest pause between two kernel probes.
const MAX_PROBE_GAP: Duration = Duration::from_millis(50);

/// Where a teardown is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Asking the kernel what state the connection is in before anything else.
    Starting,
    /// Writing the goodbye (and, for reading policies, discarding what the peer sends).
    Flushing,
    /// Sending our FIN (`shutdown(SHUT_WR)`): lingering and fin-then-reset only.
    HalfClosing,
    /// Reading and discarding until the peer's FIN or a deadline.
    Draining,
    /// Fin-then-reset: waiting until our FIN is ACKed (`FIN-WAIT-2`).
    AwaitingFinAck,
    /// Peer-first, after the grace: waiting (bounded) until the goodbye is ACKed.
    ConfirmingDelivery,
    /// Hurried: one non-blocking write of what is left of the goodbye, one
    /// probe, then close (the peer's FIN is in) or reset. No waiting.
    Hurrying,
    /// Decided; the driver closes the socket.
    Done,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            State::Starting => "starting",
            State::Flushing => "flushing",
            State::HalfClosing => "half-closing",
            State::Draining => "draining",
            State::AwaitingFinAck => "awaiting-fin-ack",
            State::ConfirmingDelivery => "confirming-delivery",
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
    /// `TCP_REPAIR` + `close()`: nothing on the wire.
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
    /// Ask the kernel for the state only (one `TCP_INFO`), then report [`Event::StateIs`].
    /// The start needs no more: the queues matter only once something was written.
    CheckState,
    /// Ask the kernel for the state and queues, then report [`Event::Probed`].
    Probe,
    /// Stop and close the socket this way.
    Finish(Finish),
}

/// What the kernel said about the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    /// `TCP_INFO` state.
    pub(crate) state: TcpState,
    /// `SIOCOUTQ`: unACKed + unsent bytes, a queued FIN counting one.
    pub(crate) unacked: u32,
    /// `SIOCINQ`: received bytes not yet read.
    pub(crate) unread: u32,
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
    StateIs(TcpState),
    /// The kernel's answer to [`Step::Probe`].
    Probed(Probe),
    /// The kernel could not be asked (not a TCP socket, or an unsupported system).
    ProbeFailed,
    /// A deadline passed; nothing else happened.
    Timer,
    /// The closer's hard deadline: end now, by the shortest safe way.
    Hurry,
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
    /// The goodbye (or our FIN after it) was seen ACKed.
    confirmed: bool,
    /// How far the hurry got (one byte: a pending teardown should be small).
    hurry: Hurry,
    next_probe: Instant,
    probe_gap: Duration,
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
            confirmed: false,
            hurry: Hurry::No,
            next_probe: now,
            probe_gap: FIRST_PROBE_GAP,
            finish: None,
        }
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

    fn finish(&mut self, release: Release, path: Ending) {
        self.finish = Some(Finish {
            release,
            ending: path,
        });
        self.set_state(State::Done);
    }

    /// `started + d`, with `d` clamped so the deadline always exists.
    fn after_start(&self, d: Duration) -> Instant {
        self.started + d.min(MAX_WAIT)
    }

    fn flush_deadline(&self) -> Instant {
        match self.policy {
            Policy::Plain(p) => self.after_start(p.flush_timeout),
            Policy::Lingering(l) => self.after_start(l.max_time),
            Policy::FinThenReset(f) => self.after_start(f.fin_ack_timeout),
            Policy::PeerFirst(p) => self.after_start(p.grace),
            // One non-blocking attempt, no waiting.
            Policy::Abort | Policy::Silent => self.started,
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

    /// Returns a probe step when one is due, else the wait until `deadline` or the next probe.
    fn probe_or_wait(&self, now: Instant, deadline: Instant) -> Step {
        if self.next_probe <= now {
            Step::Probe
        } else {
            Step::Wait {
                write: false,
                read: !self.peer_fin,
                until: deadline.min(self.next_probe),
            }
        }
    }

    /// What to do next, at time `now`.
    pub(crate) fn step(&mut self, now: Instant) -> Step {
        loop {
            if let Some(finish) = self.finish {
                return Step::Finish(finish);
            }
            match self.state {
                State::Starting => return Step::CheckState,
                State::Flushing => {
                    if self.drain_limit_exceeded() {
                        self.finish(Release::Reset, Ending::ResetOnDrainLimit);
                    } else if self.written >= self.goodbye_len {
                        self.on_flushed();
                    } else if self.write_attempted && now >= self.flush_deadline() {
                        self.on_flush_timeout();
                    } else {
                        self.write_attempted = true;
                        return Step::Wait {
                            write: true,
                            read: self.reads_while_flushing(),
                            until: self.flush_deadline(),
                        };
                    }
                }
                State::HalfClosing => return Step::ShutdownWrite,
                State::Draining => match self.policy {
                    Policy::PeerFirst(p) => {
                        let grace_end = self.after_start(p.grace);
                        if self.peer_fin {
                            self.finish(Release::Close, Ending::PeerClosed);
                        } else if self.drain_limit_exceeded() {
                            self.finish(Release::Reset, Ending::ResetOnDrainLimit);
                        } else if now >= grace_end {
                            self.next_probe = now;
                            self.set_state(State::ConfirmingDelivery);
                        } else {
                            return Step::Wait {
                                write: false,
                                read: true,
                                until: grace_end,
                            };
                        }
                    }
                    Policy::Lingering(l) => {
                        let deadline = self
                            .after_start(l.max_time)
                            .min(self.last_read + l.idle_timeout.min(MAX_WAIT));
                        if self.peer_fin {
                            self.finish(Release::Close, Ending::LingeringClose);
                        } else if now >= deadline {
                            if l.reset_on_timeout {
                                self.finish(Release::Reset, Ending::ResetAfterLinger);
                            } else {
                                self.finish(Release::Close, Ending::LingeringTimeout);
                            }
                        } else {
                            return Step::Wait {
                                write: false,
                                read: true,
                                until: deadline,
                            };
                        }
                    }
                    _ => unreachable!("only peer-first and lingering drain"),
                },
                State::AwaitingFinAck => {
                    let Policy::FinThenReset(f) = self.policy else {
                        unreachable!("only fin-then-reset awaits its FIN's ACK")
                    };
                    let deadline = self.after_start(f.fin_ack_timeout);
                    if self.peer_fin {
                        // The peer's FIN won the race: TIME-WAIT is ours already (F2).
                        self.finish(Release::Close, Ending::PeerClosed);
                    } else if self.confirmed {
                        self.finish(Release::Reset, Ending::ResetAfterFinAck);
                    } else if self.next_probe > now && now >= deadline {
                        self.finish(Release::Reset, Ending::ResetFinUnacked);
                    } else {
                        return self.probe_or_wait(now, deadline);
                    }
                }
                State::ConfirmingDelivery => {
                    let Policy::PeerFirst(p) = self.policy else {
                        unreachable!("only peer-first confirms delivery")
                    };
                    let deadline = self.after_start(p.grace) + p.confirm_timeout.min(MAX_WAIT);
                    if self.peer_fin {
                        self.finish(Release::Close, Ending::PeerClosed);
                    } else if self.drain_limit_exceeded() {
                        self.finish(Release::Reset, Ending::ResetOnDrainLimit);
                    } else if self.confirmed {
                        self.finish(Release::Reset, Ending::ResetAfterGrace);
                    } else if self.next_probe > now && now >= deadline {
                        // At least one probe ran since the grace ended; time is up.
                        self.finish(Release::Reset, Ending::ResetAfterGrace);
                    } else {
                        return self.probe_or_wait(now, deadline);
                    }
                }
                State::Hurrying => {
                    if self.peer_fin {
                        // Passive close, as without the hurry: the peer keeps
                        // TIME-WAIT (or, after our FIN, we already do: F2).
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

    /// The whole goodbye is in the socket.
    fn on_flushed(&mut self) {
        match self.policy {
            Policy::Plain(_) => self.finish(Release::Close, Ending::PlainClose),
            Policy::Abort => self.finish(Release::Reset, Ending::Aborted),
            Policy::Silent => self.finish(Release::Silent, Ending::Silent),
            Policy::Lingering(_) | Policy::FinThenReset(_) => self.set_state(State::HalfClosing),
            Policy::PeerFirst(_) => self.set_state(State::Draining),
        }
    }

    /// The goodbye could not be written in time (the peer does not read).
    fn on_flush_timeout(&mut self) {
        match self.policy {
            Policy::Plain(_) => self.finish(Release::Close, Ending::PlainClose),
            Policy::Abort | Policy::Silent => self.finish(Release::Reset, Ending::Aborted),
            Policy::Lingering(l) if l.reset_on_timeout => {
                self.finish(Release::Reset, Ending::ResetAfterLinger)
            }
            Policy::Lingering(_) => self.finish(Release::Close, Ending::LingeringTimeout),
            Policy::FinThenReset(_) => self.finish(Release::Reset, Ending::ResetFinUnacked),
            Policy::PeerFirst(_) => self.finish(Release::Reset, Ending::ResetAfterGrace),
        }
    }

    /// Data bytes the peer has not ACKed, leaving out a queued FIN.
    fn data_unacked(&self, probe: &Probe) -> u32 {
        let fin_unacked = self.we_fin
            && matches!(
                probe.state,
                TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck
            );
        probe.unacked.saturating_sub(u32::from(fin_unacked))
    }

    /// Feeds what happened at `now`.
    pub(crate) fn on_event(&mut self, now: Instant, event: Event) {
        if self.state == State::Done {
            // After the decision, only a late FIN still matters: it tells who
            // keeps TIME-WAIT (the driver reads once more when the kernel says CLOSED).
            if let Event::Eof = event {
                self.peer_fin = true;
            }
            return;
        }
        match event {
            Event::Wrote(n) => self.written += n,
            Event::Read(n) => {
                self.drained += n as u64;
                self.last_read = now;
            }
            Event::Eof => self.peer_fin = true,
            Event::Failed(kind) => {
                let path = match kind {
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted => Ending::PeerReset,
                    _ => Ending::ConnectionLost,
                };
                self.finish(Release::Close, path);
            }
            Event::HalfClosed(state) => {
                self.we_fin = true;
                // Already in CLOSE-WAIT before our FIN: the peer's came first.
                // (After the shutdown the state is no witness: on loopback
                // LAST-ACK turns CLOSED at once, as does FIN-WAIT-2 on the peer's FIN.)
                self.peer_fin_first = self.peer_fin || state == Some(TcpState::CloseWait);
                self.next_probe = now;
                match self.policy {
                    Policy::FinThenReset(_) => self.set_state(State::AwaitingFinAck),
                    _ => self.set_state(State::Draining),
                }
            }
            Event::StateIs(state) => {
                if self.state == State::Starting {
                    self.on_start_state(state);
                }
            }
            Event::Probed(probe) => self.on_probe(now, probe),
            Event::ProbeFailed => {
                // Without the kernel's word, we cannot confirm anything; go on
                // blind and let the deadlines decide.
                if self.state == State::Starting {
                    self.established();
                } else if self.state == State::Hurrying {
                    self.hurry = Hurry::Probed;
                }
                self.schedule_probe(now);
            }
            Event::Timer => {}
            Event::Hurry => self.on_hurry(),
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

    fn schedule_probe(&mut self, now: Instant) {
        self.next_probe = now + self.probe_gap;
        self.probe_gap = (self.probe_gap * 2).min(MAX_PROBE_GAP);
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
            _ => self.established(),
        }
    }

    fn on_probe(&mut self, now: Instant, probe: Probe) {
        if self.state == State::Starting {
            return self.on_start_state(probe.state);
        }
        if probe.state == TcpState::Closed && !self.we_fin {
            // Without our FIN, only a reset (or a timeout) closes the connection.
            return self.finish(Release::Close, Ending::PeerReset);
        }
        if self.state == State::Hurrying {
            self.hurry = Hurry::Probed;
            if probe.state == TcpState::CloseWait && probe.unread == 0 {
                // The peer's FIN is in, not yet read, and nothing is before it:
                // closing now is the passive close (LAST-ACK), with no RST.
                self.peer_fin = true;
            }
        }
        let all_written = self.written >= self.goodbye_len;
        if all_written && probe.state != TcpState::Closed && self.data_unacked(&probe) == 0 {
            match self.policy {
                // Fin-then-reset wants the FIN ACKed too: FIN-WAIT-2.
                Policy::FinThenReset(_) => {
                    if probe.state == TcpState::FinWait2 {
                        self.confirmed = true;
                    }
                }
                _ => self.confirmed = true,
            }
        }
        self.schedule_probe(now);
    }

    /// The report, given how the socket was finally closed and the kernel's last word before that.
    pub(crate) fn outcome(
        &self,
        finish: Finish,
        last: Option<Probe>,
        elapsed: Duration,
    ) -> Outcome {
        let state_at_close = last.map(|p| p.state);
        let both_fins = self.we_fin && self.peer_fin;
        let time_wait = match finish.release {
            // Our FIN went first and the peer's came: the entry exists already,
            // a reset cannot undo it (F2).
            _ if both_fins && !self.peer_fin_first => TimeWait::Us,
            Release::Reset | Release::Silent => TimeWait::Nobody,
            Release::Close
                if matches!(finish.ending, Ending::PeerReset | Ending::ConnectionLost) =>
            {
                TimeWait::Nobody
            }
            // Closing with unread input sends RST whatever else (F4).
            Release::Close if last.is_some_and(|p| p.unread > 0) => TimeWait::Nobody,
            Release::Close if both_fins => TimeWait::Peer,
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
            last.filter(|p| p.state != TcpState::Closed)
                .map(|p| self.data_unacked(&p))
        };
        let goodbye = if self.goodbye_len == 0 {
            Delivery::NoneSent
        } else if self.confirmed
            || (self.written >= self.goodbye_len && unacked_at_close == Some(0))
        {
            Delivery::Confirmed
        } else {
            Delivery::Unconfirmed
        };
        Outcome {
            policy: self.policy,
            ending: finish.ending,
            time_wait,
            goodbye,
            goodbye_written: self.written,
            bytes_drained: self.drained,
            unacked_at_close,
            state_at_close,
            elapsed,
            local: None,
            peer: None,
            reaped: false,
            peer_close_notify: None,
        }
    }
}

#[cfg(test)]
mod tests;
