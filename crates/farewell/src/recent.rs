//! Recent endings per client address: how [`PeerTimeWait::Auto`](crate::PeerTimeWait::Auto)
//! tells a heavy client from a light one.
//!
//! A fixed table of [`SLOTS`] counters, one `AtomicU64` each, indexed by a
//! keyed hash of the client's IP address (foldhash, seeded per table: a
//! tenth of SipHash's cost on a 4- or 16-byte key; an attacker who made
//! addresses collide would only make a light client look heavy, below) (its port is left out: a client's
//! TIME-WAIT entries toward us all come out of the same ephemeral port range).
//! Each counter is a sliding one-minute window made of two fixed windows, the
//! current one and the one before, weighted by how much of it still overlaps
//! the last minute (the estimate Cloudflare and nginx-style rate limiters use).
//! Recording is one `fetch_update` on one word: no lock, no allocation,
//! bounded memory whatever the number of clients.
//!
//! Two addresses that share a slot share a count. That can only make a light
//! client look heavy, whose FIN is then answered with a reset after
//! everything was delivered: nothing is lost, it just keeps no TIME-WAIT.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Slots in the table: 4,096 × 8 bytes = 32 KiB.
pub(crate) const SLOTS: usize = 4096;

/// The window: Linux's TIME-WAIT length (`TCP_TIMEWAIT_LEN`, 60 s), so the
/// count is the entries a passive close would have left the client.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// Counts saturate here (24 bits each).
const COUNT_MAX: u64 = (1 << 24) - 1;

/// Recent endings per client address, shared by a closer's teardowns.
///
/// The table is allocated at the first ending recorded, so a closer that
/// never classifies a client (another policy, `PeerTimeWait::Keep`) costs
/// nothing.
pub(crate) struct RecentEndings {
    slots: std::sync::OnceLock<Box<[AtomicU64]>>,
    hasher: foldhash::fast::RandomState,
    epoch: Instant,
}

impl std::fmt::Debug for RecentEndings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentEndings")
            .field("allocated", &self.slots.get().is_some())
            .finish()
    }
}

/// One slot's word: `window:16 | previous:24 | current:24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// The index of the current window since the table's epoch (wrapping).
    window: u16,
    previous: u32,
    current: u32,
}

impl Slot {
    fn unpack(word: u64) -> Slot {
        Slot {
            window: (word >> 48) as u16,
            previous: ((word >> 24) & COUNT_MAX) as u32,
            current: (word & COUNT_MAX) as u32,
        }
    }

    fn pack(self) -> u64 {
        (u64::from(self.window) << 48)
            | ((u64::from(self.previous) & COUNT_MAX) << 24)
            | (u64::from(self.current) & COUNT_MAX)
    }

    /// The slot as seen from window `now`: rolled forward, counts shifted or cleared.
    fn at(self, now: u16) -> Slot {
        match now.wrapping_sub(self.window) {
            0 => self,
            1 => Slot {
                window: now,
                previous: self.current,
                current: 0,
            },
            _ => Slot {
                window: now,
                previous: 0,
                current: 0,
            },
        }
    }

    /// The sliding estimate: the current window, plus the previous one
    /// weighted by the part of it still inside the last minute.
    fn estimate(self, into_window: Duration) -> u32 {
        let left = WINDOW.saturating_sub(into_window).as_millis() as u64;
        let weighted = u64::from(self.previous) * left / WINDOW.as_millis() as u64;
        (u64::from(self.current) + weighted).min(u64::from(u32::MAX)) as u32
    }
}

impl Default for RecentEndings {
    fn default() -> RecentEndings {
        RecentEndings::starting_at(Instant::now())
    }
}

impl RecentEndings {
    fn starting_at(epoch: Instant) -> RecentEndings {
        RecentEndings {
            slots: std::sync::OnceLock::new(),
            hasher: foldhash::fast::RandomState::default(),
            epoch,
        }
    }

    /// The index of `ip`'s slot.
    fn index(&self, ip: IpAddr) -> usize {
        // An IPv4-mapped IPv6 peer is the same client as its IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        (self.hasher.hash_one(ip) as usize) & (SLOTS - 1)
    }

    fn slot(&self, ip: IpAddr) -> &AtomicU64 {
        let slots = self
            .slots
            .get_or_init(|| (0..SLOTS).map(|_| AtomicU64::new(0)).collect());
        &slots[self.index(ip)]
    }

    /// The window `now` is in and how far into it, counted from the epoch.
    fn window_of(&self, now: Instant) -> (u16, Duration) {
        // In u64 milliseconds: u128 division is a call, u64 one instruction
        // (584 million years before it wraps).
        let since = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let window_ms = WINDOW.as_millis() as u64;
        (
            (since / window_ms) as u16,
            Duration::from_millis(since % window_ms),
        )
    }

    /// The endings from `ip`'s slot in the last minute at `now`, without
    /// recording one (and without allocating the table: 0 before the first
    /// ending).
    pub(crate) fn peek(&self, ip: IpAddr, now: Instant) -> u32 {
        let Some(slots) = self.slots.get() else {
            return 0;
        };
        let (window, into) = self.window_of(now);
        Slot::unpack(slots[self.index(ip)].load(Ordering::Relaxed))
            .at(window)
            .estimate(into)
    }

    /// Records one ending from `ip` at `now`; returns the endings from its
    /// slot in the last minute, this one included.
    pub(crate) fn record(&self, ip: IpAddr, now: Instant) -> u32 {
        let (window, into) = self.window_of(now);
        let slot = self.slot(ip);
        let mut after = Slot::unpack(0);
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let mut s = Slot::unpack(word).at(window);
            s.current = (u64::from(s.current) + 1).min(COUNT_MAX) as u32;
            after = s;
            Some(s.pack())
        });
        after.estimate(into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn slot_packs_and_unpacks() {
        let s = Slot {
            window: 65535,
            previous: COUNT_MAX as u32,
            current: 7,
        };
        assert_eq!(Slot::unpack(s.pack()), s);
    }

    #[test]
    fn peek_counts_without_recording() {
        let t0 = Instant::now();
        let recent = RecentEndings::starting_at(t0);
        assert_eq!(recent.peek(ip(1), t0), 0);
        assert!(recent.slots.get().is_none(), "a peek allocates nothing");
        recent.record(ip(1), t0);
        recent.record(ip(1), t0);
        assert_eq!(recent.peek(ip(1), t0), 2);
        assert_eq!(recent.peek(ip(1), t0), 2, "a peek records nothing");
        assert_eq!(recent.record(ip(1), t0), 3);
        // Two windows later the endings are out of the last minute.
        assert_eq!(recent.peek(ip(1), t0 + 2 * WINDOW), 0);
    }

    #[test]
    fn record_counts_one_address() {
        let t0 = Instant::now();
        let table = RecentEndings::starting_at(t0);
        for n in 1..=10 {
            assert_eq!(table.record(ip(1), t0), n);
        }
    }

    #[test]
    fn record_slides_the_previous_window_out() {
        let t0 = Instant::now();
        let table = RecentEndings::starting_at(t0);
        for _ in 0..600 {
            table.record(ip(1), t0);
        }
        // A quarter into the next window: three quarters of 600 still count.
        let n = table.record(ip(1), t0 + WINDOW + WINDOW / 4);
        assert_eq!(n, 1 + 450);
        // Two windows later nothing is left but this one.
        assert_eq!(table.record(ip(1), t0 + WINDOW * 3), 1);
    }

    #[test]
    fn record_keeps_addresses_apart_unless_they_share_a_slot() {
        let t0 = Instant::now();
        let table = RecentEndings::starting_at(t0);
        for _ in 0..100 {
            table.record(ip(1), t0);
        }
        let other = table.record(ip(2), t0);
        let shared = std::ptr::eq(table.slot(ip(1)), table.slot(ip(2)));
        assert_eq!(other, if shared { 101 } else { 1 });
    }

    #[test]
    fn mapped_ipv6_is_the_ipv4_client() {
        let t0 = Instant::now();
        let table = RecentEndings::starting_at(t0);
        table.record(ip(1), t0);
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(table.record(mapped, t0), 2);
    }

    #[test]
    fn record_is_exact_across_threads() {
        let t0 = Instant::now();
        let table = std::sync::Arc::new(RecentEndings::starting_at(t0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let table = std::sync::Arc::clone(&table);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        table.record(ip(9), t0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(table.record(ip(9), t0), 4001);
    }
}
