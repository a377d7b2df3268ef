//! Watching delivery: is the peer still taking our bytes, and when to look next.
//!
//! Pure bookkeeping for the [`Machine`](super::Machine): it is told what was
//! written and what each kernel probe said, at what time, and answers whether
//! delivery progressed, stalled or completed, and when the next probe is due.
//! See the [machine's module docs](super#delivery-progress) for the rules.

use std::time::{Duration, Instant};

use super::Probe;
use crate::sys::TcpInfo;

/// The shortest pause between two kernel probes, and before the first: a peer
/// that closes at once is never probed, and a pending teardown wakes at most
/// 50 times a second.
///
/// Measured with `farewell bench churn` (a debug build, 2 busy cores, about
/// 14,000 peer-first teardowns of peers that close on the goodbye): with 5 ms,
/// 2.6 % of them were probed once before the peer's FIN came (the peers took
/// that long to react under load); with 20 ms, under 0.1 %.
pub(crate) const MIN_PROBE_GAP: Duration = Duration::from_millis(20);
/// The longest pause between two kernel probes (a probe is also always due at
/// the stall deadline).
pub(crate) const MAX_PROBE_GAP: Duration = Duration::from_secs(1);

/// What the machine knows about the delivery of our bytes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Progress {
    /// `tcpi_bytes_acked` at the first reading (see `acked_known`).
    acked_first: u64,
    /// `tcpi_bytes_acked` at the last reading.
    acked_last: u64,
    /// `SIOCOUTQ` at the last probe (`u32::MAX` before the first).
    unacked_last: u32,
    /// The smoothed round-trip time, in microseconds (0: unknown).
    rtt_us: u32,
    /// The pause between the last probe and the next, in microseconds.
    gap_us: u32,
    /// `TCP_INFO` was read at least once: `acked_first` holds.
    acked_known: bool,
    /// The last progress: a write, our FIN, or a probe that saw more ACKed.
    /// Delivery stalls the stall timeout after it.
    at: Instant,
    /// The last probe (the start, before any).
    probed_at: Instant,
    /// When the next probe is due.
    next_probe: Instant,
    /// Everything written (for fin-then-reset: our FIN too) was seen ACKed, at this time.
    delivered_at: Option<Instant>,
}

impl Progress {
    /// Nothing known yet, at the start of the teardown.
    pub(super) fn new(now: Instant) -> Progress {
        Progress {
            acked_first: 0,
            acked_last: 0,
            unacked_last: u32::MAX,
            rtt_us: 0,
            gap_us: 0,
            acked_known: false,
            at: now,
            probed_at: now,
            next_probe: now,
            delivered_at: None,
        }
    }

    /// Keeps what every `TCP_INFO` reading tells: the RTT and the ACK counter.
    pub(super) fn note_info(&mut self, info: &TcpInfo) {
        if !info.rtt.is_zero() {
            self.rtt_us = u32::try_from(info.rtt.as_micros()).unwrap_or(u32::MAX);
        }
        if !self.acked_known {
            self.acked_known = true;
            self.acked_first = info.bytes_acked;
        }
        self.acked_last = self.acked_last.max(info.bytes_acked);
    }

    /// Everything written was ACKed already when the teardown started (the
    /// kernel said so in the same `TCP_INFO` as the state).
    pub(super) fn delivered_before(&mut self, now: Instant) {
        self.delivered_at.get_or_insert(now);
    }

    /// Something happened that counts as progress at `now`: bytes written, our FIN queued.
    pub(super) fn progressed(&mut self, now: Instant) {
        self.at = now;
    }

    /// Starts watching at `now` (the last write, our FIN): the first probe
    /// comes one RTT-based gap later, so a peer that closes at once is never probed.
    pub(super) fn watch_from(&mut self, now: Instant, stall: Duration) {
        self.set_gap(now, self.rtt_gap(), stall);
    }

    /// The kernel could not be asked at `now`: look again later, twice as late.
    pub(super) fn probe_failed(&mut self, now: Instant, stall: Duration) {
        self.probed_at = now;
        self.set_gap(now, self.gap() * 2, stall);
    }

    /// A probe at `now` said `probe`; `done` when it shows everything the
    /// policy waits for ACKed. Progress is `tcpi_bytes_acked` risen or
    /// `SIOCOUTQ` fallen since the last look ([F12](crate::facts#f12)); a
    /// `CLOSED` socket's counters are stale ([F5](crate::facts#f5)), so its
    /// probe shows none.
    pub(super) fn look(&mut self, now: Instant, probe: &Probe, done: bool, stall: Duration) {
        let alive = probe.state() != crate::TcpState::Closed;
        let newly_acked = if alive {
            let counter = if self.acked_known {
                probe.info.bytes_acked.saturating_sub(self.acked_last)
            } else {
                0 // the first reading: nothing to compare with
            };
            let queue = match self.unacked_last {
                u32::MAX => 0,
                before => before.saturating_sub(probe.unacked),
            };
            counter.max(u64::from(queue))
        } else {
            0
        };
        let since_last_look = now.saturating_duration_since(self.probed_at);
        if alive {
            self.note_info(&probe.info);
            self.unacked_last = probe.unacked;
        }
        self.probed_at = now;
        if done && self.delivered_at.is_none() {
            self.delivered_at = Some(now);
        }
        // The next look: while bytes flow, about when the queue should be
        // empty at the rate seen (bytes ACKed since the last look, over the
        // time since); while nothing moves, twice as late as the last.
        let gap = if newly_acked > 0 {
            self.at = now;
            let ratio = (f64::from(probe.unacked) / newly_acked as f64).min(1e6);
            since_last_look
                .mul_f64(ratio)
                .clamp(self.rtt_gap(), MAX_PROBE_GAP)
        } else {
            (self.gap() * 2).clamp(self.rtt_gap(), MAX_PROBE_GAP)
        };
        self.set_gap(now, gap, stall);
    }

    /// Everything was seen ACKed, at this time.
    pub(super) fn delivered_at(&self) -> Option<Instant> {
        self.delivered_at
    }

    /// The last progress.
    pub(super) fn last(&self) -> Instant {
        self.at
    }

    /// A probe ran at or after `t`.
    pub(super) fn probed_since(&self, t: Instant) -> bool {
        self.probed_at >= t
    }

    /// When the next probe is due.
    pub(super) fn next_probe(&self) -> Instant {
        self.next_probe
    }

    /// When delivery counts as stalled if no progress comes first.
    pub(super) fn stall_deadline(&self, stall: Duration) -> Instant {
        self.at + stall
    }

    /// The stall deadline passed and a probe taken since found no progress.
    pub(super) fn stalled(&self, now: Instant, stall: Duration) -> bool {
        let deadline = self.stall_deadline(stall);
        now >= deadline && self.probed_since(deadline)
    }

    /// The kernel must be asked before waiting on: a probe is due, or the
    /// stall deadline passed without a probe since.
    pub(super) fn probe_due(&self, now: Instant, stall: Duration) -> bool {
        self.next_probe <= now || now >= self.stall_deadline(stall)
    }

    /// Bytes ACKed since the first reading, as of `last` (the driver's final
    /// probe) if the kernel still counted then; `fin_acked` takes our ACKed
    /// FIN out of the kernel's count.
    pub(super) fn bytes_delivered(&self, last: Option<&Probe>, fin_acked: bool) -> u64 {
        let acked_last = last
            .filter(|p| p.state() != crate::TcpState::Closed)
            .map_or(self.acked_last, |p| p.info.bytes_acked.max(self.acked_last));
        let acked_first = if self.acked_known {
            self.acked_first
        } else {
            acked_last
        };
        acked_last
            .saturating_sub(acked_first)
            .saturating_sub(u64::from(fin_acked))
    }

    /// Two RTTs, within [`MIN_PROBE_GAP`] and [`MAX_PROBE_GAP`]: the pause
    /// before the first look, and the shortest between two.
    fn rtt_gap(&self) -> Duration {
        (Duration::from_micros(u64::from(self.rtt_us)) * 2).clamp(MIN_PROBE_GAP, MAX_PROBE_GAP)
    }

    /// The pause since the last probe (or the start of watching).
    fn gap(&self) -> Duration {
        Duration::from_micros(u64::from(self.gap_us))
    }

    /// The next probe comes `gap` after `now`: at most [`MAX_PROBE_GAP`], and
    /// at most a quarter of the stall timeout (at least 1 ms), because a probe
    /// dates the progress it sees to its own time: sparse looks would stretch
    /// the stall timeout by up to one gap.
    fn set_gap(&mut self, now: Instant, gap: Duration, stall: Duration) {
        let gap = gap
            .min(MAX_PROBE_GAP)
            .min((stall / 4).max(Duration::from_millis(1)));
        // Fits: MAX_PROBE_GAP is far below u32::MAX microseconds.
        self.gap_us = u32::try_from(gap.as_micros()).unwrap_or(u32::MAX);
        self.next_probe = now + gap;
    }
}
