//! Unit tests of the decision logic, per state, with a hand-driven clock.
//!
//! These prove the decisions given what the kernel reports; the integration
//! tests in `tests/` prove the whole on real sockets against the kernel's own
//! socket table.

use super::*;
use crate::policy::{FinThenReset, Lingering, PeerFirst, Plain};

const GOODBYE: usize = 8;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn probe(state: TcpState, unacked: u32) -> Event {
    Event::Probed(Probe {
        state,
        unacked,
        unread: 0,
    })
}

fn peer_first() -> Policy {
    Policy::PeerFirst(PeerFirst {
        grace: ms(100),
        confirm_timeout: ms(50),
        drain_limit: 1000,
    })
}

fn lingering(reset_on_timeout: bool) -> Policy {
    Policy::Lingering(Lingering {
        idle_timeout: ms(30),
        max_time: ms(100),
        reset_on_timeout,
    })
}

/// A machine past its start probe (the connection is ESTABLISHED), in `Flushing`.
fn flushing(policy: Policy, t0: Instant) -> Machine {
    let mut m = Machine::new(policy, GOODBYE, t0);
    assert_eq!(m.step(t0), Step::CheckState);
    m.on_event(t0, Event::StateIs(TcpState::Established));
    assert_eq!(m.state(), State::Flushing);
    m
}

/// A machine whose goodbye is written, in the state that follows `Flushing`.
fn flushed(policy: Policy, t0: Instant) -> Machine {
    let mut m = flushing(policy, t0);
    assert!(matches!(m.step(t0), Step::Wait { write: true, .. }));
    m.on_event(t0, Event::Wrote(GOODBYE));
    m
}

fn finish_of(step: Step) -> Finish {
    match step {
        Step::Finish(f) => f,
        other => panic!("expected a finish, got {other:?}"),
    }
}

// ---- Starting -------------------------------------------------------------

#[test]
fn test_starting_closed_connection_is_a_peer_reset() {
    let t0 = Instant::now();
    let mut m = Machine::new(peer_first(), GOODBYE, t0);
    assert_eq!(m.step(t0), Step::CheckState);
    m.on_event(t0, Event::StateIs(TcpState::Closed));
    let f = finish_of(m.step(t0));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerReset));
    let outcome = m.outcome(f, None, ms(0));
    assert_eq!(outcome.time_wait, TimeWait::Nobody);
    assert_eq!(outcome.goodbye, Delivery::Unconfirmed);
}

#[test]
fn test_starting_connecting_socket_is_reset_as_not_established() {
    let t0 = Instant::now();
    let mut m = Machine::new(peer_first(), GOODBYE, t0);
    m.on_event(t0, Event::StateIs(TcpState::SynSent));
    let f = finish_of(m.step(t0));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::NotEstablished)
    );
}

#[test]
fn test_starting_probe_failure_goes_on_blind() {
    let t0 = Instant::now();
    let mut m = Machine::new(peer_first(), GOODBYE, t0);
    m.on_event(t0, Event::ProbeFailed);
    assert_eq!(m.state(), State::Flushing);
}

// ---- Flushing ---------------------------------------------------------------

#[test]
fn test_flushing_peer_first_reads_while_writing_and_never_half_closes() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first(), t0);
    assert_eq!(
        m.step(t0),
        Step::Wait {
            write: true,
            read: true,
            until: t0 + ms(100)
        }
    );
    m.on_event(t0, Event::Wrote(3));
    m.on_event(t0, Event::Wrote(5));
    assert!(matches!(
        m.step(t0),
        Step::Wait {
            write: false,
            read: true,
            ..
        }
    ));
    assert_eq!(m.state(), State::Draining);
}

#[test]
fn test_flushing_peer_first_goodbye_stuck_past_grace_resets_unconfirmed() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first(), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::Wrote(2));
    let f = finish_of(m.step(t0 + ms(100)));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAfterGrace)
    );
    let o = m.outcome(
        f,
        Some(Probe {
            state: TcpState::Established,
            unacked: 2000,
            unread: 0,
        }),
        ms(100),
    );
    assert_eq!(o.goodbye, Delivery::Unconfirmed);
    assert_eq!(o.goodbye_written, 2);
    assert_eq!(o.time_wait, TimeWait::Nobody);
}

#[test]
fn test_flushing_abort_gets_exactly_one_write_attempt() {
    let t0 = Instant::now();
    let mut m = flushing(Policy::Abort, t0);
    assert_eq!(
        m.step(t0),
        Step::Wait {
            write: true,
            read: false,
            until: t0
        }
    );
    m.on_event(t0, Event::Timer);
    let f = finish_of(m.step(t0));
    assert_eq!((f.release, f.ending), (Release::Reset, Ending::Aborted));
}

#[test]
fn test_flushing_silent_sends_nothing() {
    let t0 = Instant::now();
    let mut m = flushing(Policy::Silent, t0);
    let f = finish_of(m.step(t0));
    assert_eq!((f.release, f.ending), (Release::Silent, Ending::Silent));
    assert_eq!(m.outcome(f, None, ms(0)).goodbye, Delivery::NoneSent);
}

#[test]
fn test_flushing_plain_closes_after_the_goodbye_and_we_keep_time_wait() {
    let t0 = Instant::now();
    let mut m = flushed(Policy::Plain(Plain::default()), t0);
    let f = finish_of(m.step(t0));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PlainClose));
    let established = Probe {
        state: TcpState::Established,
        unacked: 0,
        unread: 0,
    };
    assert_eq!(
        m.outcome(f, Some(established), ms(0)).time_wait,
        TimeWait::UsIfPeerCloses
    );
    // Unread input turns the close into a reset (F4).
    let unread = Probe {
        unread: 10,
        ..established
    };
    assert_eq!(
        m.outcome(f, Some(unread), ms(0)).time_wait,
        TimeWait::Nobody
    );
}

#[test]
fn test_flushing_peer_reset_ends_the_teardown() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first(), t0);
    m.on_event(t0, Event::Failed(io::ErrorKind::ConnectionReset));
    let f = finish_of(m.step(t0));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerReset));
    m.on_event(t0, Event::Failed(io::ErrorKind::TimedOut));
    let f2 = finish_of(m.step(t0));
    assert_eq!(f2.ending, Ending::PeerReset, "the first release stands");
}

#[test]
fn test_flushing_zero_grace_still_terminates_after_one_attempt() {
    let t0 = Instant::now();
    let policy = Policy::PeerFirst(PeerFirst {
        grace: Duration::ZERO,
        confirm_timeout: Duration::ZERO,
        drain_limit: 0,
    });
    let mut m = flushing(policy, t0);
    assert!(matches!(m.step(t0), Step::Wait { write: true, .. }));
    m.on_event(t0, Event::Wrote(GOODBYE));
    assert_eq!(m.step(t0), Step::Probe);
    m.on_event(t0, probe(TcpState::Established, GOODBYE as u32));
    let f = finish_of(m.step(t0));
    assert_eq!(f.ending, Ending::ResetAfterGrace);
}

// ---- Draining (peer-first) ----------------------------------------------------

#[test]
fn test_draining_peer_fin_closes_passively_and_peer_keeps_time_wait() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    m.on_event(t0 + ms(5), Event::Read(100));
    m.on_event(t0 + ms(6), Event::Eof);
    let f = finish_of(m.step(t0 + ms(6)));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
    let o = m.outcome(
        f,
        Some(Probe {
            state: TcpState::CloseWait,
            unacked: 0,
            unread: 0,
        }),
        ms(6),
    );
    assert_eq!(o.time_wait, TimeWait::Peer);
    assert_eq!(o.goodbye, Delivery::Confirmed);
    assert_eq!(o.bytes_drained, 100);
}

#[test]
fn test_draining_flood_past_the_limit_resets() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    m.on_event(t0, Event::Read(600));
    assert!(matches!(m.step(t0), Step::Wait { .. }));
    m.on_event(t0, Event::Read(600));
    let f = finish_of(m.step(t0));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetOnDrainLimit)
    );
}

#[test]
fn test_draining_grace_end_moves_to_confirming_delivery() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    assert_eq!(
        m.step(t0 + ms(99)),
        Step::Wait {
            write: false,
            read: true,
            until: t0 + ms(100)
        }
    );
    assert_eq!(m.step(t0 + ms(100)), Step::Probe);
    assert_eq!(m.state(), State::ConfirmingDelivery);
}

// ---- ConfirmingDelivery (peer-first) --------------------------------------------

#[test]
fn test_confirming_delivery_acked_goodbye_resets_confirmed() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let t = t0 + ms(100);
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::Established, 0));
    let f = finish_of(m.step(t));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAfterGrace)
    );
    let o = m.outcome(
        f,
        Some(Probe {
            state: TcpState::Established,
            unacked: 0,
            unread: 0,
        }),
        ms(100),
    );
    assert_eq!(o.goodbye, Delivery::Confirmed);
    assert_eq!(o.time_wait, TimeWait::Nobody);
}

#[test]
fn test_confirming_delivery_zero_window_waits_bounded_then_resets_unconfirmed() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let mut t = t0 + ms(100);
    let mut probes = 0;
    let f = loop {
        match m.step(t) {
            Step::Probe => {
                probes += 1;
                m.on_event(t, probe(TcpState::Established, GOODBYE as u32));
            }
            Step::Wait {
                until,
                write: false,
                read: true,
            } => {
                assert!(
                    until <= t0 + ms(150),
                    "never waits past grace + confirm_timeout"
                );
                t = until;
            }
            Step::Finish(f) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(t >= t0 + ms(150));
    assert!(
        probes >= 3,
        "probes with backoff while waiting, got {probes}"
    );
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAfterGrace)
    );
    let last = Probe {
        state: TcpState::Established,
        unacked: GOODBYE as u32,
        unread: 0,
    };
    let o = m.outcome(f, Some(last), ms(150));
    assert_eq!(o.goodbye, Delivery::Unconfirmed);
    assert_eq!(o.unacked_at_close, Some(GOODBYE as u32));
}

#[test]
fn test_confirming_delivery_late_peer_fin_still_closes_passively() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let t = t0 + ms(100);
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::Established, 4));
    m.on_event(t + ms(1), Event::Eof);
    let f = finish_of(m.step(t + ms(1)));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
}

#[test]
fn test_confirming_delivery_closed_without_our_fin_is_a_peer_reset() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let t = t0 + ms(100);
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::Closed, 8));
    let f = finish_of(m.step(t));
    assert_eq!(f.ending, Ending::PeerReset);
    // Counters are stale after a reset (F5): not reported.
    let o = m.outcome(
        f,
        Some(Probe {
            state: TcpState::Closed,
            unacked: 8,
            unread: 0,
        }),
        ms(100),
    );
    assert_eq!(o.unacked_at_close, None);
}

// ---- Lingering ------------------------------------------------------------

#[test]
fn test_lingering_half_closes_then_peer_fin_leaves_time_wait_with_us() {
    let t0 = Instant::now();
    let mut m = flushed(lingering(false), t0);
    assert_eq!(m.step(t0), Step::ShutdownWrite);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    assert_eq!(m.state(), State::Draining);
    m.on_event(t0 + ms(3), Event::Eof);
    let f = finish_of(m.step(t0 + ms(3)));
    assert_eq!(
        (f.release, f.ending),
        (Release::Close, Ending::LingeringClose)
    );
    let o = m.outcome(
        f,
        Some(Probe {
            state: TcpState::Closed,
            unacked: 0,
            unread: 0,
        }),
        ms(3),
    );
    assert_eq!(o.time_wait, TimeWait::Us);
}

#[test]
fn test_lingering_peer_fin_first_leaves_time_wait_with_the_peer() {
    let t0 = Instant::now();
    let mut m = flushed(lingering(false), t0);
    assert_eq!(m.step(t0), Step::ShutdownWrite);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::CloseWait)));
    m.on_event(t0, Event::Eof);
    let f = finish_of(m.step(t0));
    let o = m.outcome(
        f,
        Some(Probe {
            state: TcpState::LastAck,
            unacked: 1,
            unread: 0,
        }),
        ms(0),
    );
    assert_eq!(o.time_wait, TimeWait::Peer);
    assert_eq!(o.goodbye, Delivery::Confirmed, "only the FIN is unacked");
}

#[test]
fn test_lingering_idle_timeout_is_rearmed_by_each_read() {
    let t0 = Instant::now();
    let mut m = flushed(lingering(false), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    m.on_event(t0 + ms(20), Event::Read(1));
    assert_eq!(
        m.step(t0 + ms(40)),
        Step::Wait {
            write: false,
            read: true,
            until: t0 + ms(50)
        }
    );
    let f = finish_of(m.step(t0 + ms(50)));
    assert_eq!(
        (f.release, f.ending),
        (Release::Close, Ending::LingeringTimeout)
    );
}

#[test]
fn test_lingering_reset_on_timeout_resets_at_max_time() {
    let t0 = Instant::now();
    let mut m = flushed(lingering(true), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    for i in 1..=10 {
        m.on_event(t0 + ms(i * 10), Event::Read(1));
    }
    let f = finish_of(m.step(t0 + ms(100)));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAfterLinger)
    );
    let o = m.outcome(
        f,
        Some(Probe {
            state: TcpState::FinWait2,
            unacked: 0,
            unread: 0,
        }),
        ms(100),
    );
    assert_eq!(o.time_wait, TimeWait::Nobody);
}

// ---- AwaitingFinAck (fin-then-reset) ---------------------------------------

#[test]
fn test_awaiting_fin_ack_resets_once_fin_wait_2_is_seen() {
    let t0 = Instant::now();
    let policy = Policy::FinThenReset(FinThenReset {
        fin_ack_timeout: ms(100),
    });
    let mut m = flushed(policy, t0);
    assert_eq!(m.step(t0), Step::ShutdownWrite);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    assert_eq!(m.step(t0), Step::Probe);
    m.on_event(t0, probe(TcpState::FinWait1, 1));
    assert!(matches!(m.step(t0), Step::Wait { .. }));
    let t = t0 + ms(1);
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::FinWait2, 0));
    let f = finish_of(m.step(t));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAfterFinAck)
    );
    let o = m.outcome(
        f,
        Some(Probe {
            state: TcpState::FinWait2,
            unacked: 0,
            unread: 0,
        }),
        ms(1),
    );
    assert_eq!(
        (o.goodbye, o.time_wait),
        (Delivery::Confirmed, TimeWait::Nobody)
    );
}

#[test]
fn test_awaiting_fin_ack_peer_fin_first_means_time_wait_here() {
    let t0 = Instant::now();
    let policy = Policy::FinThenReset(FinThenReset {
        fin_ack_timeout: ms(100),
    });
    let mut m = flushed(policy, t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    m.on_event(t0, Event::Eof);
    let f = finish_of(m.step(t0));
    assert_eq!(f.ending, Ending::PeerClosed);
    assert_eq!(m.outcome(f, None, ms(0)).time_wait, TimeWait::Us);
}

#[test]
fn test_awaiting_fin_ack_unacked_fin_resets_at_the_deadline() {
    let t0 = Instant::now();
    let policy = Policy::FinThenReset(FinThenReset {
        fin_ack_timeout: ms(100),
    });
    let mut m = flushed(policy, t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    let mut t = t0;
    let f = loop {
        match m.step(t) {
            Step::Probe => m.on_event(t, probe(TcpState::FinWait1, 9)),
            Step::Wait { until, .. } => t = until,
            Step::Finish(f) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(f.ending, Ending::ResetFinUnacked);
    assert!(t >= t0 + ms(100) && t <= t0 + ms(100) + MAX_PROBE_GAP);
}

// ---- Done --------------------------------------------------------------------

#[test]
fn test_done_late_eof_after_our_fin_means_time_wait_here() {
    let t0 = Instant::now();
    let policy = Policy::FinThenReset(FinThenReset {
        fin_ack_timeout: ms(100),
    });
    let mut m = flushed(policy, t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    m.on_event(t0, probe(TcpState::FinWait2, 0));
    let f = finish_of(m.step(t0));
    assert_eq!(f.ending, Ending::ResetAfterFinAck);
    // The driver's last read finds the peer's FIN that arrived before the reset.
    m.on_event(t0, Event::Eof);
    let closed = Probe {
        state: TcpState::Closed,
        unacked: 0,
        unread: 0,
    };
    assert_eq!(m.outcome(f, Some(closed), ms(0)).time_wait, TimeWait::Us);
}

// ---- Hurry (Closer::hurry), from every state ----------------------------------

/// Feeds the hurry at `t` and answers the one probe with `answer`; returns the finish.
/// Fails if the hurried machine asks to wait for anything.
fn hurry_then_probe(m: &mut Machine, t: Instant, answer: Probe) -> Finish {
    m.on_event(t, Event::Hurry);
    assert!(m.hurried());
    loop {
        match m.step(t) {
            Step::Probe => m.on_event(t, Event::Probed(answer)),
            Step::TryWrite => m.on_event(t, Event::Timer), // would block
            Step::Finish(f) => return f,
            other => panic!("a hurried teardown never waits, got {other:?}"),
        }
    }
}

/// A lingering or fin-then-reset machine whose FIN is queued.
fn half_closed(policy: Policy, t0: Instant) -> Machine {
    let mut m = flushed(policy, t0);
    assert_eq!(m.step(t0), Step::ShutdownWrite);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    m
}

/// What the kernel reports: state, `SIOCOUTQ`, `SIOCINQ`.
fn kernel(state: TcpState, unacked: u32, unread: u32) -> Probe {
    Probe {
        state,
        unacked,
        unread,
    }
}

fn established(unacked: u32) -> Probe {
    kernel(TcpState::Established, unacked, 0)
}

#[test]
fn test_starting_hurry_asks_the_state_first_then_resets() {
    let t0 = Instant::now();
    let mut m = Machine::new(Policy::default(), GOODBYE, t0);
    m.on_event(t0, Event::Hurry);
    assert_eq!(m.step(t0), Step::CheckState);
    m.on_event(t0, Event::StateIs(TcpState::Established));
    assert_eq!(m.state(), State::Hurrying);
    // Nothing written yet: one non-blocking write of the goodbye, then one probe.
    assert_eq!(m.step(t0), Step::TryWrite);
    m.on_event(t0, Event::Wrote(GOODBYE));
    assert_eq!(m.step(t0), Step::Probe);
    m.on_event(t0, probe(TcpState::Established, 0));
    let f = finish_of(m.step(t0));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAtDeadline)
    );
    let o = m.outcome(f, Some(established(0)), ms(0));
    assert_eq!(
        (o.goodbye, o.time_wait),
        (Delivery::Confirmed, TimeWait::Nobody)
    );
}

#[test]
fn test_starting_hurry_on_a_connecting_socket_is_still_not_established() {
    let t0 = Instant::now();
    let mut m = Machine::new(Policy::default(), GOODBYE, t0);
    m.on_event(t0, Event::Hurry);
    m.on_event(t0, Event::StateIs(TcpState::SynSent));
    let f = finish_of(m.step(t0));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::NotEstablished)
    );
}

#[test]
fn test_flushing_hurry_stuck_goodbye_gets_one_write_then_resets_unconfirmed() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first(), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::Wrote(3));
    let t = t0 + ms(10);
    m.on_event(t, Event::Hurry);
    assert_eq!(m.step(t), Step::TryWrite);
    m.on_event(t, Event::Timer); // would block: zero window
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::Established, 3));
    let f = finish_of(m.step(t));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAtDeadline)
    );
    let o = m.outcome(f, Some(established(3)), ms(10));
    assert_eq!(o.goodbye, Delivery::Unconfirmed);
    assert_eq!(o.goodbye_written, 3);
    assert_eq!(o.time_wait, TimeWait::Nobody);
}

#[test]
fn test_flushing_hurry_failed_write_is_a_peer_reset() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first(), t0);
    m.on_event(t0, Event::Hurry);
    assert_eq!(m.step(t0), Step::TryWrite);
    m.on_event(t0, Event::Failed(io::ErrorKind::ConnectionReset));
    let f = finish_of(m.step(t0));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerReset));
}

#[test]
fn test_half_closing_hurry_resets_without_sending_our_fin() {
    let t0 = Instant::now();
    let mut m = flushed(lingering(false), t0);
    assert_eq!(m.step(t0), Step::ShutdownWrite);
    let f = hurry_then_probe(&mut m, t0, established(0));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAtDeadline)
    );
    assert_eq!(
        m.outcome(f, Some(established(0)), ms(0)).time_wait,
        TimeWait::Nobody
    );
}

#[test]
fn test_draining_hurry_peer_ignoring_the_goodbye_is_reset_confirmed() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    assert!(matches!(m.step(t0), Step::Wait { read: true, .. }));
    let t = t0 + ms(20); // well inside the grace
    let f = hurry_then_probe(&mut m, t, established(0));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAtDeadline)
    );
    let o = m.outcome(f, Some(established(0)), ms(20));
    assert_eq!(
        (o.goodbye, o.time_wait),
        (Delivery::Confirmed, TimeWait::Nobody)
    );
}

#[test]
fn test_draining_hurry_after_the_peer_fin_closes_passively() {
    let t0 = Instant::now();
    for peer_fin_read in [true, false] {
        // Read (EOF seen) or only queued (the probe says CLOSE-WAIT, nothing unread).
        let mut m = flushed(peer_first(), t0);
        if peer_fin_read {
            m.on_event(t0, Event::Eof);
        }
        let close_wait = kernel(TcpState::CloseWait, 0, 0);
        let f = hurry_then_probe(&mut m, t0, close_wait);
        assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
        let o = m.outcome(f, Some(close_wait), ms(0));
        assert_eq!(o.time_wait, TimeWait::Peer);
    }
}

#[test]
fn test_hurrying_ends_by_what_the_one_probe_says() {
    let t0 = Instant::now();
    let cases = [
        // The peer's FIN queued, nothing before it: the passive close.
        (
            kernel(TcpState::CloseWait, 0, 0),
            Release::Close,
            Ending::PeerClosed,
        ),
        // Data before the FIN: close() would send RST anyway (F4), so say so.
        (
            kernel(TcpState::CloseWait, 0, 100),
            Release::Reset,
            Ending::ResetAtDeadline,
        ),
        // Closed without our FIN: the peer reset.
        (
            kernel(TcpState::Closed, 0, 0),
            Release::Close,
            Ending::PeerReset,
        ),
    ];
    for (answer, release, path) in cases {
        let mut m = flushed(peer_first(), t0);
        let f = hurry_then_probe(&mut m, t0, answer);
        assert_eq!((f.release, f.ending), (release, path), "{answer:?}");
    }
}

#[test]
fn test_draining_lingering_hurry_after_our_fin_resets_from_fin_wait_2() {
    let t0 = Instant::now();
    let mut m = half_closed(lingering(false), t0);
    assert_eq!(m.state(), State::Draining);
    let fin_wait_2 = kernel(TcpState::FinWait2, 0, 0);
    let f = hurry_then_probe(&mut m, t0 + ms(5), fin_wait_2);
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAtDeadline)
    );
    let o = m.outcome(f, Some(fin_wait_2), ms(5));
    assert_eq!(
        (o.goodbye, o.time_wait),
        (Delivery::Confirmed, TimeWait::Nobody)
    );
}

#[test]
fn test_draining_lingering_hurry_after_both_fins_is_a_lingering_close() {
    let t0 = Instant::now();
    let mut m = half_closed(lingering(false), t0);
    m.on_event(t0, Event::Eof);
    m.on_event(t0, Event::Hurry);
    let f = finish_of(m.step(t0));
    assert_eq!(
        (f.release, f.ending),
        (Release::Close, Ending::LingeringClose)
    );
    // Our FIN went first: the entry is ours already, the hurry cannot undo it (F2).
    assert_eq!(m.outcome(f, None, ms(0)).time_wait, TimeWait::Us);
}

#[test]
fn test_awaiting_fin_ack_hurry_resets_at_deadline() {
    let t0 = Instant::now();
    let policy = Policy::FinThenReset(FinThenReset {
        fin_ack_timeout: ms(100),
    });
    let mut m = half_closed(policy, t0);
    assert_eq!(m.state(), State::AwaitingFinAck);
    let fin_wait_1 = kernel(TcpState::FinWait1, 1, 0);
    let f = hurry_then_probe(&mut m, t0, fin_wait_1);
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAtDeadline)
    );
    // Only the FIN is unACKed: the goodbye before it arrived.
    let o = m.outcome(f, Some(fin_wait_1), ms(0));
    assert_eq!(o.goodbye, Delivery::Confirmed);
}

#[test]
fn test_confirming_delivery_hurry_cuts_the_bounded_wait_short() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let t = t0 + ms(100);
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::Established, 8));
    assert!(matches!(m.step(t), Step::Wait { .. }));
    let f = hurry_then_probe(&mut m, t + ms(1), established(8));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAtDeadline)
    );
    assert_eq!(
        m.outcome(f, Some(established(8)), ms(101)).goodbye,
        Delivery::Unconfirmed
    );
}

#[test]
fn test_hurrying_probe_failure_resets_unconfirmed() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    m.on_event(t0, Event::Hurry);
    assert_eq!(m.step(t0), Step::Probe);
    m.on_event(t0, Event::ProbeFailed);
    let f = finish_of(m.step(t0));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAtDeadline)
    );
    assert_eq!(m.outcome(f, None, ms(0)).goodbye, Delivery::Unconfirmed);
}

#[test]
fn test_hurrying_second_hurry_changes_nothing() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    m.on_event(t0, Event::Hurry);
    assert_eq!(m.step(t0), Step::Probe);
    m.on_event(t0, probe(TcpState::Established, 0));
    m.on_event(t0, Event::Hurry);
    let f = finish_of(m.step(t0));
    assert_eq!(f.ending, Ending::ResetAtDeadline);
}

#[test]
fn test_done_hurry_is_ignored() {
    let t0 = Instant::now();
    let mut m = flushed(Policy::Abort, t0);
    let f = finish_of(m.step(t0));
    m.on_event(t0, Event::Hurry);
    assert_eq!(m.step(t0), Step::Finish(f));
    assert_eq!(f.ending, Ending::Aborted);
}
