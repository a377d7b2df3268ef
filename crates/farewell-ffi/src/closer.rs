//! `fw_closer`: the closer C programs hand their descriptors to.
//!
//! Each hand-over gets its own `farewell::Closer` (one small allocation),
//! whose outcome hook knows the descriptor it reports on: the core's outcome
//! carries no descriptor, and matching by addresses fails for a connection the
//! peer reset before the teardown asked for them. The closer keeps a table of
//! the descriptors it owns (number, socket identity, that hand-over's
//! `Closer`) to hurry every teardown at shutdown, and the process keeps one
//! table of every descriptor any closer owns ([`OWNED`]), to refuse one
//! handed over twice, to the same closer or to another.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use farewell::{Delivery, Ending, Outcome, Policy, TimeWait};
use tokio::runtime::Runtime;

use crate::error::{
    guard, FW_ERR_ALREADY_OWNED, FW_ERR_GOODBYE_TOO_LONG, FW_ERR_INVALID_ARGUMENT,
    FW_ERR_IN_CALLBACK, FW_ERR_NOT_A_CLOSER, FW_ERR_NULL, FW_ERR_OS, FW_ERR_REGISTER,
    FW_ERR_RUNTIME, FW_ERR_TIMED_OUT, FW_OK,
};
use crate::names::{ending_code, fw_ending, FW_ENDING_FIN_AFTER_GRACE};
use crate::options::fw_options;
use crate::outcome::{fw_outcome, fw_stats};
use crate::sys::{self, SocketId};

/// The longest goodbye `fw_close` takes, in bytes (1 MiB): a goodbye is a
/// last message, copied once and held until the teardown ends.
pub const FW_GOODBYE_MAX: usize = 1_048_576;

/// The word a live closer starts with ("farewell"): see [`live`].
const MAGIC: u64 = u64::from_be_bytes(*b"farewell");

/// The closer behind `closer`, if it is one: `Ok(None)` for NULL,
/// `FW_ERR_NOT_A_CLOSER` when its magic word is not there (freed already,
/// or never a closer).
///
/// # Safety
///
/// `closer` is NULL or points to memory that was an `fw_closer`. Reading a
/// freed one is undefined behaviour all the same: this check is best effort,
/// for the common misuse (a second `fw_closer_free`, `fw_close` after it).
unsafe fn live<'a>(closer: *const fw_closer) -> Result<Option<&'a fw_closer>, c_int> {
    if closer.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and, by the contract, once an fw_closer; read
    // volatile so the check is not assumed true from the type.
    let magic = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*closer).magic)) };
    if magic != MAGIC {
        return Err(FW_ERR_NOT_A_CLOSER);
    }
    // SAFETY: the magic word says it is live.
    Ok(Some(unsafe { &*closer }))
}

/// After the deadline of `fw_closer_free`, how long the hurried teardowns get
/// to report (each makes one write attempt and one probe: microseconds).
const HURRY_WAIT: Duration = Duration::from_secs(2);

/// Codes of the endings the counters keep apart (0, `FW_ENDING_OTHER`, counts
/// every ending this crate has no code for).
/// (Every code up to the last one: the codes after `FW_ENDING_RESET_AT_DEADLINE`
/// were once counted in its slot.)
const ENDING_CODES: usize = FW_ENDING_FIN_AFTER_GRACE as usize + 1;

/// Every descriptor a closer of this process owns: its socket's identity and
/// the hand-over's generation. A number seen again with the same socket
/// behind it is a second hand-over; with another socket, the number was
/// closed by its teardown and reused (the report is on the way), and is
/// taken. (A `BTreeMap`: valgrind sees its nodes as reachable at exit.)
static OWNED: LazyLock<Mutex<BTreeMap<RawFd, (SocketId, u64)>>> = LazyLock::new(Mutex::default);

/// Tells hand-overs of one number apart, across closers.
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn owned() -> MutexGuard<'static, BTreeMap<RawFd, (SocketId, u64)>> {
    // Nothing panics while holding the lock; if something did, the table is still sound.
    OWNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// True on the closer's own threads, where `fw_closer_free` would wait for itself.
    static LIBRARY_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// A closer: owns the descriptors handed to it and ends each with its policy,
/// on its own thread(s). Made by `fw_closer_new`, freed by `fw_closer_free`.
#[allow(non_camel_case_types)]
pub struct fw_closer {
    /// [`MAGIC`] while the closer lives; 0 once `fw_closer_free` took it.
    /// First, so the allocator's own bookkeeping overwrites it on free.
    magic: u64,
    runtime: Runtime,
    shared: Arc<Shared>,
    policy: Policy,
    /// Holds the table of recent endings per client address that every
    /// descriptor's own closer shares ([`farewell::CloserBuilder::share_client_counts`]),
    /// so a heavy client is one client across descriptors.
    counts: farewell::Closer,
    heavy_client_threshold: u32,
}

/// What the closer's threads and the callers' share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when `in_flight` drops to 0.
    idle: Condvar,
    callback: Option<Callback>,
    started: AtomicU64,
    peer_closed: AtomicU64,
    we_reset: AtomicU64,
    time_wait_us: AtomicU64,
    goodbye_confirmed: AtomicU64,
    by_ending: [AtomicU64; ENDING_CODES],
}

struct State {
    owned: HashMap<RawFd, Owned>,
    in_flight: u64,
    hurried: bool,
}

/// A descriptor the closer owns, until its teardown reports.
struct Owned {
    /// Tells this hand-over's report from a later one of the same number.
    generation: u64,
    /// This teardown's closer, to hurry it.
    closer: farewell::Closer,
}

/// The C callback and its pointer.
struct Callback {
    function: unsafe extern "C" fn(*const fw_outcome, *mut c_void),
    user: *mut c_void,
}

// SAFETY: `fw_options_set_outcome_callback` documents that the callback and
// `user` are called and used from the library's threads; the caller vouches
// for that by setting them.
unsafe impl Send for Callback {}
// SAFETY: as above; the library only passes `user` back, it never reads it.
unsafe impl Sync for Callback {}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the table is still sound.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One teardown's report: count it, tell the callback, forget the descriptor.
    fn finish(&self, fd: RawFd, generation: u64, outcome: &Outcome) {
        let code = ending_code(outcome.ending) as usize;
        self.by_ending[code.min(ENDING_CODES - 1)].fetch_add(1, Ordering::Relaxed);
        if outcome.ending == Ending::PeerClosed {
            self.peer_closed.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.we_reset() {
            self.we_reset.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.time_wait == TimeWait::Us {
            self.time_wait_us.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.goodbye == Delivery::Confirmed {
            self.goodbye_confirmed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(callback) = &self.callback {
            let report = fw_outcome::new(fd, outcome);
            // A C callback cannot unwind; this only keeps a bug of ours from
            // skipping the bookkeeping below.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: the caller set this callback for exactly this call;
                // `report` lives until it returns.
                unsafe { (callback.function)(&report, callback.user) }
            }));
        }
        let forgotten = {
            let mut state = self.lock();
            let forgotten = match state.owned.get(&fd) {
                Some(owned) if owned.generation == generation => state.owned.remove(&fd),
                _ => None,
            };
            let mut everywhere = owned();
            if everywhere.get(&fd).is_some_and(|&(_, g)| g == generation) {
                everywhere.remove(&fd);
            }
            drop(everywhere);
            state.in_flight -= 1;
            if state.in_flight == 0 {
                self.idle.notify_all();
            }
            forgotten
        };
        drop(forgotten);
    }

    /// Waits until no teardown is in flight or `limit` passes; true when none is.
    fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now().checked_add(limit);
        let mut state = self.lock();
        while state.in_flight > 0 {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            state = self
                .idle
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        true
    }
}

impl fw_closer {
    /// Takes `fd` (checked) and starts its teardown; `FW_OK` or why not.
    fn hand_over(&self, fd: RawFd, goodbye: Bytes) -> c_int {
        let id = match sys::connected_tcp(fd) {
            Ok(id) => id,
            Err(code) => return code,
        };
        // Lock order: the closer's state, then the process's table.
        let mut state = self.shared.lock();
        let mut everywhere = owned();
        if everywhere.get(&fd).is_some_and(|&(owner, _)| owner == id) {
            return FW_ERR_ALREADY_OWNED;
        }
        let _runtime = self.runtime.enter();
        // SAFETY: `connected_tcp` found `fd` open and a connected TCP socket;
        // by `fw_close`'s contract the caller gives it up, and no teardown of
        // ours holds it (checked just above, under the lock), so the stream
        // made here is its only owner.
        let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        if stream.set_nonblocking(true).is_err() {
            let _ = stream.into_raw_fd(); // still the caller's
            return FW_ERR_OS;
        }
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
            return FW_ERR_REGISTER; // tokio closed it
        };
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&self.shared);
        let closer = farewell::Closer::builder(self.policy)
            .runtime(self.runtime.handle().clone())
            .heavy_client_threshold(self.heavy_client_threshold)
            .share_client_counts(&self.counts)
            .on_outcome(move |outcome| shared.finish(fd, generation, &outcome))
            .build();
        if state.hurried {
            closer.hurry();
        }
        let owned = Owned {
            generation,
            closer: closer.clone(),
        };
        // A stale entry for this number (closed, report on the way) is replaced.
        everywhere.insert(fd, (id, generation));
        drop(everywhere);
        state.owned.insert(fd, owned);
        state.in_flight += 1;
        drop(state);
        self.shared.started.fetch_add(1, Ordering::Relaxed);
        // On a library thread: a teardown that needs no waiting ends inside
        // `Closer::close`, and its outcome callback must not run on the
        // caller's thread (the header promises the library's threads, and
        // `fw_closer_free` from a callback is refused by thread).
        self.runtime
            .spawn(async move { closer.close(stream, goodbye) });
        FW_OK
    }

    /// Waits for the teardowns, hurries the rest, stops the threads.
    fn shutdown(self, deadline: Duration) -> c_int {
        let fw_closer {
            runtime, shared, ..
        } = self;
        let mut idle = shared.wait_idle(deadline);
        if !idle {
            {
                let mut state = shared.lock();
                state.hurried = true;
                for owned in state.owned.values() {
                    owned.closer.hurry();
                }
            }
            idle = shared.wait_idle(HURRY_WAIT);
        }
        // Whatever is still running is dropped here: its socket closes plainly.
        runtime.shutdown_timeout(Duration::from_secs(1));
        // The table's closers hold hooks that hold `shared`: break the cycle.
        // Teardowns dropped unfinished leave the process's table too.
        let left = std::mem::take(&mut shared.lock().owned);
        let mut everywhere = owned();
        for (fd, entry) in &left {
            if everywhere
                .get(fd)
                .is_some_and(|&(_, g)| g == entry.generation)
            {
                everywhere.remove(fd);
            }
        }
        drop(everywhere);
        drop(left);
        if idle {
            FW_OK
        } else {
            FW_ERR_TIMED_OUT
        }
    }

    fn stats(&self) -> fw_stats {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let shared = &self.shared;
        fw_stats {
            size: std::mem::size_of::<fw_stats>(),
            in_flight: shared.lock().in_flight,
            started: load(&shared.started),
            finished: shared.by_ending.iter().map(load).sum(),
            peer_closed: load(&shared.peer_closed),
            we_reset: load(&shared.we_reset),
            time_wait_us: load(&shared.time_wait_us),
            goodbye_confirmed: load(&shared.goodbye_confirmed),
        }
    }
}

/// Makes a closer and starts its thread(s). `options` may be NULL (the
/// defaults: peer-first, one thread, no callback); they are copied, free them
/// when you like. On success `*closer` is the new closer; on error it is NULL.
///
/// Errors: `FW_ERR_NULL` (`closer` is NULL), `FW_ERR_INVALID_ARGUMENT` (a
/// peer-first setting with another policy), `FW_ERR_RUNTIME`.
///
/// # Safety
///
/// `options` is NULL or a live pointer from `fw_options_new`; `closer` is
/// NULL or points to writable memory for one pointer.
#[no_mangle]
pub unsafe extern "C" fn fw_closer_new(
    options: *const fw_options,
    closer: *mut *mut fw_closer,
) -> c_int {
    guard(AssertUnwindSafe(|| {
        if closer.is_null() {
            return FW_ERR_NULL;
        }
        // SAFETY: checked non-NULL; the caller gives writable memory.
        unsafe { closer.write(std::ptr::null_mut()) };
        let defaults = fw_options::default();
        // SAFETY: NULL or a live pointer from fw_options_new.
        let options = unsafe { options.as_ref() }.unwrap_or(&defaults);
        let policy = match options.policy() {
            Ok(policy) => policy,
            Err(code) => return code,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads as usize)
            .max_blocking_threads(1)
            .thread_name("farewell")
            .on_thread_start(|| LIBRARY_THREAD.with(|t| t.set(true)))
            .enable_io()
            .enable_time()
            .build();
        let Ok(runtime) = runtime else {
            return FW_ERR_RUNTIME;
        };
        let shared = Shared {
            state: Mutex::new(State {
                owned: HashMap::new(),
                in_flight: 0,
                hurried: false,
            }),
            idle: Condvar::new(),
            callback: options.callback.map(|function| Callback {
                function,
                user: options.user,
            }),
            started: AtomicU64::new(0),
            peer_closed: AtomicU64::new(0),
            we_reset: AtomicU64::new(0),
            time_wait_us: AtomicU64::new(0),
            goodbye_confirmed: AtomicU64::new(0),
            by_ending: std::array::from_fn(|_| AtomicU64::new(0)),
        };
        let counts = farewell::Closer::builder(policy)
            .runtime(runtime.handle().clone())
            .build();
        let new = Box::new(fw_closer {
            magic: MAGIC,
            runtime,
            shared: Arc::new(shared),
            policy,
            counts,
            heavy_client_threshold: options.heavy_client_threshold,
        });
        // SAFETY: checked non-NULL above.
        unsafe { closer.write(Box::into_raw(new)) };
        FW_OK
    }))
}

/// Hands a connected TCP socket over: the library owns `fd` from now on and
/// ends the connection with the closer's policy after sending `goodbye`
/// (`len` bytes, copied; `len` 0 means no goodbye, and then `goodbye` may be
/// NULL). Never blocks: the teardown runs on the closer's thread.
///
/// On `FW_OK` do not use, and above all do not close, `fd` again; the closer
/// closes it and its number may then be reused. On every error but
/// `FW_ERR_REGISTER` and `FW_ERR_PANIC`, `fd` is still yours.
///
/// The library sets `O_NONBLOCK` on the socket (shared by every duplicate of
/// it). Do not write to the connection through another descriptor afterwards.
///
/// Checked in this order: `FW_ERR_NULL` (`closer`, or `goodbye` with `len` >
/// 0), `FW_ERR_GOODBYE_TOO_LONG` (`len` > `FW_GOODBYE_MAX`; `goodbye` is not
/// read), `FW_ERR_BAD_FD`, `FW_ERR_NOT_SOCKET`, `FW_ERR_NOT_TCP`,
/// `FW_ERR_LISTENING`, `FW_ERR_NOT_CONNECTED`, `FW_ERR_ALREADY_OWNED` (a
/// closer of this process owns `fd` already: a second hand-over is refused,
/// and the first teardown goes on), then `FW_ERR_OS`, `FW_ERR_REGISTER`.
///
/// # Safety
///
/// `closer` is NULL or a live closer; `goodbye` is NULL or points to `len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn fw_close(
    closer: *const fw_closer,
    fd: c_int,
    goodbye: *const u8,
    len: usize,
) -> c_int {
    guard(AssertUnwindSafe(|| {
        // SAFETY: NULL or a closer (the caller's contract).
        let closer = match unsafe { live(closer) } {
            Ok(Some(closer)) => closer,
            Ok(None) => return FW_ERR_NULL,
            Err(code) => return code,
        };
        if len > FW_GOODBYE_MAX {
            return FW_ERR_GOODBYE_TOO_LONG;
        }
        let goodbye = if len == 0 {
            Bytes::new()
        } else if goodbye.is_null() {
            return FW_ERR_NULL;
        } else {
            // SAFETY: non-NULL, and the caller gives `len` readable bytes.
            Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(goodbye, len) })
        };
        closer.hand_over(fd, goodbye)
    }))
}

/// Fills `*stats` with the closer's running counts. Set `stats->size` to
/// `sizeof(fw_stats)` first (see `fw_stats`).
///
/// Errors: `FW_ERR_NULL`, `FW_ERR_INVALID_ARGUMENT` (`stats->size` smaller
/// than the `size` field itself).
///
/// # Safety
///
/// `closer` is NULL or a live closer; `stats` is NULL or points to
/// `stats->size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn fw_closer_stats(closer: *const fw_closer, stats: *mut fw_stats) -> c_int {
    guard(AssertUnwindSafe(|| {
        // SAFETY: NULL or a closer.
        let closer = match unsafe { live(closer) } {
            Ok(Some(closer)) => closer,
            Ok(None) => return FW_ERR_NULL,
            Err(code) => return code,
        };
        if stats.is_null() {
            return FW_ERR_NULL;
        }
        // SAFETY: non-NULL; the caller set the first field, `size`.
        let room = unsafe { stats.cast::<usize>().read_unaligned() };
        if room < std::mem::size_of::<usize>() {
            return FW_ERR_INVALID_ARGUMENT;
        }
        let filled = room.min(std::mem::size_of::<fw_stats>());
        let mut now = closer.stats();
        now.size = filled;
        // SAFETY: the caller gives `room` >= `filled` writable bytes at `stats`;
        // `now` is a distinct local of at least `filled` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&now as *const fw_stats).cast::<u8>(),
                stats.cast::<u8>(),
                filled,
            )
        };
        FW_OK
    }))
}

/// Teardowns of this closer that ended with `ending` (`FW_ENDING_OTHER`:
/// those with an ending this header has no code for). 0 for a NULL closer or
/// a code the library does not know.
///
/// # Safety
///
/// `closer` is NULL or a live closer.
#[no_mangle]
pub unsafe extern "C" fn fw_closer_ending_count(
    closer: *const fw_closer,
    ending: fw_ending,
) -> u64 {
    crate::error::guard_or(
        0,
        AssertUnwindSafe(|| {
            // SAFETY: NULL or a closer.
            let Ok(Some(closer)) = (unsafe { live(closer) }) else {
                return 0;
            };
            closer
                .shared
                .by_ending
                .get(ending as usize)
                .map_or(0, |n| n.load(Ordering::Relaxed))
        }),
    )
}

/// Shuts the closer down and frees it: waits up to `deadline_ms` for the
/// teardowns in flight to end by themselves, then hurries the rest (each
/// closes passively if the peer's FIN came, otherwise makes one last attempt
/// to write its goodbye and resets: `FW_ENDING_RESET_AT_DEADLINE`), waits for
/// their reports (bounded, about 2 s), and stops the threads. Blocks the
/// calling thread meanwhile; outcome callbacks keep coming on the library's
/// threads until it returns, and none after.
///
/// Returns `FW_OK` when every teardown reported, `FW_ERR_TIMED_OUT` when
/// some had to be dropped (their sockets were closed without a report;
/// everything is freed all the same), `FW_ERR_IN_CALLBACK` when called from
/// an outcome callback (nothing is freed). NULL is allowed (nothing happens, `FW_OK`).
///
/// # Safety
///
/// `closer` is NULL or a live closer; no other call on it may be running or
/// follow (except from the callbacks it waits for).
#[no_mangle]
pub unsafe extern "C" fn fw_closer_free(closer: *mut fw_closer, deadline_ms: u64) -> c_int {
    // SAFETY: NULL or a closer (the caller's contract).
    match unsafe { live(closer) } {
        Ok(None) => return FW_OK,
        Err(code) => return code,
        Ok(Some(_)) => {}
    }
    if LIBRARY_THREAD.with(Cell::get) {
        return FW_ERR_IN_CALLBACK;
    }
    guard(AssertUnwindSafe(|| {
        // SAFETY: a live closer from fw_closer_new (its magic word is there),
        // taken once: the word is cleared before anything else.
        unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*closer).magic), 0) };
        // SAFETY: as above.
        let closer = unsafe { Box::from_raw(closer) };
        closer.shutdown(Duration::from_millis(deadline_ms).min(farewell::policy::MAX_WAIT))
    }))
}
