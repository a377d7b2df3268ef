//! Upgraded connections (`101 Switching Protocols`, e.g. a WebSocket): kept
//! track of after hyper lets go of them, bounded while idle, waited for and
//! then cut at shutdown, and ended with the server's FIN.
//!
//! hyper's connection future completes at the upgrade: the socket (still
//! inside [`TeardownIo`](crate::io::TeardownIo)) goes to the handler through
//! `hyper::upgrade::on`, and nothing of hyper's watches it any more. So the
//! connection's task goes on with `ConnState::watch_upgraded`: it ends when the handler drops
//! the upgraded stream, and it is what the server's drain waits for at
//! shutdown. Two things cut an upgraded stream (its reads and writes then
//! fail with [`cut_error`], so the handler ends and drops it):
//!
//! - the idle bound ([`Server::upgrade_idle_timeout`](crate::Server::upgrade_idle_timeout)):
//!   no byte read or written for that long;
//! - the shutdown deadline: the server aborts the connection's task, and the
//!   task's guard cuts the stream.
//!
//! A cut stream is reset once everything written is ACKed (the quiet
//! policy): the protocol's goodbye was not said. One dropped by its handler
//! ends as a close-delimited response does ([`crate::delimited`]): the
//! protocol said its goodbye (a WebSocket close frame), and the client waits
//! for the server's TCP close (RFC 6455 §7.1.1: "the server SHOULD close the
//! TCP connection first"), so the server sends its FIN once everything is
//! ACKed, and the kernel resets on that FIN's ACK: the client reads the end of
//! file, nobody keeps TIME-WAIT. A client whose FIN came first gets a passive close.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Waker};

use tokio::sync::Notify;

use crate::record::Cause;

/// Which way an IO poll went, for the waker it leaves behind.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// One connection's upgrade state, in its `ConnState`.
#[derive(Default)]
pub(crate) struct UpgradeState {
    /// Set (once) when the upgraded stream is to fail every read and write.
    cut: AtomicBool,
    /// The tasks polling the upgraded stream, woken by a cut.
    wakers: Mutex<[Option<Waker>; 2]>,
    tracking: Mutex<Tracking>,
    released: Notify,
}

#[derive(Default)]
struct Tracking {
    /// The socket went to the teardown.
    released: bool,
    /// Counted in [`Upgrades::open`] by `ConnState::watch_upgraded`.
    counted: bool,
}

impl UpgradeState {
    /// Whether reads and writes are to fail.
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Remembers who to wake on a cut; returns whether the stream was cut meanwhile.
    pub(crate) fn park(&self, cx: &Context<'_>, direction: Direction) -> bool {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut wakers[direction as usize];
        match slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        drop(wakers);
        self.is_cut()
    }

    /// Makes every later read and write fail, and wakes the tasks waiting on them.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// The socket went to the teardown (called from `ConnState::release`).
    pub(crate) fn released(&self, upgrades: &Upgrades) {
        let mut tracking = self.tracking.lock().unwrap_or_else(|e| e.into_inner());
        tracking.released = true;
        if tracking.counted {
            upgrades.closed_one();
        }
        drop(tracking);
        self.released.notify_one();
    }

    /// Counts the stream as open, unless it was released already; false then.
    pub(crate) fn track(&self, upgrades: &Upgrades) -> bool {
        let mut tracking = self.tracking.lock().unwrap_or_else(|e| e.into_inner());
        if tracking.released {
            return false;
        }
        tracking.counted = true;
        upgrades.open.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Whether the socket went to the teardown.
    pub(crate) fn is_released(&self) -> bool {
        self.tracking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .released
    }

    /// Completes when [`UpgradeState::released`] is called after it was made.
    pub(crate) fn released_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }

    /// How the socket ends, on release, given why the connection ended.
    pub(crate) fn ending(&self, cause: Option<Cause>) -> Ending {
        match cause {
            Some(Cause::Upgrade) if self.is_cut() => Ending::Cut,
            Some(Cause::Upgrade) => Ending::Closed,
            _ => Ending::NotUpgraded,
        }
    }
}

/// The error every read and write of a cut upgraded stream returns.
pub(crate) fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "farewell-http cut this upgraded connection (idle bound or shutdown deadline passed); drop it",
    )
}

/// The upgraded connections of one server.
#[derive(Default)]
pub(crate) struct Upgrades {
    /// Upgraded streams a handler still holds.
    open: AtomicUsize,
    all_closed: Notify,
    /// Cut by the idle bound.
    pub(crate) idle_cut: AtomicU64,
    /// Ended with the server's FIN (reset on its ACK) or a passive close.
    pub(crate) closed: AtomicU64,
    /// Ended by a reset before everything written was ACKed.
    pub(crate) reset_undelivered: AtomicU64,
}

impl Upgrades {
    /// Counts an upgraded connection's FIN ending (see [`crate::delimited`]).
    pub(crate) fn counted(&self, delivered: bool) {
        if delivered {
            &self.closed
        } else {
            &self.reset_undelivered
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn closed_one(&self) {
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_waiters();
        }
    }

    /// How many upgraded streams a handler still holds.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until no handler holds an upgraded stream.
    pub(crate) async fn all_closed(&self) {
        loop {
            let closed = self.all_closed.notified();
            if self.open() == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// How an upgraded connection's socket ends, on release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Not upgraded: as HTTP decides.
    NotUpgraded,
    /// The handler dropped the stream: the server's FIN, reset on its ACK.
    Closed,
    /// Cut (idle bound, shutdown deadline): the quiet policy.
    Cut,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    // --- tracking: an upgraded stream is counted open until released ---

    #[test]
    fn test_tracked_then_released_counts_open_then_closed() {
        let upgrades = Upgrades::default();
        let state = UpgradeState::default();
        assert!(state.track(&upgrades));
        assert_eq!(upgrades.open(), 1);
        state.released(&upgrades);
        assert_eq!(upgrades.open(), 0);
        assert!(state.is_released());
    }

    #[test]
    fn test_released_before_tracking_is_never_counted() {
        let upgrades = Upgrades::default();
        let state = UpgradeState::default();
        state.released(&upgrades);
        assert!(!state.track(&upgrades));
        assert_eq!(upgrades.open(), 0);
    }

    // --- cut: parked readers and writers are woken, later polls see it ---

    #[test]
    fn test_cut_wakes_the_parked_reader_and_writer() {
        let state = UpgradeState::default();
        let reader = Arc::new(Count(AtomicUsize::new(0)));
        let writer = Arc::new(Count(AtomicUsize::new(0)));
        let (rw, ww) = (
            Waker::from(Arc::clone(&reader)),
            Waker::from(Arc::clone(&writer)),
        );
        assert!(!state.park(&Context::from_waker(&rw), Direction::Read));
        assert!(!state.park(&Context::from_waker(&ww), Direction::Write));
        state.cut();
        assert!(state.is_cut());
        assert_eq!(reader.0.load(Ordering::Relaxed), 1);
        assert_eq!(writer.0.load(Ordering::Relaxed), 1);
        assert!(state.park(&Context::from_waker(&rw), Direction::Read));
    }
}
