//! Unit tests of the decision logic, per state, with a hand-driven clock.
//!
//! These prove the decisions given what the kernel reports; the integration
//! tests in `tests/` prove the whole on real sockets against the kernel's own
//! socket table.

use super::*;
use crate::policy::{FinThenReset, GraceEnd, Lingering, PeerFirst, PeerTimeWait, Plain};

const GOODBYE: usize = 8;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The round-trip time the kernel reports in these tests: 10 ms, so the
/// probe gap (two RTTs) is 20 ms, which is also [`MIN_PROBE_GAP`].
const RTT: Duration = Duration::from_millis(10);

/// `TCP_INFO` with `state`, [`RTT`], and no byte ACKed yet.
fn info_of(state: TcpState) -> TcpInfo {
    TcpInfo {
        state,
        rtt: RTT,
        bytes_acked: 0,
    }
}

/// The answer to a probe: `state`, `SIOCOUTQ` = `unacked`, nothing unread,
/// and `tcpi_bytes_acked` = `acked`.
fn probed(state: TcpState, unacked: u32, acked: u64) -> Event {
    Event::Probed(Probe {
        info: TcpInfo {
            bytes_acked: acked,
            ..info_of(state)
        },
        unacked,
        unread: 0,
    })
}

/// A probe answer with the ACK counter where it started.
fn probe(state: TcpState, unacked: u32) -> Event {
    probed(state, unacked, 0)
}

/// Peer-first with a 100 ms grace, 300 ms stall timeout, 2 s cap, 1000 B
/// drain limit, and the textbook passive close after the peer's FIN.
fn peer_first() -> Policy {
    peer_first_sparing(PeerTimeWait::Keep)
}

/// [`peer_first`] with another answer to the peer's FIN.
fn peer_first_sparing(peer_time_wait: PeerTimeWait) -> Policy {
    Policy::PeerFirst(PeerFirst {
        grace: ms(100),
        stall_timeout: ms(300),
        delivery_timeout: ms(2000),
        drain_limit: 1000,
        peer_time_wait,
        grace_end: GraceEnd::Reset,
    })
}

fn fin_then_reset(delivery_timeout: Duration) -> Policy {
    Policy::FinThenReset(FinThenReset {
        delivery_timeout,
        stall_timeout: ms(300),
    })
}

fn lingering(reset_on_timeout: bool) -> Policy {
    Policy::Lingering(Lingering {
        stall_timeout: ms(30),
        delivery_timeout: ms(100),
        reset_on_timeout,
    })
}

/// A machine past its start probe (the connection is ESTABLISHED), in `Flushing`.
fn flushing(policy: Policy, t0: Instant) -> Machine {
    let mut m = Machine::new(policy, GOODBYE, t0);
    assert_eq!(m.step(t0), Step::CheckState);
    m.on_event(t0, Event::StateIs(info_of(TcpState::Established)));
    assert_eq!(m.state(), State::Flushing);
    m
}

/// A machine whose goodbye is written, in the state that follows `Flushing`.
fn flushed(policy: Policy, t0: Instant) -> Machine {
    let mut m = flushing(policy, t0);
    assert!(matches!(m.step(t0), Step::Wait { write: true, .. }));
    m.on_event(t0, Event::Wrote(GOODBYE));
    // The driver asks for the next step at once: the machine moves on at t0.
    let _ = m.step(t0);
    m
}

fn finish_of(step: Step) -> Finish {
    match step {
        Step::Finish(f) => f,
        other => panic!("expected a finish, got {other:?}"),
    }
}

/// Drives `m` by hand from `t`: answers each probe with `answer(now)` and
/// moves the clock to the end of each wait (nothing else happens), until a
/// finish or `until`. Returns the finish, if any, the clock, and how many
/// probes were asked for.
fn run(
    m: &mut Machine,
    mut t: Instant,
    until: Instant,
    mut answer: impl FnMut(Instant) -> Event,
) -> (Option<Finish>, Instant, usize) {
    let mut probes = 0;
    for _ in 0..100_000 {
        match m.step(t) {
            Step::Finish(f) => return (Some(f), t, probes),
            Step::Probe => {
                probes += 1;
                m.on_event(t, answer(t));
            }
            Step::Wait { until: end, .. } => {
                assert!(end > t, "a wait must move the clock: {:?}", end - t);
                if end > until {
                    return (None, until, probes);
                }
                t = end;
                m.on_event(t, Event::Timer);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the machine never settled")
}

// ---- Starting -------------------------------------------------------------

#[test]
fn test_starting_closed_connection_is_a_peer_reset() {
    let t0 = Instant::now();
    let mut m = Machine::new(peer_first(), GOODBYE, t0);
    assert_eq!(m.step(t0), Step::CheckState);
    m.on_event(t0, Event::StateIs(info_of(TcpState::Closed)));
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
    m.on_event(t0, Event::StateIs(info_of(TcpState::SynSent)));
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
            until: t0 + 2 * RTT
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
    assert_eq!(m.state(), State::Delivering);
}

#[test]
fn test_flushing_peer_first_stuck_goodbye_is_reset_when_delivery_stalls() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first(), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::Wrote(2));
    // Zero window: nothing more is written, nothing more is ACKed.
    let (f, t, _) = run(&mut m, t0, t0 + ms(5000), |_| {
        probe(TcpState::Established, 2)
    });
    let f = f.expect("a stalled delivery ends");
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetDeliveryStalled)
    );
    assert!(
        t >= t0 + ms(300),
        "not before the stall timeout: {:?}",
        t - t0
    );
    assert!(t <= t0 + ms(300) + MAX_PROBE_GAP);
    let o = m.outcome(f, Some(established(2)), t - t0);
    assert_eq!(o.goodbye, Delivery::Unconfirmed);
    assert_eq!(o.goodbye_written, 2);
    assert_eq!(o.time_wait, TimeWait::Nobody);
    assert_eq!(o.grace, Duration::ZERO, "it never left the deliver phase");
}

#[test]
fn test_flushing_peer_first_slow_progress_without_writes_is_never_cut() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first(), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::Wrote(2));
    // The send buffer is full, so no write succeeds, but every look finds a
    // few more bytes ACKed: the peer takes bytes, slowly.
    let mut acked = 0;
    let (f, _, probes) = run(&mut m, t0, t0 + ms(1900), |_| {
        acked += 10;
        probed(TcpState::Established, 100_000, acked)
    });
    assert_eq!(f, None, "a progressing peer is not cut before the cap");
    assert!(probes > 3, "it kept looking, {probes} probes");
    assert_eq!(m.state(), State::Flushing);
}

#[test]
fn test_flushing_peer_first_cap_resets_even_a_progressing_peer() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first(), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::Wrote(2));
    let mut acked = 0;
    let (f, t, _) = run(&mut m, t0, t0 + ms(5000), |_| {
        acked += 10;
        probed(TcpState::Established, 100_000, acked)
    });
    let f = f.expect("the cap ends it");
    assert_eq!(f.ending, Ending::ResetDeliveryTimeout);
    assert_eq!(t, t0 + ms(2000), "exactly at delivery_timeout");
}

#[test]
fn test_flushing_plain_stalled_write_closes_after_the_stall_timeout() {
    let t0 = Instant::now();
    let policy = Policy::Plain(Plain {
        delivery_timeout: ms(2000),
        stall_timeout: ms(300),
    });
    let mut m = flushing(policy, t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::Wrote(2));
    let (f, t, _) = run(&mut m, t0, t0 + ms(5000), |_| {
        probe(TcpState::Established, 2)
    });
    let f = f.expect("a stalled write ends");
    // Plain closes: the kernel still delivers what was written.
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PlainClose));
    assert!(t >= t0 + ms(300) && t < t0 + ms(2000));
}

#[test]
fn test_flushing_plain_progressing_writes_outlast_the_stall_timeout() {
    let t0 = Instant::now();
    let policy = Policy::Plain(Plain {
        delivery_timeout: ms(5000),
        stall_timeout: ms(300),
    });
    let mut m = flushing(policy, t0);
    let _ = m.step(t0);
    // One byte every 200 ms: each write is progress.
    for i in 1..GOODBYE as u64 {
        let t = t0 + ms(200 * i);
        while let Step::Probe = m.step(t) {
            m.on_event(t, probe(TcpState::Established, 100));
        }
        assert!(
            matches!(m.step(t), Step::Wait { write: true, .. }),
            "at {i}"
        );
        m.on_event(t, Event::Wrote(1));
    }
    let t = t0 + ms(200 * GOODBYE as u64);
    m.on_event(t, Event::Wrote(1));
    let f = finish_of(m.step(t));
    assert_eq!(f.ending, Ending::PlainClose);
    assert_eq!(m.written(), GOODBYE);
}

#[test]
fn test_flushing_zero_durations_still_terminate_after_one_attempt() {
    let t0 = Instant::now();
    let policy = Policy::PeerFirst(PeerFirst {
        grace: Duration::ZERO,
        stall_timeout: Duration::ZERO,
        delivery_timeout: Duration::ZERO,
        drain_limit: 0,
        peer_time_wait: PeerTimeWait::default(),
        grace_end: GraceEnd::Reset,
    });
    let mut m = flushing(policy, t0);
    assert!(matches!(m.step(t0), Step::Wait { write: true, .. }));
    m.on_event(t0, Event::Wrote(GOODBYE));
    let f = finish_of(m.step(t0));
    assert_eq!(f.ending, Ending::ResetDeliveryTimeout);
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
    let established = kernel(TcpState::Established, 0, 0);
    assert_eq!(
        m.outcome(f, Some(established), ms(0)).time_wait,
        TimeWait::UsIfPeerCloses
    );
    // Unread input turns the close into a reset ([F4](crate::facts#f4)).
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

// ---- Delivering (peer-first) ---------------------------------------------------

#[test]
fn test_delivering_peer_fin_before_the_first_probe_costs_no_probe() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    assert_eq!(m.state(), State::Delivering);
    // The first look is two RTTs away: a peer that closes at once beats it.
    assert_eq!(
        m.step(t0),
        Step::Wait {
            write: false,
            read: true,
            until: t0 + 2 * RTT
        }
    );
    m.on_event(t0 + ms(1), Event::Read(100));
    m.on_event(t0 + ms(2), Event::Eof);
    let f = finish_of(m.step(t0 + ms(2)));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
    let o = m.outcome(f, Some(kernel(TcpState::CloseWait, 0, 0)), ms(2));
    assert_eq!(o.time_wait, TimeWait::Peer);
    assert_eq!(o.goodbye, Delivery::Confirmed);
    assert_eq!(o.bytes_drained, 100);
    assert_eq!((o.deliver, o.grace), (ms(2), Duration::ZERO));
}

#[test]
fn test_delivering_probe_gap_follows_the_rtt_with_a_floor() {
    let t0 = Instant::now();
    for (rtt, gap) in [
        (Duration::from_micros(30), MIN_PROBE_GAP), // loopback
        (ms(40), ms(80)),                           // a continent away
        (ms(900), MAX_PROBE_GAP),                   // a bad satellite link
    ] {
        // The default stall timeout (15 s), so only the gap bounds the wait.
        let policy = Policy::PeerFirst(PeerFirst {
            grace: ms(100),
            ..PeerFirst::default()
        });
        let mut m = Machine::new(policy, GOODBYE, t0);
        m.on_event(
            t0,
            Event::StateIs(TcpInfo {
                rtt,
                ..info_of(TcpState::Established)
            }),
        );
        let _ = m.step(t0);
        m.on_event(t0, Event::Wrote(GOODBYE));
        assert_eq!(
            m.step(t0),
            Step::Wait {
                write: false,
                read: true,
                until: t0 + gap
            },
            "rtt {rtt:?}"
        );
    }
}

#[test]
fn test_delivering_all_acked_starts_the_grace() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let t = t0 + 2 * RTT;
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probed(TcpState::Established, 0, GOODBYE as u64));
    assert_eq!(
        m.step(t),
        Step::Wait {
            write: false,
            read: true,
            until: t + ms(100)
        }
    );
    assert_eq!(m.state(), State::Grace);
    let end = t + ms(100);
    let f = finish_of(m.step(end));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAfterGrace)
    );
    let last = Probe {
        info: TcpInfo {
            bytes_acked: GOODBYE as u64,
            ..info_of(TcpState::Established)
        },
        unacked: 0,
        unread: 0,
    };
    let o = m.outcome(f, Some(last), end - t0);
    assert_eq!(o.goodbye, Delivery::Confirmed);
    assert_eq!(o.time_wait, TimeWait::Nobody);
    assert_eq!(o.bytes_delivered, GOODBYE as u64);
    assert_eq!((o.deliver, o.grace), (2 * RTT, ms(100)));
}

#[test]
fn test_delivering_slow_but_progressing_peer_is_never_cut() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    // A megabyte still queued; each look finds only 1000 more bytes ACKed.
    let mut acked = 0;
    let (f, _, probes) = run(&mut m, t0, t0 + ms(1990), |_| {
        acked += 1000;
        probed(TcpState::Established, 1_000_000 - acked as u32, acked)
    });
    assert_eq!(f, None, "still taking bytes: not cut");
    assert_eq!(m.state(), State::Delivering);
    // Looks are spaced by the rate seen, never closer than the RTT gap.
    assert!(probes <= (1990 / 20) + 1, "{probes} probes");
    // Delivery completes: the grace starts from there.
    let t = t0 + ms(1990);
    m.on_event(t, probed(TcpState::Established, 0, 1_000_000));
    assert!(matches!(m.step(t), Step::Wait { until, .. } if until == t + ms(100)));
    assert_eq!(m.state(), State::Grace);
}

#[test]
fn test_delivering_next_probe_aims_at_the_end_of_delivery() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let t = t0 + 2 * RTT;
    assert_eq!(m.step(t), Step::Probe);
    // 1000 B ACKed in the 20 ms since the start, 3000 B to go: 60 ms more.
    m.on_event(t, probed(TcpState::Established, 3000, 1000));
    assert_eq!(
        m.step(t),
        Step::Wait {
            write: false,
            read: true,
            until: t + ms(60)
        }
    );
    // With 10,000 B to go the aim (200 ms) is past a quarter of the stall
    // timeout (75 ms): the look comes then, so progress is dated well.
    let t = t + ms(60);
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probed(TcpState::Established, 30_000, 4000));
    assert!(matches!(m.step(t), Step::Wait { until, .. } if until == t + ms(75)));
}

#[test]
fn test_delivering_stalled_peer_is_reset_after_the_stall_timeout() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let mut looks = Vec::new();
    let (f, t, probes) = run(&mut m, t0, t0 + ms(5000), |t| {
        looks.push(t);
        probe(TcpState::Established, GOODBYE as u32)
    });
    let f = f.expect("a stalled delivery ends");
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetDeliveryStalled)
    );
    // Cut only after a look at or after the stall deadline saw no progress.
    assert!(*looks.last().unwrap() >= t0 + ms(300));
    assert!(t >= t0 + ms(300) && t < t0 + ms(400), "{:?}", t - t0);
    // While nothing moves the looks back off (20, 60, 135, 210, 285, 300 ms:
    // doubling, at most a quarter of the stall timeout apart).
    assert!(probes <= 7, "{probes} probes: {looks:?}");
    let o = m.outcome(f, Some(established(GOODBYE as u32)), t - t0);
    assert_eq!(o.goodbye, Delivery::Unconfirmed);
    assert_eq!(o.unacked_at_close, Some(GOODBYE as u32));
    assert_eq!(o.bytes_delivered, 0);
}

#[test]
fn test_delivering_progress_restarts_the_stall_timeout() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    // Progress once, at the look after 250 ms; then nothing.
    let (f, t, _) = run(&mut m, t0, t0 + ms(5000), |t| {
        let acked = if t >= t0 + ms(250) { 4 } else { 0 };
        probed(TcpState::Established, GOODBYE as u32 - acked as u32, acked)
    });
    assert_eq!(f.unwrap().ending, Ending::ResetDeliveryStalled);
    assert!(t >= t0 + ms(250) + ms(300), "{:?}", t - t0);
}

#[test]
fn test_delivering_cap_resets_a_progressing_peer_as_delivery_timeout() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let mut acked = 0;
    let (f, t, _) = run(&mut m, t0, t0 + ms(5000), |_| {
        acked += 1;
        probed(TcpState::Established, 100_000, acked)
    });
    assert_eq!(f.unwrap().ending, Ending::ResetDeliveryTimeout);
    assert_eq!(t, t0 + ms(2000));
}

#[test]
fn test_delivering_peer_fin_closes_passively_with_bytes_still_queued() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let t = t0 + 2 * RTT;
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::Established, 5));
    m.on_event(t + ms(1), Event::Eof);
    let f = finish_of(m.step(t + ms(1)));
    // No reset: the kernel still delivers what is queued after close().
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
    let o = m.outcome(f, Some(kernel(TcpState::CloseWait, 5, 0)), ms(21));
    assert_eq!(o.time_wait, TimeWait::Peer);
}

#[test]
fn test_delivering_flood_past_the_limit_resets() {
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
fn test_delivering_closed_without_our_fin_is_a_peer_reset() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let t = t0 + 2 * RTT;
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::Closed, 8));
    let f = finish_of(m.step(t));
    assert_eq!(f.ending, Ending::PeerReset);
    // Counters are stale after a reset ([F5](crate::facts#f5)): not reported.
    let o = m.outcome(f, Some(kernel(TcpState::Closed, 8, 0)), ms(20));
    assert_eq!(o.unacked_at_close, None);
}

#[test]
fn test_delivering_hurry_cuts_a_progressing_delivery_short() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first(), t0);
    let mut acked = 0;
    let (f, t, _) = run(&mut m, t0, t0 + ms(500), |_| {
        acked += 100;
        probed(TcpState::Established, 100_000, acked)
    });
    assert_eq!(f, None);
    let f = hurry_then_probe(&mut m, t, established(100_000));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAtDeadline)
    );
    assert_eq!(
        m.outcome(f, Some(established(100_000)), t - t0).goodbye,
        Delivery::Unconfirmed
    );
}

// ---- Delivering: the peer's FIN, and who keeps TIME-WAIT ([F13](crate::facts#f13)) ----

/// A peer-first machine with `choice`, its goodbye written, the peer's FIN
/// read at `t0 + 1 ms` before any probe.
fn fin_while_delivering(choice: PeerTimeWait, t0: Instant) -> Machine {
    let mut m = flushed(peer_first_sparing(choice), t0);
    assert_eq!(m.state(), State::Delivering);
    m.on_event(t0 + ms(1), Event::Eof);
    m
}

#[test]
fn test_delivering_peer_fin_after_all_acked_is_reset_when_sparing() {
    let t0 = Instant::now();
    let mut m = fin_while_delivering(PeerTimeWait::Spare, t0);
    // One look: was everything ACKed when the FIN came?
    assert_eq!(m.step(t0 + ms(1)), Step::Probe);
    m.on_event(t0 + ms(1), probed(TcpState::CloseWait, 0, GOODBYE as u64));
    let f = finish_of(m.step(t0 + ms(1)));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAfterPeerFin)
    );
    let o = m.outcome(f, None, ms(1));
    assert_eq!(o.time_wait, TimeWait::Nobody);
    assert_eq!(o.goodbye, Delivery::Confirmed);
    assert_eq!(o.peer_fin, Some(PeerFinChoice::Spared));
}

#[test]
fn test_delivering_peer_fin_with_bytes_in_flight_is_a_half_close() {
    let t0 = Instant::now();
    let mut m = fin_while_delivering(PeerTimeWait::Spare, t0);
    assert_eq!(m.step(t0 + ms(1)), Step::Probe);
    // 5 bytes not ACKed when the FIN came: the peer may still be reading.
    m.on_event(t0 + ms(1), probe(TcpState::CloseWait, 5));
    let f = finish_of(m.step(t0 + ms(1)));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
    let o = m.outcome(f, Some(kernel(TcpState::CloseWait, 5, 0)), ms(1));
    assert_eq!(o.time_wait, TimeWait::Peer);
    assert_eq!(o.peer_fin, Some(PeerFinChoice::HalfClose));
}

#[test]
fn test_delivering_peer_fin_keep_closes_passively_without_a_probe() {
    let t0 = Instant::now();
    let mut m = fin_while_delivering(PeerTimeWait::Keep, t0);
    let f = finish_of(m.step(t0 + ms(1)));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
    assert_eq!(
        m.outcome(f, None, ms(1)).peer_fin,
        Some(PeerFinChoice::Kept)
    );
}

/// The machine ends with the passive close of a half-close at `now`.
fn assert_half_close(m: &mut Machine, now: Instant) {
    let f = finish_of(m.step(now));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
    assert_eq!(
        m.outcome(f, None, ms(0)).peer_fin,
        Some(PeerFinChoice::HalfClose)
    );
}

/// The two answers of the heavy-client table, and what each ends with.
const LIGHT_AND_HEAVY: [(PeerFinChoice, Release, Ending); 2] = [
    (
        PeerFinChoice::Light { recent: 2 },
        Release::Close,
        Ending::PeerClosed,
    ),
    (
        PeerFinChoice::Heavy { recent: 3 },
        Release::Reset,
        Ending::ResetAfterPeerFin,
    ),
];

#[test]
fn test_delivering_peer_fin_auto_asks_how_heavy_the_client_is() {
    for (choice, release, ending) in LIGHT_AND_HEAVY {
        let t0 = Instant::now();
        let mut m = fin_while_delivering(PeerTimeWait::Auto, t0);
        assert_eq!(m.step(t0 + ms(1)), Step::Probe);
        m.on_event(t0 + ms(1), probed(TcpState::CloseWait, 0, GOODBYE as u64));
        assert_eq!(m.step(t0 + ms(1)), Step::Classify);
        m.on_event(t0 + ms(1), Event::Classified(choice));
        let f = finish_of(m.step(t0 + ms(1)));
        assert_eq!((f.release, f.ending), (release, ending), "{choice:?}");
        assert_eq!(m.outcome(f, None, ms(1)).peer_fin, Some(choice));
    }
}

#[test]
fn test_delivering_half_close_is_never_classified() {
    let t0 = Instant::now();
    let mut m = fin_while_delivering(PeerTimeWait::Auto, t0);
    assert_eq!(m.step(t0 + ms(1)), Step::Probe);
    m.on_event(t0 + ms(1), probe(TcpState::CloseWait, 1));
    // Straight to the passive close: a half-closed peer is not counted.
    let f = finish_of(m.step(t0 + ms(1)));
    assert_eq!(f.ending, Ending::PeerClosed);
}

#[test]
fn test_starting_close_wait_before_the_goodbye_is_a_half_close() {
    let t0 = Instant::now();
    let mut m = Machine::new(peer_first_sparing(PeerTimeWait::Spare), GOODBYE, t0);
    assert_eq!(m.step(t0), Step::CheckState);
    // The peer's FIN came before our goodbye was written: it half-closed.
    m.on_event(t0, Event::StateIs(info_of(TcpState::CloseWait)));
    assert!(matches!(m.step(t0), Step::Wait { write: true, .. }));
    m.on_event(t0, Event::Wrote(GOODBYE));
    let _ = m.step(t0);
    m.on_event(t0, Event::Eof);
    // No probe, no reset: the peer gets the goodbye, then our FIN (EOF).
    assert_half_close(&mut m, t0);
}

#[test]
fn test_flushing_peer_fin_before_the_whole_goodbye_is_a_half_close() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first_sparing(PeerTimeWait::Spare), t0);
    assert!(matches!(m.step(t0), Step::Wait { write: true, .. }));
    m.on_event(t0, Event::Wrote(GOODBYE / 2));
    m.on_event(t0, Event::Eof);
    m.on_event(t0, Event::Wrote(GOODBYE - GOODBYE / 2));
    let f = finish_of(m.step(t0));
    assert_eq!(f.ending, Ending::PeerClosed);
}

// ---- Grace (peer-first) ------------------------------------------------------

/// A peer-first machine whose goodbye was seen ACKed at `t0 + at`.
fn in_grace(t0: Instant, at: Duration) -> Machine {
    let mut m = flushed(peer_first(), t0);
    let t = t0 + at;
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probed(TcpState::Established, 0, GOODBYE as u64));
    let _ = m.step(t);
    assert_eq!(m.state(), State::Grace);
    m
}

#[test]
fn test_grace_counts_from_delivery_not_from_the_goodbye() {
    let t0 = Instant::now();
    let mut m = in_grace(t0, ms(500));
    // 100 ms after the goodbye was written, but only 50 ms into the grace.
    assert!(matches!(m.step(t0 + ms(550)), Step::Wait { until, .. } if until == t0 + ms(600)));
    let f = finish_of(m.step(t0 + ms(600)));
    assert_eq!(f.ending, Ending::ResetAfterGrace);
}

#[test]
fn test_grace_peer_fin_closes_passively_and_peer_keeps_time_wait() {
    let t0 = Instant::now();
    let mut m = in_grace(t0, ms(20));
    m.on_event(t0 + ms(60), Event::Eof);
    let f = finish_of(m.step(t0 + ms(60)));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
    let o = m.outcome(f, Some(kernel(TcpState::CloseWait, 0, 0)), ms(60));
    assert_eq!(o.time_wait, TimeWait::Peer);
    assert_eq!((o.deliver, o.grace), (ms(20), ms(40)));
}

#[test]
fn test_grace_peer_fin_when_sparing_resets_without_another_probe() {
    let t0 = Instant::now();
    let mut m = flushed(peer_first_sparing(PeerTimeWait::Spare), t0);
    let t = t0 + 2 * RTT;
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probed(TcpState::Established, 0, GOODBYE as u64));
    let _ = m.step(t);
    assert_eq!(m.state(), State::Grace);
    m.on_event(t + ms(40), Event::Eof);
    let f = finish_of(m.step(t + ms(40)));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAfterPeerFin)
    );
    let o = m.outcome(f, None, ms(60));
    assert_eq!(o.time_wait, TimeWait::Nobody);
    assert_eq!((o.deliver, o.grace), (ms(20), ms(40)));
}

#[test]
fn test_grace_passed_with_grace_end_fin_sends_our_fin_reset_by_the_kernel() {
    let t0 = Instant::now();
    let Policy::PeerFirst(p) = peer_first() else {
        unreachable!()
    };
    let policy = Policy::PeerFirst(PeerFirst {
        grace_end: GraceEnd::Fin,
        ..p
    });
    let mut m = flushed(policy, t0);
    let t = t0 + 2 * RTT;
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probed(TcpState::Established, 0, GOODBYE as u64));
    assert!(matches!(m.step(t), Step::Wait { read: true, .. }));
    let f = finish_of(m.step(t + ms(100)));
    assert_eq!(
        (f.release, f.ending),
        (Release::FinResetOnAck, Ending::FinAfterGrace)
    );
    let o = m.outcome(f, None, ms(120));
    assert_eq!(o.time_wait, TimeWait::Nobody);
    assert_eq!(o.goodbye, Delivery::Confirmed);
}

#[test]
fn test_grace_flood_past_the_limit_resets() {
    let t0 = Instant::now();
    let mut m = in_grace(t0, ms(20));
    m.on_event(t0 + ms(30), Event::Read(1001));
    let f = finish_of(m.step(t0 + ms(30)));
    assert_eq!(f.ending, Ending::ResetOnDrainLimit);
}

#[test]
fn test_grace_never_probes() {
    let t0 = Instant::now();
    let mut m = in_grace(t0, ms(20));
    for i in 0..100 {
        let step = m.step(t0 + ms(20 + i));
        assert!(matches!(step, Step::Wait { .. }), "{step:?}");
    }
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
    let o = m.outcome(f, Some(kernel(TcpState::Closed, 0, 0)), ms(3));
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
    let o = m.outcome(f, Some(kernel(TcpState::LastAck, 1, 0)), ms(0));
    assert_eq!(o.time_wait, TimeWait::Peer);
    assert_eq!(o.goodbye, Delivery::Confirmed, "only the FIN is unacked");
}

#[test]
fn test_lingering_stall_timeout_is_rearmed_by_each_read() {
    let t0 = Instant::now();
    let mut m = flushed(lingering(false), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    // The first look finds everything ACKed but our FIN: nothing to watch.
    assert_eq!(m.step(t0 + 2 * RTT), Step::Probe);
    m.on_event(t0 + 2 * RTT, probe(TcpState::FinWait1, 1));
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
fn test_lingering_reset_on_timeout_resets_at_delivery_timeout() {
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
    let o = m.outcome(f, Some(kernel(TcpState::FinWait2, 0, 0)), ms(100));
    assert_eq!(o.time_wait, TimeWait::Nobody);
}

#[test]
fn test_draining_lingering_slow_reader_still_acking_is_not_idle() {
    let t0 = Instant::now();
    let mut m = flushed(lingering(false), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    // No read at all, so idle after 30 ms by reads alone; but every look
    // finds more of our bytes ACKed.
    let mut acked = 0;
    let (f, t, _) = run(&mut m, t0, t0 + ms(1000), |_| {
        acked += 100;
        probed(TcpState::FinWait1, 50_000, acked)
    });
    // Only delivery_timeout, the hard cap, ends it.
    assert_eq!(f.unwrap().ending, Ending::LingeringTimeout);
    assert_eq!(t, t0 + ms(100));
}

#[test]
fn test_draining_lingering_stalled_delivery_is_idle() {
    let t0 = Instant::now();
    let mut m = flushed(lingering(true), t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    let (f, t, _) = run(&mut m, t0, t0 + ms(1000), |_| {
        probe(TcpState::FinWait1, 50_000)
    });
    assert_eq!(f.unwrap().ending, Ending::ResetAfterLinger);
    assert!(t >= t0 + ms(30) && t < t0 + ms(100), "{:?}", t - t0);
}

// ---- AwaitingFinAck (fin-then-reset) ---------------------------------------

#[test]
fn test_awaiting_fin_ack_resets_once_fin_wait_2_is_seen() {
    let t0 = Instant::now();
    let policy = fin_then_reset(ms(100));
    let mut m = flushed(policy, t0);
    assert_eq!(m.step(t0), Step::ShutdownWrite);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    // The first look comes two RTTs after our FIN.
    assert!(matches!(m.step(t0), Step::Wait { until, .. } if until == t0 + 2 * RTT));
    let t = t0 + 2 * RTT;
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::FinWait1, 1));
    assert!(matches!(m.step(t), Step::Wait { .. }));
    let t = t0 + 6 * RTT;
    assert_eq!(m.step(t), Step::Probe);
    m.on_event(t, probe(TcpState::FinWait2, 0));
    let f = finish_of(m.step(t));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::ResetAfterFinAck)
    );
    let o = m.outcome(f, Some(kernel(TcpState::FinWait2, 0, 0)), ms(1));
    assert_eq!(
        (o.goodbye, o.time_wait),
        (Delivery::Confirmed, TimeWait::Nobody)
    );
}

#[test]
fn test_awaiting_fin_ack_peer_fin_first_means_time_wait_here() {
    let t0 = Instant::now();
    let policy = fin_then_reset(ms(100));
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
    let policy = fin_then_reset(ms(100));
    let mut m = flushed(policy, t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    let (f, t, _) = run(&mut m, t0, t0 + ms(5000), |_| probe(TcpState::FinWait1, 9));
    assert_eq!(f.unwrap().ending, Ending::ResetFinUnacked);
    assert_eq!(t, t0 + ms(100), "the cap, before the stall timeout");
}

#[test]
fn test_awaiting_fin_ack_progressing_peer_outlasts_the_stall_timeout() {
    let t0 = Instant::now();
    let mut m = half_closed(fin_then_reset(ms(5000)), t0);
    let mut acked = 0;
    let (f, t, _) = run(&mut m, t0, t0 + ms(1500), |_| {
        acked += 100;
        probed(TcpState::FinWait1, 100_000, acked)
    });
    assert_eq!(f, None, "still taking bytes: not cut");
    m.on_event(t, probed(TcpState::FinWait2, 0, 100_001));
    assert_eq!(finish_of(m.step(t)).ending, Ending::ResetAfterFinAck);
}

#[test]
fn test_awaiting_fin_ack_stalled_delivery_resets_as_stalled() {
    let t0 = Instant::now();
    let mut m = half_closed(fin_then_reset(ms(5000)), t0);
    let (f, t, _) = run(&mut m, t0, t0 + ms(5000), |_| {
        probe(TcpState::FinWait1, 100_000)
    });
    assert_eq!(f.unwrap().ending, Ending::ResetDeliveryStalled);
    assert!(t >= t0 + ms(300) && t < t0 + ms(400), "{:?}", t - t0);
}

// ---- Done --------------------------------------------------------------------

#[test]
fn test_done_late_eof_after_our_fin_means_time_wait_here() {
    let t0 = Instant::now();
    let policy = fin_then_reset(ms(100));
    let mut m = flushed(policy, t0);
    let _ = m.step(t0);
    m.on_event(t0, Event::HalfClosed(Some(TcpState::Established)));
    m.on_event(t0, probe(TcpState::FinWait2, 0));
    let f = finish_of(m.step(t0));
    assert_eq!(f.ending, Ending::ResetAfterFinAck);
    // The driver's last read finds the peer's FIN that arrived before the reset.
    m.on_event(t0, Event::Eof);
    let closed = kernel(TcpState::Closed, 0, 0);
    assert_eq!(m.outcome(f, Some(closed), ms(0)).time_wait, TimeWait::Us);
}

#[test]
fn test_done_refused_silent_close_becomes_a_reset() {
    let t0 = Instant::now();
    let mut m = flushing(Policy::Silent, t0);
    let f = finish_of(m.step(t0));
    assert_eq!(f.release, Release::Silent);
    // The driver tried TCP_REPAIR and the kernel said EPERM.
    m.on_event(t0, Event::RepairRefused);
    let f = finish_of(m.step(t0));
    assert_eq!(
        (f.release, f.ending),
        (Release::Reset, Ending::SilentRefusedReset)
    );
    let o = m.outcome(f, Some(established(0)), ms(0));
    assert_eq!(o.time_wait, TimeWait::Nobody);
    assert!(o.we_reset());
}

#[test]
fn test_done_repair_refused_changes_no_other_release() {
    let t0 = Instant::now();
    let mut m = flushed(Policy::Abort, t0);
    let f = finish_of(m.step(t0));
    m.on_event(t0, Event::RepairRefused);
    assert_eq!(m.step(t0), Step::Finish(f));
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

/// What the kernel reports: state, `SIOCOUTQ`, `SIOCINQ` (and no byte ACKed).
fn kernel(state: TcpState, unacked: u32, unread: u32) -> Probe {
    Probe {
        info: info_of(state),
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
    m.on_event(t0, Event::StateIs(info_of(TcpState::Established)));
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
    m.on_event(t0, Event::StateIs(info_of(TcpState::SynSent)));
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
        // Data before the FIN: close() would send RST anyway ([F4](crate::facts#f4)), so say so.
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
    // Our FIN went first: the entry is ours already, the hurry cannot undo it ([F2](crate::facts#f2)).
    assert_eq!(m.outcome(f, None, ms(0)).time_wait, TimeWait::Us);
}

#[test]
fn test_awaiting_fin_ack_hurry_resets_at_deadline() {
    let t0 = Instant::now();
    let policy = fin_then_reset(ms(100));
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
fn test_delivering_hurry_on_an_unacked_goodbye_resets_unconfirmed() {
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

// ---- Starting: nothing in flight ----------------------------------------------

#[test]
fn test_starting_nothing_in_flight_without_a_goodbye_goes_straight_to_the_grace() {
    let t0 = Instant::now();
    let mut m = Machine::new(peer_first_sparing(PeerTimeWait::Spare), 0, t0);
    assert_eq!(m.step(t0), Step::CheckState);
    m.on_event(t0, Event::StateIs(info_of(TcpState::Established)));
    m.on_event(t0, Event::NothingInFlight);
    assert!(matches!(m.step(t0), Step::Wait { read: true, .. }));
    assert_eq!(m.state(), State::Grace);
    // The peer's FIN then needs no probe: everything was ACKed.
    m.on_event(t0 + ms(5), Event::Eof);
    let f = finish_of(m.step(t0 + ms(5)));
    assert_eq!(f.ending, Ending::ResetAfterPeerFin);
}

#[test]
fn test_starting_nothing_in_flight_with_a_goodbye_still_watches_its_delivery() {
    let t0 = Instant::now();
    let mut m = flushing(peer_first(), t0);
    m.on_event(t0, Event::NothingInFlight);
    assert!(matches!(m.step(t0), Step::Wait { write: true, .. }));
    m.on_event(t0, Event::Wrote(GOODBYE));
    let _ = m.step(t0);
    assert_eq!(m.state(), State::Delivering);
}

/// A FIN the caller read (`Handoff::peer_fin_read`), no goodbye: the start
/// asks `SIOCOUTQ` only, and with nothing in flight the FIN is a goodbye,
/// classified as any other.
#[test]
fn test_starting_after_a_fin_read_asks_only_what_is_unacked() {
    for (choice, release, ending) in LIGHT_AND_HEAVY {
        let t0 = Instant::now();
        let mut m = Machine::new(peer_first_sparing(PeerTimeWait::Auto), 0, t0);
        m.on_event(t0, Event::Eof);
        assert_eq!(m.step(t0), Step::CheckUnacked);
        m.on_event(t0, Event::UnackedAtStart(0));
        assert_eq!(m.step(t0), Step::Classify);
        m.on_event(t0, Event::Classified(choice));
        let f = finish_of(m.step(t0));
        assert_eq!((f.release, f.ending), (release, ending), "{choice:?}");
        let o = m.outcome(f, None, ms(0));
        assert_eq!(o.peer_fin, Some(choice));
        assert_eq!(o.goodbye, Delivery::NoneSent);
    }
}

/// The same start with bytes still unACKed: the FIN came while the peer was
/// still taking them (a half-close), so one probe confirms it and the peer
/// gets the passive close, unclassified.
#[test]
fn test_starting_after_a_fin_read_with_bytes_in_flight_is_a_half_close() {
    let t0 = Instant::now();
    let mut m = Machine::new(peer_first_sparing(PeerTimeWait::Auto), 0, t0);
    m.on_event(t0, Event::Eof);
    assert_eq!(m.step(t0), Step::CheckUnacked);
    m.on_event(t0, Event::UnackedAtStart(120));
    assert_eq!(m.step(t0), Step::Probe);
    m.on_event(t0, probe(TcpState::CloseWait, 120));
    assert_half_close(&mut m, t0);
}

/// A goodbye still to write, or no FIN read: the start asks for the state.
#[test]
fn test_starting_asks_the_state_unless_a_fin_was_read_and_nothing_is_to_write() {
    let t0 = Instant::now();
    let mut m = Machine::new(peer_first(), GOODBYE, t0);
    m.on_event(t0, Event::Eof);
    assert_eq!(m.step(t0), Step::CheckState);
    let mut m = Machine::new(peer_first(), 0, t0);
    assert_eq!(m.step(t0), Step::CheckState);
}

/// Hurried before the start, after a FIN read: still the passive close.
#[test]
fn test_starting_after_a_fin_read_hurried_closes_passively() {
    let t0 = Instant::now();
    let mut m = Machine::new(peer_first_sparing(PeerTimeWait::Spare), 0, t0);
    m.on_event(t0, Event::Eof);
    m.on_event(t0, Event::Hurry);
    assert_eq!(m.step(t0), Step::CheckUnacked);
    m.on_event(t0, Event::UnackedAtStart(0));
    let f = finish_of(m.step(t0));
    assert_eq!((f.release, f.ending), (Release::Close, Ending::PeerClosed));
}
