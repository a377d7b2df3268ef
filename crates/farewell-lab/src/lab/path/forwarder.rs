//! A user-space delay line: gives a path its round-trip time on a kernel
//! without `sch_netem`.
//!
//! The middle namespace of a `wan` path holds two veth ends, one towards the
//! server and one towards the client, with no address and no routing: its
//! kernel never answers or forwards anything. The forwarder reads every
//! frame that arrives on one end (a raw `AF_PACKET` socket sees frames
//! addressed to any MAC), holds it until `delay` after its arrival, and
//! sends it unchanged out of the other end. ARP, IPv4 and whatever else
//! passes, in order; the two ends' hosts see one Ethernet segment with
//! `delay` in each direction.
//!
//! The frames leave the server and the client with their checksums
//! complete: a veth end with TX checksum offload on would send TCP segments
//! with a *partial* checksum, which a kernel forwarding them itself
//! completes, but which a raw socket passes on as it is, and the receiver
//! drops (ARP, which has no checksum, still passes, which hides it). The
//! path turns the offload off on both ends (the `SIOCETHTOOL` ioctl, as
//! `ethtool -K DEV tx off` does).
//!
//! Per direction, two threads: one receives (and stamps the arrival time),
//! one sleeps until each frame is due and sends it. Between them is a queue
//! of at most [`QUEUE_FRAMES`] frames; a frame that finds it full is
//! dropped and counted, as a router's full buffer does. Every thread checks
//! the stop flag at least every [`TICK`], so dropping the [`Forwarder`]
//! stops and joins them within about that.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::super::netns::Netns;
use crate::sys::packet::PacketSocket;

/// How often every forwarder thread looks at the stop flag, at the latest.
pub const TICK: Duration = Duration::from_millis(20);

/// Frames one direction may hold at once (about 15 MB of full frames).
pub const QUEUE_FRAMES: usize = 10_000;

/// Each raw socket's receive buffer: the frames that arrive while the
/// receiving thread is not reading wait there (the kernel's default, about
/// 200 KiB, drops frames under a few hundred connections at once).
const RECEIVE_BUFFER: usize = 16 << 20;

/// Room for any frame: larger than any MTU a veth end here gets.
const FRAME_BUFFER: usize = 65_536;

/// What a forwarder has done so far, both directions summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwarderStats {
    /// Frames sent on after their delay.
    pub forwarded: u64,
    /// Frames dropped because the direction's queue held [`QUEUE_FRAMES`].
    pub queue_full: u64,
    /// Frames the kernel dropped before the forwarder read them (its raw
    /// socket's receive buffer was full; `PACKET_STATISTICS`).
    pub receive_dropped: u64,
    /// Frames not sent on: those the middle's kernel refused at egress
    /// (the `wan` loss rule's random drops among them: nftables drops the
    /// frame and the send reports `ENOBUFS`), and any too large to read whole.
    pub not_sent: u64,
}

/// Counters shared by the threads.
#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    queue_full: AtomicU64,
    receive_dropped: AtomicU64,
    not_sent: AtomicU64,
}

/// One frame in flight: when it is due, and its bytes.
type Held = (Instant, Vec<u8>);

/// The running delay line between two veth ends of one namespace; stops
/// and joins its threads when dropped.
#[derive(Debug)]
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    sockets: [Arc<PacketSocket>; 2],
    threads: Vec<JoinHandle<()>>,
    names: Vec<String>,
}

impl Forwarder {
    /// Opens raw sockets on `ends` (two interfaces of `ns`) and starts
    /// passing frames between them, each held for `delay`. The threads are
    /// named `<name>-<a|b>-rx`/`-tx` after the end they read from (`name`
    /// of at most 9 bytes, so that the name fits the kernel's 15).
    ///
    /// # Errors
    ///
    /// When a socket cannot be opened or a thread cannot be started;
    /// whatever started is stopped again.
    pub fn start(
        ns: &Netns,
        ends: [&str; 2],
        delay: Duration,
        name: &str,
    ) -> io::Result<Forwarder> {
        let (a, b) = ns.run(|| {
            Ok::<_, io::Error>((PacketSocket::open(ends[0])?, PacketSocket::open(ends[1])?))
        })??;
        for socket in [&a, &b] {
            socket.set_read_timeout(TICK)?;
            socket.set_receive_buffer(RECEIVE_BUFFER)?;
        }
        let mut forwarder = Forwarder {
            stop: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
            sockets: [Arc::new(a), Arc::new(b)],
            threads: Vec::with_capacity(4),
            names: Vec::with_capacity(4),
        };
        let [a, b] = forwarder.sockets.clone();
        forwarder.direction(format!("{name}-a"), Arc::clone(&a), Arc::clone(&b), delay)?;
        forwarder.direction(format!("{name}-b"), b, a, delay)?;
        Ok(forwarder)
    }

    /// Starts the two threads that carry frames from `from` to `to`.
    fn direction(
        &mut self,
        name: String,
        from: Arc<PacketSocket>,
        to: Arc<PacketSocket>,
        delay: Duration,
    ) -> io::Result<()> {
        let (queue, held) = mpsc::sync_channel::<Held>(QUEUE_FRAMES);
        let (stop, counters) = (Arc::clone(&self.stop), Arc::clone(&self.counters));
        self.spawn(format!("{name}-rx"), move || {
            receive(&from, &queue, delay, &stop, &counters);
        })?;
        let (stop, counters) = (Arc::clone(&self.stop), Arc::clone(&self.counters));
        self.spawn(format!("{name}-tx"), move || {
            send(&to, &held, &stop, &counters);
        })
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let thread = std::thread::Builder::new().name(name.clone()).spawn(f)?;
        self.threads.push(thread);
        self.names.push(name);
        Ok(())
    }

    /// What the forwarder has done so far.
    pub fn stats(&self) -> ForwarderStats {
        for socket in &self.sockets {
            if let Ok(drops) = socket.take_drops() {
                self.counters
                    .receive_dropped
                    .fetch_add(drops, Ordering::Relaxed);
            }
        }
        let c = &self.counters;
        ForwarderStats {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            queue_full: c.queue_full.load(Ordering::Relaxed),
            receive_dropped: c.receive_dropped.load(Ordering::Relaxed),
            not_sent: c.not_sent.load(Ordering::Relaxed),
        }
    }

    /// The names of the forwarder's threads (as `/proc/<pid>/task/*/comm` shows them).
    pub fn thread_names(&self) -> &[String] {
        &self.names
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::warn!("a forwarder thread panicked");
            }
        }
    }
}

/// Reads frames from `from` and queues each, due `delay` after it arrived,
/// until `stop` (or a receive error, which is logged).
fn receive(
    from: &PacketSocket,
    queue: &mpsc::SyncSender<Held>,
    delay: Duration,
    stop: &AtomicBool,
    counters: &Counters,
) {
    let mut buf = vec![0u8; FRAME_BUFFER];
    while !stop.load(Ordering::Relaxed) {
        match from.recv(&mut buf) {
            Ok(len) if len > buf.len() => {
                counters.not_sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(len) => match queue.try_send((Instant::now() + delay, buf[..len].to_vec())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    counters.queue_full.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::warn!("forwarder: receiving a frame: {e}; this direction stops");
                return;
            }
        }
    }
}

/// Sends each frame queued in `held` on `to` once it is due, until `stop`
/// or until the receiving side is gone.
fn send(to: &PacketSocket, held: &mpsc::Receiver<Held>, stop: &AtomicBool, counters: &Counters) {
    loop {
        let (due, frame) = match held.recv_timeout(TICK) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
            Err(_) => return,
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(TICK));
        }
        match to.send(&frame) {
            Ok(_) => counters.forwarded.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!("forwarder: sending a frame: {e}");
                counters.not_sent.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}
