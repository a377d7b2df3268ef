//! What a server did: counts by goodbye reason and teardown path.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use farewell::CloserStats;

use super::Reason;

/// What [`serve`](super::serve) did, returned when it stops.
///
/// `Display` gives the one line `farewell serve` prints at exit, e.g.
/// `1000 connections, goodbyes: quit 990, shutdown 10; teardowns: peer-closed 1000; 0 unfinished, drained in 3.1ms`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Connections accepted (shed ones included).
    pub accepted: u64,
    /// Failed `accept()` calls (e.g. out of file descriptors).
    pub accept_errors: u64,
    /// Goodbyes by reason (reasons never given are left out).
    pub goodbyes: Vec<(Reason, u64)>,
    /// The closer's counts: teardowns by outcome path, and those still in flight.
    pub teardowns: CloserStats,
    /// Connections neither said goodbye to nor torn down when the drain
    /// deadline passed (0 after a clean drain); the teardowns still in flight
    /// are in `teardowns.in_flight`.
    pub unfinished: usize,
    /// From the shutdown signal until the drain ended.
    pub drain: Duration,
}

impl Summary {
    /// Goodbyes given for `reason`.
    pub fn goodbyes(&self, reason: Reason) -> u64 {
        self.goodbyes
            .iter()
            .find(|&&(r, _)| r == reason)
            .map_or(0, |&(_, n)| n)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} connections", self.accepted)?;
        if self.accept_errors > 0 {
            write!(f, " ({} failed accepts)", self.accept_errors)?;
        }
        write!(f, ", goodbyes: ")?;
        list(f, self.goodbyes.iter().map(|(r, n)| (r.name(), *n)))?;
        write!(f, "; teardowns: ")?;
        list(
            f,
            self.teardowns.by_ending.iter().map(|(p, n)| (p.name(), *n)),
        )?;
        write!(
            f,
            "; {} unfinished, drained in {:.1?}",
            self.unfinished + self.teardowns.in_flight,
            self.drain
        )
    }
}

fn list<'a>(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut any = false;
    for (name, n) in items {
        write!(f, "{}{name} {n}", if any { ", " } else { "" })?;
        any = true;
    }
    if !any {
        write!(f, "none")?;
    }
    Ok(())
}

/// The running counts the accept loop and the connections share.
#[derive(Default)]
pub(crate) struct Counts {
    pub accepted: AtomicU64,
    pub accept_errors: AtomicU64,
    goodbyes: Mutex<BTreeMap<Reason, u64>>,
    /// Connections being served (spawned and not yet handed to the closer).
    open: AtomicUsize,
    none_open: Notify,
}

impl Counts {
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::AcqRel);
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A served connection said goodbye (counted as no longer open).
    pub fn goodbye(&self, reason: Reason, was_open: bool) {
        *self
            .goodbyes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
        if was_open && self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none_open.notify_waiters();
        }
    }

    pub fn goodbyes(&self) -> Vec<(Reason, u64)> {
        let map = self.goodbyes.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(&r, &n)| (r, n)).collect()
    }

    /// Waits until no connection is being served.
    pub async fn none_open(&self) {
        loop {
            let notified = self.none_open.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farewell::Ending;

    #[test]
    fn display_is_one_line_with_reasons_and_paths() {
        let mut teardowns = CloserStats::default();
        teardowns.started = 3;
        teardowns.by_ending = vec![(Ending::PeerClosed, 3)];
        let summary = Summary {
            accepted: 3,
            accept_errors: 0,
            goodbyes: vec![(Reason::Quit, 2), (Reason::Shutdown, 1)],
            teardowns,
            unfinished: 0,
            drain: Duration::from_millis(3),
        };
        assert_eq!(
            summary.to_string(),
            "3 connections, goodbyes: quit 2, shutdown 1; teardowns: peer-closed 3; 0 unfinished, drained in 3.0ms"
        );
        assert_eq!(summary.goodbyes(Reason::Quit), 2);
        assert_eq!(summary.goodbyes(Reason::Busy), 0);
    }
}
