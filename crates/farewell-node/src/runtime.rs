//! The process's tokio runtime and closers, and the sockets they own.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use farewell::{Closer, Ending, Outcome, PeerFinChoice, Policy, DEFAULT_HEAVY_CLIENT_THRESHOLD};
use tokio::runtime::Runtime;

use crate::error::Refusal;
use crate::sys::{self, SocketId};
use crate::Stats;

/// One runtime per process, one worker thread: a teardown is a few
/// non-blocking calls and timers, and Node keeps its own threads.
static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// One closer per heavy-client threshold asked for, sharing one table of
/// client endings (the first one's).
static CLOSERS: Mutex<Vec<(u32, Closer)>> = Mutex::new(Vec::new());

/// The sockets whose teardown is under way: a second hand-over of one is
/// refused (`EFAREWELL_ALREADY`).
static OWNED: LazyLock<Mutex<HashSet<SocketId>>> = LazyLock::new(Mutex::default);

static STARTED: AtomicU64 = AtomicU64::new(0);
static BY_ENDING: [AtomicU64; Ending::ALL.len()] = [const { AtomicU64::new(0) }; Ending::ALL.len()];

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data is still sound.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime() -> Result<&'static Runtime, Refusal> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .thread_name("farewell-node")
        .enable_io()
        .enable_time()
        .build()
        .map_err(Refusal::Os)?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

fn count(outcome: Outcome) {
    if let Some(i) = Ending::ALL.iter().position(|&e| e == outcome.ending) {
        BY_ENDING[i].fetch_add(1, Ordering::Relaxed);
    }
}

fn closer(runtime: &Runtime, threshold: u32) -> Closer {
    let mut closers = lock(&CLOSERS);
    if let Some((_, closer)) = closers.iter().find(|(t, _)| *t == threshold) {
        return closer.clone();
    }
    let mut builder = Closer::builder(Policy::default())
        .runtime(runtime.handle().clone())
        .heavy_client_threshold(threshold)
        .on_outcome(count);
    if let Some((_, first)) = closers.first() {
        builder = builder.share_client_counts(first);
    }
    let closer = builder.build();
    closers.push((threshold, closer.clone()));
    closer
}

/// True while `id`'s teardown is under way.
pub(crate) fn is_owned(id: SocketId) -> bool {
    lock(&OWNED).contains(&id)
}

/// A teardown that took its socket and has not run yet: every check passed,
/// so what is left cannot fail. [`Started::then`] runs it.
pub(crate) struct Started {
    runtime: &'static Runtime,
    id: SocketId,
    closing: Pin<Box<dyn Future<Output = Outcome> + Send>>,
}

impl Started {
    /// Runs the teardown on the runtime; `done` gets the outcome, on the runtime's thread.
    pub(crate) fn then(self, done: impl FnOnce(Outcome) + Send + 'static) {
        let Started {
            runtime,
            id,
            closing,
        } = self;
        runtime.spawn(async move {
            let outcome = closing.await;
            lock(&OWNED).remove(&id);
            done(outcome);
        });
    }
}

/// Checks `fd`, duplicates it and makes the duplicate's teardown, which
/// [`Started::then`] runs. Everything that can fail is done here, before the
/// caller makes its Promise (a Promise never settled would keep Node's event
/// loop alive).
pub(crate) fn hand_over(
    fd: i32,
    goodbye: Bytes,
    policy: Policy,
    threshold: Option<u32>,
) -> Result<Started, Refusal> {
    let runtime = runtime()?;
    let id = sys::connected_tcp(fd)?;
    let mut owned = lock(&OWNED);
    if owned.contains(&id) {
        return Err(Refusal::Already);
    }
    let stream = std::net::TcpStream::from(sys::duplicate(fd)?);
    stream.set_nonblocking(true).map_err(Refusal::Os)?;
    let _entered = runtime.enter();
    let stream = tokio::net::TcpStream::from_std(stream).map_err(Refusal::Os)?;
    owned.insert(id);
    drop(owned);
    STARTED.fetch_add(1, Ordering::Relaxed);
    let closer = closer(runtime, threshold.unwrap_or(DEFAULT_HEAVY_CLIENT_THRESHOLD));
    Ok(Started {
        runtime,
        id,
        closing: Box::pin(closer.close_here_reporting(stream, goodbye, policy)),
    })
}

/// What [`fin_end`] found, and did.
pub(crate) enum FinEnd {
    /// The peer's FIN is not in yet (`ESTABLISHED`): wait on.
    NotYet,
    /// Neither open nor half-closed by the peer (reset, say): not the fast
    /// path's to end.
    Gone,
    /// The FIN is in, with bytes still unACKed: not the fast path's to end.
    Unacked,
    /// A light client: the passive close (it keeps the TIME-WAIT).
    Light,
    /// A heavy client: `SO_LINGER {on, 0}` is set, so the caller's close
    /// resets (nobody keeps TIME-WAIT).
    Heavy,
    /// A half-close (the FIN came before the server began to end the
    /// connection): the passive close, whatever the client's weight.
    HalfClose,
}

/// The fast path's end of a connection, in one call: if the peer's FIN is
/// in and everything `fd` sent is ACKed, the passive close of a half-close,
/// or the core's heavy-client choice for the peer's address (one ending
/// recorded in the table every closer of the process shares), with the
/// reset armed on `fd` for a heavy one; counted in [`stats`] as the
/// teardown's ending would be.
///
/// `unchecked`: the server answered without looking whether the FIN came
/// first ([`check_fins`] said the client was far from heavy), so the FIN's
/// timing is unknown; a client that turned heavy meanwhile gets the passive
/// close (it may still be reading) rather than a reset.
///
/// `known_peer`: the peer's address if the caller has it (Node caches
/// `socket.remoteAddress`), sparing a `getpeername`.
pub(crate) fn fin_end(
    fd: i32,
    threshold: Option<u32>,
    half_closed: bool,
    unchecked: bool,
    known_peer: Option<std::net::IpAddr>,
) -> Result<FinEnd, Refusal> {
    // A half-close needs no address: it is not classified.
    let ask_peer = known_peer.is_none() && !half_closed;
    let peer = match sys::fin_state(fd, ask_peer)? {
        sys::FinState::NotYet => return Ok(FinEnd::NotYet),
        sys::FinState::Gone => return Ok(FinEnd::Gone),
        sys::FinState::In { unacked, .. } if unacked > 0 => return Ok(FinEnd::Unacked),
        sys::FinState::In { peer, .. } => known_peer.or(peer),
    };
    let after = match peer {
        _ if half_closed => FinEnd::HalfClose,
        // No address (a peer reset meanwhile): nothing to count it under.
        None => FinEnd::Light,
        Some(peer) => {
            let runtime = runtime()?;
            let closer = closer(runtime, threshold.unwrap_or(DEFAULT_HEAVY_CLIENT_THRESHOLD));
            match closer.peer_fin_choice(peer) {
                PeerFinChoice::Heavy { .. } if unchecked => FinEnd::HalfClose,
                // Without the linger option the close would be passive: say so.
                PeerFinChoice::Heavy { .. } if sys::set_reset_on_close(fd).is_ok() => FinEnd::Heavy,
                _ => FinEnd::Light,
            }
        }
    };
    let ending = match after {
        FinEnd::Heavy => Ending::ResetAfterPeerFin,
        _ => Ending::PeerClosed,
    };
    STARTED.fetch_add(1, Ordering::Relaxed);
    if let Some(i) = Ending::ALL.iter().position(|&e| e == ending) {
        BY_ENDING[i].fetch_add(1, Ordering::Relaxed);
    }
    Ok(after)
}

/// Whether an `http.Server` looks, before each request is answered, at
/// whether the client's FIN came first (one `getsockopt`): only for a client
/// at least half-way to the heavy-client threshold (endings of its address
/// in the last minute, in the table every closer of the process shares), as
/// farewell-http does. A light client's FIN gets the passive close whatever
/// its timing; one that turns heavy during the connection is caught by
/// [`fin_end`]'s `unchecked`. An address that does not parse is checked.
pub(crate) fn check_fins(address: &str, threshold: Option<u32>) -> Result<bool, Refusal> {
    let Ok(peer) = address.parse::<std::net::IpAddr>() else {
        return Ok(true);
    };
    let threshold = threshold.unwrap_or(DEFAULT_HEAVY_CLIENT_THRESHOLD);
    let closer = closer(runtime()?, threshold);
    Ok(closer.recent_endings(peer) >= threshold / 2)
}

/// Hurries every closer of the process ([`Closer::hurry`]): each teardown
/// in flight ends now, with one probe of whether its last bytes were ACKed
/// (`reset-at-deadline`), and so does every later one.
pub(crate) fn hurry() {
    for (_, closer) in lock(&CLOSERS).iter() {
        closer.hurry();
    }
}

pub(crate) fn stats() -> Stats {
    let mut by_ending = HashMap::new();
    let mut finished = 0;
    for (ending, n) in Ending::ALL.iter().zip(&BY_ENDING) {
        let n = n.load(Ordering::Relaxed);
        finished += n;
        if n > 0 {
            by_ending.insert(ending.name().to_owned(), n as f64);
        }
    }
    let started = STARTED.load(Ordering::Relaxed);
    Stats {
        started: started as f64,
        in_flight: started.saturating_sub(finished) as f64,
        finished: finished as f64,
        by_ending,
    }
}
